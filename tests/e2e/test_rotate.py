"""Secret rotation over HTTPS: when due, in which order, and what survives every failure."""

from __future__ import annotations

import json
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from mim_o365 import Client, Cloud, ConfigurationError, FakeClock, FileSink, Secret, ThrottledError
from mim_o365._gateways import _clients
from mim_o365._sinks import ExecSink
from mim_o365.cli import main
from mim_o365.emulator import Emulator, EmulatorServer, Knobs

MAILBOX = "MIMService@contoso.onmicrosoft.com"
DAY = 86400.0


class Killed(BaseException):
    """Stands for the process dying at a given point (no cleanup code of ours runs)."""


def _client(server: EmulatorServer, clock: FakeClock) -> Client:
    cloud = Cloud.from_file(server.cloud_file)
    cred = _clients.client_secret_credential(
        cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
    )
    return Client(cred, tenant=server.tenant_id, cloud=cloud, clock=clock)


def works(server: EmulatorServer, app_id: str, secret: Secret) -> bool:
    """Does this secret still get a token?"""
    with httpx.Client(
        base_url=server.base_url, verify=ssl.create_default_context(cafile=server.ca_file)
    ) as http:
        r = http.post(
            f"/{server.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app_id,
                "client_secret": secret.reveal(),
                "scope": "https://outlook.office365.com/.default",
            },
        )
    return r.status_code == 200


def secrets_of(server: EmulatorServer, app_id: str) -> list[str]:
    app = next(
        a for a in server.emulator.directory.state.applications.values() if a.app_id == app_id
    )
    return [c.key_id for c in app.password_credentials]


@pytest.fixture
def server(clock: FakeClock) -> Iterator[EmulatorServer]:
    # Months pass on the fake clock between runs, while the client libraries cache the admin's token
    # by the real clock: let tokens outlive the test.
    with EmulatorServer(Emulator(seed=77, clock=clock, knobs=Knobs(token_lifetime=10**9))) as srv:
        yield srv


@pytest.fixture
def setup(
    server: EmulatorServer, clock: FakeClock, tmp_path: Path
) -> Iterator[tuple[Client, str, Secret, Path]]:
    with _client(server, clock) as client:
        reg = client.register_mailbox_app(MAILBOX)
        assert reg.client_secret is not None
        yield client, reg.application_id, reg.client_secret, tmp_path / "app.lock"


def test_not_due_right_after_register(server: EmulatorServer, setup: Any) -> None:
    client, app_id, _, lock = setup
    result = client.rotate_secret(app_id, lock_path=lock)
    assert result.rotated is False
    assert "not due" in result.reason
    assert len(secrets_of(server, app_id)) == 1


def test_due_within_the_window_keeps_the_previous_then_removes_it(
    server: EmulatorServer, clock: FakeClock, setup: Any
) -> None:
    client, app_id, first, lock = setup
    clock.advance(151 * DAY)  # 180-day secret now expires in 29 days
    r1 = client.rotate_secret(app_id, lock_path=lock)
    assert r1.rotated and r1.verified is True and r1.new_key_id
    assert "expires in" in r1.reason
    assert r1.removed_key_ids == ()
    assert len(secrets_of(server, app_id)) == 2, (
        "the previous secret stays so the consumer can switch over"
    )
    assert works(server, app_id, first)
    assert r1.client_secret is not None and works(server, app_id, r1.client_secret)
    clock.advance(151 * DAY)
    r2 = client.rotate_secret(app_id, lock_path=lock)
    assert r2.rotated
    assert secrets_of(server, app_id) == [r1.new_key_id, r2.new_key_id]
    assert not works(server, app_id, first)


def test_max_age_and_force(server: EmulatorServer, clock: FakeClock, setup: Any) -> None:
    client, app_id, _, lock = setup
    clock.advance(10 * DAY)
    assert client.rotate_secret(app_id, max_age_days=30, lock_path=lock).rotated is False
    clock.advance(21 * DAY)
    aged = client.rotate_secret(app_id, max_age_days=30, lock_path=lock)
    assert aged.rotated and "older than 30" in aged.reason
    forced = client.rotate_secret(app_id, force=True, lock_path=lock)
    assert forced.rotated and forced.reason == "forced"


def test_keep_one_removes_the_old_after_verification(server: EmulatorServer, setup: Any) -> None:
    client, app_id, first, lock = setup
    result = client.rotate_secret(app_id, force=True, keep=1, lock_path=lock)
    assert secrets_of(server, app_id) == [result.new_key_id]
    assert not works(server, app_id, first)


