"""The Exchange side of `register` and `verify`, end to end over HTTPS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mim_o365 import Client, Cloud, FakeClock, Secret
from mim_o365._gateways import _clients
from mim_o365._wellknown import EXCHANGE_APP_ID, FULL_ACCESS_AS_APP_ID
from mim_o365.cli import main
from mim_o365.emulator import Emulator, EmulatorServer, Knobs, Lag

MAILBOX = "MIMService@contoso.onmicrosoft.com"
OTHER = "alex.wilber@contoso.onmicrosoft.com"


def _client(server: EmulatorServer, clock: FakeClock) -> Client:
    cloud = Cloud.from_file(server.cloud_file)
    cred = _clients.client_secret_credential(
        cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
    )
    return Client(cred, tenant=server.tenant_id, cloud=cloud, clock=clock)


def _serve(clock: FakeClock, **knobs: object) -> EmulatorServer:
    return EmulatorServer(Emulator(seed=31, clock=clock, knobs=Knobs(**knobs)))  # type: ignore[arg-type]


@pytest.fixture
def seeded_other_app(server: EmulatorServer) -> str:
    allowed = server.emulator.directory.state.exchange.org.ews_allowed_app_ids
    assert allowed, "the seeded tenant lists one unrelated app"
    return allowed


@pytest.fixture
def client(server: EmulatorServer, clock: FakeClock) -> Iterator[Client]:
    with _client(server, clock) as c:
        yield c


def _exchange_counts(em: Emulator) -> tuple[int, int, int]:
    ex = em.directory.state.exchange
    listed = [a for a in (ex.org.ews_allowed_app_ids or "").split(",") if a]
    return len(ex.groups), len(ex.policies), len(listed)


def test_register_restricts_allow_lists_and_verifies(
    server: EmulatorServer, client: Client, seeded_other_app: str
) -> None:
    reg = client.register_mailbox_app(MAILBOX)
    assert reg.verified is True
    assert reg.verification is not None and [c.name for c in reg.verification.checks] == [
        "token",
        "role",
        "ews",
    ]
    ap = reg.access_policy
    assert ap is not None
    assert ap["mode"] == "policy"
    assert ap["mailbox_test"] == "Granted"
    assert ap["other_mailbox_test"] == "Denied"
    org = server.emulator.directory.state.exchange.org
    assert org.ews_allowed_app_ids is not None
    listed = org.ews_allowed_app_ids.split(",")
    assert seeded_other_app in listed, "the pre-existing allow-list entry survives"
    assert reg.application_id in listed
    assert org.ews_enabled is True
    # the other mailbox is really out of reach through EWS, and the report says why
    assert reg.client_secret is not None
    other = client.verify_mailbox_access(reg.application_id, OTHER, reg.client_secret)
    assert other.ok is False
    assert other.layer == "access_policy"


def test_rerun_creates_no_second_group_policy_or_list_entry(
    server: EmulatorServer, client: Client
) -> None:
    client.register_mailbox_app(MAILBOX)
    before = _exchange_counts(server.emulator)
    again = client.register_mailbox_app(MAILBOX)
    assert _exchange_counts(server.emulator) == before
    assert again.created == () and again.changed == ()
    assert again.access_policy is not None and again.access_policy["mailbox_test"] == "Granted"


@pytest.mark.parametrize(
    ("ews_enabled", "words"), [(False, "EwsEnabled is $false"), (None, "not set")]
)
def test_ews_off_is_left_alone_without_enable_ews(
    clock: FakeClock, ews_enabled: bool | None, words: str
) -> None:
    with _serve(clock, ews_enabled=ews_enabled) as server, _client(server, clock) as client:
        org = server.emulator.directory.state.exchange.org
        before = (org.ews_enabled, org.ews_allowed_app_ids)
        reg = client.register_mailbox_app(MAILBOX)
        assert (org.ews_enabled, org.ews_allowed_app_ids) == before, (
            "the tenant's EWS settings are untouched"
        )
        assert reg.ews_problem is not None and words in reg.ews_problem
        assert "--enable-ews" in reg.ews_problem
        assert reg.verified is None
        enabled = client.register_mailbox_app(MAILBOX, enable_ews=True, new_secret=True)
        assert org.ews_enabled is True
        assert enabled.application_id in (org.ews_allowed_app_ids or "")
        assert enabled.verified is True


def test_cli_ews_disabled_exit_code_and_explanation(tmp_path: Path) -> None:
    state = tmp_path / "t.json"
    em = Emulator(seed=5, knobs=Knobs(ews_enabled=False))
    from mim_o365.emulator import _persist

    _persist.save(em.directory.state, state)
    result = CliRunner().invoke(
        main, ["register", "--mailbox", MAILBOX, "--sandbox", "--sandbox-state", str(state)]
    )
    assert result.exit_code == 78, result.stderr
    assert "--enable-ews" in result.stderr
    assert "ApplicationId: " in result.stdout, "the directory work is still reported"


def _grant_state(server: EmulatorServer, app_id: str) -> list[str]:
    st = server.emulator.directory.state
    sp = next(s for s in st.service_principals.values() if s.app_id == app_id)
    return [a.app_role_id for a in st.app_role_assignments.values() if a.principal_id == sp.id]


def test_rbac_scope_works_without_tenant_wide_consent(
    server: EmulatorServer, client: Client
) -> None:
    reg = client.register_mailbox_app(MAILBOX, scope="rbac")
    assert reg.verified is True, reg.verification
    assert reg.consent == "rbac"
    assert FULL_ACCESS_AS_APP_ID not in _grant_state(server, reg.application_id)
    app = server.emulator.directory.state.applications[reg.object_id or ""]
    assert all(r["resourceAppId"] != EXCHANGE_APP_ID for r in app.required_resource_access), (
        "no request left that would invite tenant-wide consent"
    )
    ex = server.emulator.directory.state.exchange
    assert [a.role for a in ex.role_assignments.values()] == ["Application EWS.AccessAsApp"]
    assert reg.client_secret is not None
    assert (
        client.verify_mailbox_access(reg.application_id, OTHER, reg.client_secret, rbac=True).ok
        is False
    )


def test_switching_to_rbac_removes_the_earlier_tenant_wide_consent(
    server: EmulatorServer, client: Client
) -> None:
    first = client.register_mailbox_app(MAILBOX)
    assert FULL_ACCESS_AS_APP_ID in _grant_state(server, first.application_id)
    second = client.register_mailbox_app(MAILBOX, scope="rbac", new_secret=True)
    assert FULL_ACCESS_AS_APP_ID not in _grant_state(server, first.application_id)
    assert any("removed tenant-wide" in c for c in second.changed)
    assert second.verified is True


def test_policy_and_allow_list_delays_are_waited_for(clock: FakeClock) -> None:
    with _serve(clock, policy=Lag(seconds=120)) as server, _client(server, clock) as client:
        start = clock.now()
        reg = client.register_mailbox_app(MAILBOX, timeout=600)
    assert reg.verified is True
    assert (clock.now() - start).total_seconds() >= 120


def test_verification_timeout_reports_the_layer_and_keeps_the_secret(clock: FakeClock) -> None:
    with _serve(clock, policy=Lag(seconds=3600)) as server, _client(server, clock) as client:
        reg = client.register_mailbox_app(MAILBOX, timeout=120)
    assert reg.verified is False
    assert reg.verification is not None and reg.verification.layer == "propagating"
    assert "24 hours" in reg.verification.explanation
    assert reg.client_secret is not None, (
        "a registration that only waits on Exchange still hands out its secret"
    )


# --- each layer's own diagnosis ----------------------------------------------------------------


@pytest.fixture
def registered(server: EmulatorServer, client: Client) -> tuple[str, Secret]:
    reg = client.register_mailbox_app(MAILBOX)
    assert reg.client_secret is not None
    return reg.application_id, reg.client_secret


def test_layer_ews_disabled(
    server: EmulatorServer, client: Client, registered: tuple[str, Secret]
) -> None:
    server.emulator.exchange.set_org({"EwsEnabled": False})
    result = client.verify_mailbox_access(*registered[:1], MAILBOX, registered[1])
    assert (result.ok, result.layer) == (False, "ews_disabled")


def test_layer_not_allow_listed(
    server: EmulatorServer, client: Client, registered: tuple[str, Secret]
) -> None:
    org = server.emulator.directory.state.exchange.org
    others = ",".join(a for a in (org.ews_allowed_app_ids or "").split(",") if a != registered[0])
    server.emulator.exchange.set_org({"EwsAllowedAppIDs": others})
    result = client.verify_mailbox_access(registered[0], MAILBOX, registered[1])
    assert (result.ok, result.layer) == (False, "not_allow_listed")
    assert "24 hours" in result.explanation


def test_layer_no_role(
    server: EmulatorServer, client: Client, registered: tuple[str, Secret]
) -> None:
    st = server.emulator.directory.state
    for a in list(st.app_role_assignments.values()):
        if a.app_role_id == FULL_ACCESS_AS_APP_ID:
            del st.app_role_assignments[a.id]
    result = client.verify_mailbox_access(registered[0], MAILBOX, registered[1])
    assert (result.ok, result.layer) == (False, "no_role")


def test_layer_secret_not_valid_in_verify(
    server: EmulatorServer, client: Client, registered: tuple[str, Secret]
) -> None:
    result = client.verify_mailbox_access(registered[0], MAILBOX, Secret("not-the-secret-at-all"))
    assert (result.ok, result.layer) == (False, "secret_not_valid")


def test_layer_mailbox_missing(server: EmulatorServer, client: Client) -> None:
    reg = client.register_mailbox_app(MAILBOX, scope="none")
    assert reg.client_secret is not None
    result = client.verify_mailbox_access(
        reg.application_id, "nobody@contoso.onmicrosoft.com", reg.client_secret
    )
    assert (result.ok, result.layer) == (False, "mailbox_missing")


def test_layer_app_unknown(server: EmulatorServer, client: Client) -> None:
    result = client.verify_mailbox_access(
        "11111111-2222-3333-4444-555555555555", MAILBOX, Secret("whatever-secret")
    )
    assert (result.ok, result.layer) == (False, "app_not_known")


# --- the verify command ------------------------------------------------------------------------


def _verify_cli(server: EmulatorServer, app_id: str, *args: str, **kw: object) -> object:
    return CliRunner().invoke(
        main,
        [
            "verify",
            "--app-id",
            app_id,
            "--mailbox",
            MAILBOX,
            "--cloud-file",
            str(server.cloud_file),
            "--tenant",
            server.tenant_id,
            *args,
        ],
        catch_exceptions=False,
        **kw,
    )  # type: ignore[arg-type]


def test_verify_cli_reads_the_secret_from_env_file_or_stdin(
    server: EmulatorServer,
    registered: tuple[str, Secret],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app_id, secret = registered
    monkeypatch.setenv("MIM_O365_CLIENT_SECRET", secret.reveal())
    by_env = _verify_cli(server, app_id, "--output", "json")
    assert by_env.exit_code == 0, by_env.stderr  # type: ignore[attr-defined]
    assert json.loads(by_env.stdout)["ok"] is True  # type: ignore[attr-defined]
    monkeypatch.delenv("MIM_O365_CLIENT_SECRET")
    f = tmp_path / "s"
    f.write_text(secret.reveal() + "\n")
    assert _verify_cli(server, app_id, "--secret-file", str(f)).exit_code == 0  # type: ignore[attr-defined]
    piped = _verify_cli(server, app_id, "--secret-stdin", input=secret.reveal() + "\n")
    assert piped.exit_code == 0  # type: ignore[attr-defined]
    assert secret.reveal() not in piped.stdout + piped.stderr  # type: ignore[attr-defined]
    none = _verify_cli(server, app_id)
    assert none.exit_code == 78  # type: ignore[attr-defined]
    assert "never on the command line" in none.stderr  # type: ignore[attr-defined]


def test_verify_cli_denial_exit_code(
    server: EmulatorServer, registered: tuple[str, Secret], monkeypatch: pytest.MonkeyPatch
) -> None:
    app_id, secret = registered
    server.emulator.exchange.set_org({"EwsEnabled": False})
    monkeypatch.setenv("MIM_O365_CLIENT_SECRET", secret.reveal())
    result = _verify_cli(server, app_id, "--output", "json")
    assert result.exit_code == 75  # type: ignore[attr-defined]
    report = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert (
        report["ok"] is False and report["layer"] == "ews_denied"
    )  # no admin: EWS said 403, cause unknown
    assert "FAIL" in result.stderr  # type: ignore[attr-defined]


def test_sandbox_register_then_verify(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.json"
    runner = CliRunner()
    reg = runner.invoke(
        main,
        [
            "register",
            "--mailbox",
            MAILBOX,
            "--sandbox",
            "--sandbox-state",
            str(state),
            "--output",
            "json",
        ],
        catch_exceptions=False,
    )
    assert reg.exit_code == 0, reg.stderr
    data = json.loads(reg.stdout)
    assert data["verified"] is True
    assert data["ews_allow_listed"] is True
    assert data["access_policy"]["other_mailbox_test"] == "Denied"
    check = runner.invoke(
        main,
        [
            "verify",
            "--app-id",
            data["application_id"],
            "--mailbox",
            MAILBOX,
            "--sandbox",
            "--sandbox-state",
            str(state),
            "--secret-stdin",
        ],
        input=data["client_secret"] + "\n",
        catch_exceptions=False,
    )
    assert check.exit_code == 0, check.stderr
    other = runner.invoke(
        main,
        [
            "verify",
            "--app-id",
            data["application_id"],
            "--mailbox",
            OTHER,
            "--sandbox",
            "--sandbox-state",
            str(state),
            "--secret-stdin",
            "--output",
            "json",
        ],
        input=data["client_secret"] + "\n",
        catch_exceptions=False,
    )
    assert other.exit_code == 75
    assert json.loads(other.stdout)["layer"] == "access_policy"