def test_foreign_secrets_are_untouched_unless_asked(
    server: EmulatorServer, clock: FakeClock, setup: Any
) -> None:
    client, app_id, _, lock = setup
    em = server.emulator
    app = next(a for a in em.directory.state.applications.values() if a.app_id == app_id)
    from mim_o365.emulator._directory import Caller

    admin = Caller(
        app_id=em.admin_client_id, sp_id=None, roles=frozenset({"Application.ReadWrite.All"})
    )
    foreign, _ = em.directory.add_password(
        admin, app, {"passwordCredential": {"displayName": "made by hand"}}
    )
    client.rotate_secret(app_id, force=True, keep=1, lock_path=lock)
    assert foreign.key_id in secrets_of(server, app_id)
    client.rotate_secret(app_id, force=True, keep=1, include_foreign=True, lock_path=lock)
    assert foreign.key_id not in secrets_of(server, app_id)


# --- failures and kills at each point ----------------------------------------------------------


class _Sink:
    def __init__(
        self, path: Path, *, fail: BaseException | None = None, after_write: bool = False
    ) -> None:
        self.path, self.fail, self.after_write = path, fail, after_write

    description = "test sink"

    def check(self) -> None:
        pass

    def deliver(self, secret: Secret, facts: Any) -> None:
        if self.fail is not None and not self.after_write:
            raise self.fail
        self.path.write_text(secret.reveal())
        if self.fail is not None:
            raise self.fail


def test_failed_delivery_removes_the_new_secret_and_keeps_the_old(
    server: EmulatorServer, setup: Any, tmp_path: Path
) -> None:
    client, app_id, first, lock = setup
    before = secrets_of(server, app_id)
    with pytest.raises(ConfigurationError, match="removed again"):
        client.rotate_secret(
            app_id,
            force=True,
            secret_sinks=[_Sink(tmp_path / "s", fail=OSError(5, "I/O error"))],
            lock_path=lock,
        )
    assert secrets_of(server, app_id) == before
    assert works(server, app_id, first)


def test_killed_after_mint_then_next_run_completes(
    server: EmulatorServer, clock: FakeClock, setup: Any, tmp_path: Path
) -> None:
    client, app_id, first, lock = setup
    with pytest.raises(Killed):
        client.rotate_secret(
            app_id, force=True, secret_sinks=[_Sink(tmp_path / "s", fail=Killed())], lock_path=lock
        )
    assert len(secrets_of(server, app_id)) == 2, "the orphan from the killed run"
    assert works(server, app_id, first), "a working secret always exists"
    clock.advance(151 * DAY)
    done = client.rotate_secret(
        app_id, secret_sinks=[FileSink(tmp_path / "secret")], lock_path=lock
    )
    assert done.rotated and done.verified
    assert len(secrets_of(server, app_id)) == 2, "the orphan is removed, the previous kept"
    assert works(server, app_id, first)
    assert works(server, app_id, Secret((tmp_path / "secret").read_text().strip()))


def test_killed_after_delivery_then_next_run_completes(
    server: EmulatorServer, clock: FakeClock, setup: Any, tmp_path: Path
) -> None:
    client, app_id, first, lock = setup
    out = tmp_path / "delivered"
    with pytest.raises(Killed):
        client.rotate_secret(
            app_id,
            force=True,
            secret_sinks=[_Sink(out, fail=Killed(), after_write=True)],
            lock_path=lock,
        )
    delivered = Secret(out.read_text())
    assert works(server, app_id, first) and works(server, app_id, delivered)
    # the delivered secret was never marked: the next run does not trust it and rotates again
    again = client.rotate_secret(
        app_id, secret_sinks=[FileSink(tmp_path / "secret")], lock_path=lock
    )
    assert again.rotated and "interrupted" in again.reason
    assert works(server, app_id, Secret((tmp_path / "secret").read_text().strip()))


def test_failed_verification_keeps_old_secrets_and_next_run_completes(
    server: EmulatorServer, clock: FakeClock, setup: Any, tmp_path: Path
) -> None:
    client, app_id, first, lock = setup
    server.emulator.faults.inject("unavailable", 10_000, service="ews")
    failed = client.rotate_secret(
        app_id, force=True, secret_sinks=[FileSink(tmp_path / "s1")], lock_path=lock, timeout=30
    )
    assert failed.rotated and failed.verified is False
    assert failed.removed_key_ids == ()
    assert works(server, app_id, first)
    server.emulator.faults.clear()
    nxt = client.rotate_secret(
        app_id, keep=1, secret_sinks=[FileSink(tmp_path / "s2")], lock_path=lock
    )
    assert nxt.rotated and "never verified" in nxt.reason
    assert nxt.verified is True
    assert secrets_of(server, app_id) == [nxt.new_key_id]


def test_interrupted_removal_is_finished_by_the_next_run(
    server: EmulatorServer, clock: FakeClock, setup: Any, tmp_path: Path
) -> None:
    client, app_id, _, lock = setup
    client.rotate_secret(
        app_id, force=True, secret_sinks=[FileSink(tmp_path / "a")], lock_path=lock
    )
    server.emulator.faults.inject("unavailable", 10_000, path="removePassword")
    with pytest.raises(ThrottledError):
        client.rotate_secret(
            app_id,
            force=True,
            keep=1,
            secret_sinks=[FileSink(tmp_path / "b")],
            lock_path=lock,
            timeout=20,
        )
    newest = Secret((tmp_path / "b").read_text().strip())
    assert works(server, app_id, newest)
    assert len(secrets_of(server, app_id)) == 3
    server.emulator.faults.clear()
    tidy = client.rotate_secret(app_id, keep=1, lock_path=lock)
    assert tidy.rotated is False
    assert len(tidy.removed_key_ids) == 2
    assert len(secrets_of(server, app_id)) == 1
    assert works(server, app_id, newest)


def test_two_concurrent_rotations_leave_exactly_one_new_secret(
    server: EmulatorServer, setup: Any
) -> None:
    _, app_id, _, lock = setup
    before = len(secrets_of(server, app_id))
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        from mim_o365 import SystemClock

        with _client(server, SystemClock()) as c:  # type: ignore[arg-type]
            barrier.wait()
            # due: the registered secret expires within 400 days; the new one (730 days) will not
            results.append(
                c.rotate_secret(
                    app_id, before_expiry_days=400, lifetime_days=730, lock_path=lock, verify=False
                )
            )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(r.rotated for r in results) == [False, True]
    assert len(secrets_of(server, app_id)) == before + 1


def test_exec_receives_the_secret_on_stdin_only(
    server: EmulatorServer, setup: Any, tmp_path: Path
) -> None:
    client, app_id, _, lock = setup
    record = tmp_path / "record.json"
    script = tmp_path / "consumer.py"
    script.write_text(
        "import json, os, sys\n"
        f"json.dump({{'stdin': sys.stdin.read(), 'argv': sys.argv, 'env': dict(os.environ)}}, open({str(record)!r}, 'w'))\n"
    )
    result = client.rotate_secret(
        app_id,
        force=True,
        lock_path=lock,
        secret_sinks=[ExecSink(f"{sys.executable} {script} --target mim")],
    )
    seen = json.loads(record.read_text())
    assert result.client_secret is None, "the command took the secret; nothing on stdout"
    secret = seen["stdin"].strip()
    assert works(server, app_id, Secret(secret))
    assert secret not in json.dumps(seen["argv"])
    assert secret not in json.dumps(seen["env"])
    assert seen["env"]["MIM_O365_APPLICATION_ID"] == app_id


def test_exec_failure_takes_the_secret_back(server: EmulatorServer, setup: Any) -> None:
    client, app_id, _, lock = setup
    before = secrets_of(server, app_id)
    with pytest.raises(ConfigurationError, match="exited with 3"):
        client.rotate_secret(
            app_id,
            force=True,
            lock_path=lock,
            secret_sinks=[ExecSink(f'{sys.executable} -c "import sys; sys.exit(3)"')],
        )
    assert secrets_of(server, app_id) == before


def test_cli_rotate_json_and_not_due(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The CLI runs on the real clock: so does this emulator.
    with EmulatorServer(Emulator(seed=78)) as server:
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "state"))
        monkeypatch.setenv("AZURE_CLIENT_ID", server.admin_client_id)
        monkeypatch.setenv("AZURE_CLIENT_SECRET", server.admin_client_secret)
        monkeypatch.setenv("AZURE_TENANT_ID", server.tenant_id)
        target = [
            "--cloud-file",
            str(server.cloud_file),
            "--tenant",
            server.tenant_id,
            "--auth",
            "environment",
            "--output",
            "json",
        ]
        reg = CliRunner().invoke(
            main, ["register", "--mailbox", MAILBOX, *target], catch_exceptions=False
        )
        assert reg.exit_code == 0, reg.stderr
        app_id = json.loads(reg.stdout)["application_id"]
        base = ["rotate", "--app-id", app_id, *target]
        idle = CliRunner().invoke(main, base, catch_exceptions=False)
        assert idle.exit_code == 0, idle.stderr
        assert json.loads(idle.stdout)["rotated"] is False
        out = tmp_path / "secret"
        forced = CliRunner().invoke(
            main, [*base, "--force", "--secret-out", str(out)], catch_exceptions=False
        )
        assert forced.exit_code == 0, forced.stderr
        data = json.loads(forced.stdout)
        assert (
            data["rotated"] is True and data["client_secret"] is None and data["verified"] is True
        )
        assert out.read_text().strip() not in forced.stdout + forced.stderr
        assert (tmp_path / "state" / "mim-o365" / "locks" / f"{app_id}.lock").exists()
