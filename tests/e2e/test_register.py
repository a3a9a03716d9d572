"""`register` end to end over HTTPS: the Python API and the CLI, through production client construction."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from mim_o365 import (
    Client,
    Cloud,
    ConfigurationError,
    FakeClock,
    FileSink,
    PlanConflictError,
    PropagationTimeoutError,
    Registration,
    Secret,
)
from mim_o365._gateways import _clients
from mim_o365._wellknown import (
    EXCHANGE_APP_ID,
    FULL_ACCESS_AS_APP_ID,
    GRAPH_APP_ID,
    GRAPH_USER_READ_SCOPE_ID,
)
from mim_o365.cli import main
from mim_o365.emulator import Emulator, EmulatorServer, Knobs, Lag
from mim_o365.emulator._seed import GRAPH_ROLES

MAILBOX = "MIMService@contoso.onmicrosoft.com"


def _client(
    server: EmulatorServer,
    clock: FakeClock,
    client_id: str | None = None,
    secret: str | None = None,
) -> Client:
    cloud = Cloud.from_file(server.cloud_file)
    cred = _clients.client_secret_credential(
        cloud,
        server.tenant_id,
        client_id or server.admin_client_id,
        Secret(secret or server.admin_client_secret),
    )
    return Client(cred, tenant=server.tenant_id, cloud=cloud, clock=clock)


def _counts(em: Emulator) -> dict[str, int]:
    st = em.directory.state
    return {
        "applications": len(st.applications),
        "service_principals": len(st.service_principals),
        "assignments": len(st.app_role_assignments),
        "secrets": sum(len(a.password_credentials) for a in st.applications.values()),
    }


@pytest.fixture
def registered(server: EmulatorServer, clock: FakeClock) -> Iterator[tuple[Client, Registration]]:
    with _client(server, clock) as client:
        yield client, client.register_mailbox_app(MAILBOX)


def test_fresh_register_creates_everything_and_the_secret_works(
    server: EmulatorServer, registered: tuple[Client, Registration]
) -> None:
    _, reg = registered
    em = server.emulator
    app = em.directory.state.applications[reg.object_id or ""]
    assert app.sign_in_audience == "AzureADMyOrg"
    assert app.required_resource_access == [
        {
            "resourceAppId": EXCHANGE_APP_ID,
            "resourceAccess": [{"id": FULL_ACCESS_AS_APP_ID, "type": "Role"}],
        }
    ]
    assert "mim-o365:mailbox:mimservice@contoso.onmicrosoft.com" in app.tags
    assert set(reg.created) == {
        "application",
        "client secret",
        "service principal",
        "admin consent",
        "policy group",
        "access policy",
    }
    assert set(reg.changed) == {"policy group membership", "EwsAllowedAppIDs"}
    assert reg.verified is True
    assert reg.ews_allow_listed is True
    assert reg.consent == "granted"
    assert reg.token_has_role is True
    assert reg.client_secret is not None
    assert reg.secret_expires_at is not None
    assert (reg.secret_expires_at - em.clock.now()).days in (179, 180)
    assert "***" in repr(reg)
    assert reg.client_secret.reveal() not in repr(reg)


def test_rerun_converges_with_no_new_objects(
    server: EmulatorServer, registered: tuple[Client, Registration]
) -> None:
    client, first = registered
    before = _counts(server.emulator)
    again = client.register_mailbox_app(MAILBOX)
    assert _counts(server.emulator) == before
    assert again.application_id == first.application_id
    assert again.created == () and again.changed == ()
    assert again.client_secret is None
    assert [s.key_id for s in again.existing_secrets] == [first.secret_key_id]
    newer = client.register_mailbox_app(MAILBOX, new_secret=True)
    assert newer.client_secret is not None and newer.created == ("client secret",)
    assert _counts(server.emulator)["secrets"] == before["secrets"] + 1


def test_dry_run_plans_and_writes_nothing(server: EmulatorServer, clock: FakeClock) -> None:
    before = _counts(server.emulator)
    with _client(server, clock) as client:
        reg = client.register_mailbox_app(MAILBOX, dry_run=True)
    assert reg.dry_run
    assert any("create application" in step for step in reg.plan)
    assert _counts(server.emulator) == before


def _graph_admin_http(server: EmulatorServer) -> tuple[httpx.Client, dict[str, str]]:
    import ssl

    client = httpx.Client(
        base_url=server.base_url, verify=ssl.create_default_context(cafile=server.ca_file)
    )
    r = client.post(
        f"/{server.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": server.admin_client_id,
            "client_secret": server.admin_client_secret,
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    return client, {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_adopting_a_portal_app_removes_user_read(server: EmulatorServer, clock: FakeClock) -> None:
    http, h = _graph_admin_http(server)
    with closing(http):
        portal = http.post(
            "/v1.0/applications",
            headers=h,
            json={
                "displayName": "MIM mail (made in the portal)",
                "signInAudience": "AzureADMyOrg",
                "requiredResourceAccess": [
                    {
                        "resourceAppId": GRAPH_APP_ID,
                        "resourceAccess": [{"id": GRAPH_USER_READ_SCOPE_ID, "type": "Scope"}],
                    }
                ],
            },
        ).json()
    with _client(server, clock) as client:
        reg = client.register_mailbox_app(MAILBOX, app_id=portal["appId"])
    app = server.emulator.directory.state.applications[portal["id"]]
    assert reg.application_id == portal["appId"]
    assert app.display_name == "MIM mail (made in the portal)"
    assert app.required_resource_access == [
        {
            "resourceAppId": EXCHANGE_APP_ID,
            "resourceAccess": [{"id": FULL_ACCESS_AS_APP_ID, "type": "Role"}],
        }
    ]
    assert "mim-o365:adopted" in app.tags
    assert "requiredResourceAccess" in reg.changed
    assert reg.consent == "granted"


def test_consent_already_present_is_success(server: EmulatorServer, clock: FakeClock) -> None:
    with _client(server, clock) as client:
        first = client.register_mailbox_app(MAILBOX)
        # someone removes our secret record but consent stays: a rerun mints and does not re-consent
        assignments = _counts(server.emulator)["assignments"]
        again = client.register_mailbox_app(MAILBOX, new_secret=True)
    assert "admin consent" not in again.created
    assert _counts(server.emulator)["assignments"] == assignments
    assert again.service_principal_id == first.service_principal_id


def test_replication_lag_on_every_step_without_sleeping(clock: FakeClock) -> None:
    knobs = Knobs(replication=Lag(reads=3), secret=Lag(reads=2), consent=Lag(reads=2))
    em = Emulator(seed=9, clock=clock, knobs=knobs)
    with EmulatorServer(em) as server, _client(server, clock) as client:
        reg = client.register_mailbox_app(MAILBOX)
    assert reg.token_has_role is True
    assert clock.slept, "the flow must have waited (on the fake clock)"
    assert (
        em.count("graph", method="POST", path="/servicePrincipals") >= 2
    )  # first try met NoBackingApplicationObject
    assert em.statuses()[404] >= 1


def test_throttling_is_retried_after_retry_after(server: EmulatorServer, clock: FakeClock) -> None:
    server.emulator.faults.inject("throttle", 3, service="graph", retry_after=4)
    server.emulator.faults.inject("unavailable", 1, service="graph", path="/applications")
    with _client(server, clock) as client:
        reg = client.register_mailbox_app(MAILBOX)
    assert reg.token_has_role is True
    assert server.emulator.statuses()[429] == 3
    assert sum(1 for s in clock.slept if s >= 4) >= 3, "each 429 is honoured with its Retry-After"


def _limited_admin(server: EmulatorServer, roles: tuple[str, ...]) -> tuple[str, str]:
    """An app-only admin holding only ``roles`` on Graph."""
    http, h = _graph_admin_http(server)
    with closing(http):
        app = http.post(
            "/v1.0/applications", headers=h, json={"displayName": "limited admin"}
        ).json()
        sp = http.post("/v1.0/servicePrincipals", headers=h, json={"appId": app["appId"]}).json()
        secret = http.post(
            f"/v1.0/applications/{app['id']}/addPassword", headers=h, json={}
        ).json()["secretText"]
        graph = http.get(f"/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')", headers=h).json()
        for role in roles:
            http.post(
                f"/v1.0/servicePrincipals/{graph['id']}/appRoleAssignedTo",
                headers=h,
                json={
                    "principalId": sp["id"],
                    "resourceId": graph["id"],
                    "appRoleId": GRAPH_ROLES[role],
                },
            )
    return app["appId"], secret


def test_consent_403_gives_the_admin_consent_url_and_finishes(
    server: EmulatorServer, clock: FakeClock
) -> None:
    admin_id, secret = _limited_admin(
        server, ("Application.ReadWrite.All", "User.Read.All", "Organization.Read.All")
    )
    with _client(server, clock, admin_id, secret) as client:
        reg = client.register_mailbox_app(MAILBOX, scope="none", allow_list=False)
    assert reg.consent == "pending"
    assert (
        reg.admin_consent_url
        == f"{server.base_url}/{server.tenant_id}/adminconsent?client_id={reg.application_id}"
    )
    assert reg.client_secret is not None, "the remaining steps still ran"
    assert reg.service_principal_id


def test_cli_consent_403_exit_code_and_url(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_id, secret = _limited_admin(
        server, ("Application.ReadWrite.All", "User.Read.All", "Organization.Read.All")
    )
    result = _cli(
        server,
        monkeypatch,
        ["register", "--mailbox", MAILBOX, "--scope", "none", "--no-allow-list"],
        client_id=admin_id,
        secret=secret,
    )
    assert result.exit_code == 4, result.stderr
    assert "/adminconsent?client_id=" in result.stderr
    assert "ApplicationId: " in result.stdout


def test_secret_lifetime_cap_is_a_clear_configuration_error(clock: FakeClock) -> None:
    em = Emulator(seed=4, clock=clock, knobs=Knobs(secret_max_lifetime_days=90))
    with EmulatorServer(em) as server, _client(server, clock) as client:
        with pytest.raises(ConfigurationError, match="caps client secret lifetime") as err:
            client.register_mailbox_app(MAILBOX, secret_lifetime_days=180)
        assert "--secret-lifetime-days" in str(err.value)
        assert "90 days" in str(err.value)
        assert (
            client.register_mailbox_app(MAILBOX, secret_lifetime_days=90).client_secret is not None
        )


class _BrokenSink:
    description = "a broken vault"

    def check(self) -> None:
        pass

    def deliver(self, secret: Secret, facts: Any) -> None:
        raise OSError(28, "No space left on device")


def test_undeliverable_secret_is_removed_again(server: EmulatorServer, clock: FakeClock) -> None:
    with (
        _client(server, clock) as client,
        pytest.raises(ConfigurationError, match="removed from the application again"),
    ):
        client.register_mailbox_app(MAILBOX, secret_sink=_BrokenSink())
    apps = [
        a for a in server.emulator.directory.state.applications.values() if "mim-o365" in a.tags
    ]
    assert len(apps) == 1
    assert apps[0].password_credentials == [], "the minted secret must not stay behind"
    assert server.emulator.count("graph", path="removePassword") == 1


def test_secret_out_file_is_owner_only(
    server: EmulatorServer, clock: FakeClock, tmp_path: Path
) -> None:
    target = tmp_path / "mim-secret.txt"
    with _client(server, clock) as client:
        reg = client.register_mailbox_app(MAILBOX, secret_sink=FileSink(target))
    assert reg.client_secret is None
    assert reg.secret_destination == f"file {target}"
    if os.name == "posix":
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert (
        server.emulator.directory.state.applications[reg.object_id or ""]
        .password_credentials[0]
        .hint
        == target.read_text()[:3]
    )


@pytest.mark.parametrize(
    ("mailbox", "message"),
    [
        ("nobody@contoso.onmicrosoft.com", "was not found in tenant contoso.onmicrosoft.com"),
        ("contractor@contoso.onmicrosoft.com", "has no mailbox"),
        ("not-an-address", "is not an e-mail address"),
    ],
)
def test_bad_mailbox_is_an_error_and_nothing_is_written(
    server: EmulatorServer, clock: FakeClock, mailbox: str, message: str
) -> None:
    before = _counts(server.emulator)
    with _client(server, clock) as client, pytest.raises(ConfigurationError, match=message):
        client.register_mailbox_app(mailbox)
    assert _counts(server.emulator) == before
    assert server.emulator.count("graph", method="POST") == 0


def test_two_apps_claiming_one_mailbox_is_a_conflict(
    server: EmulatorServer, clock: FakeClock
) -> None:
    http, h = _graph_admin_http(server)
    with closing(http):
        for _ in range(2):
            http.post(
                "/v1.0/applications",
                headers=h,
                json={
                    "displayName": "dup",
                    "tags": ["mim-o365", "mim-o365:mailbox:mimservice@contoso.onmicrosoft.com"],
                },
            )
    with _client(server, clock) as client, pytest.raises(PlanConflictError, match="--app-id"):
        client.register_mailbox_app(MAILBOX)


def test_secret_never_reaches_logs_at_debug(
    server: EmulatorServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with _client(server, clock) as client:
        reg = client.register_mailbox_app(MAILBOX)
    assert reg.client_secret is not None
    value = reg.client_secret.reveal()
    assert value not in caplog.text
    assert server.admin_client_secret not in caplog.text
    assert value not in repr(reg) and value not in str(reg.as_dict())


# --- the CLI ---------------------------------------------------------------------------------


def _cli(
    server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    *,
    client_id: str | None = None,
    secret: str | None = None,
    extra: list[str] | None = None,
) -> Any:
    monkeypatch.setenv("AZURE_CLIENT_ID", client_id or server.admin_client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret or server.admin_client_secret)
    monkeypatch.setenv("AZURE_TENANT_ID", server.tenant_id)
    runner = CliRunner()
    return runner.invoke(
        main,
        [
            *args,
            "--cloud-file",
            str(server.cloud_file),
            "--tenant",
            server.tenant_id,
            "--auth",
            "environment",
            *(extra or ["--timeout", "60"]),
        ],
        catch_exceptions=False,
    )


def test_cli_json_output(server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _cli(server, monkeypatch, ["register", "--mailbox", MAILBOX, "--output", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    for key in (
        "application_id",
        "tenant_id",
        "client_secret",
        "secret_key_id",
        "secret_expires_at",
        "object_id",
        "service_principal_id",
        "mailbox",
        "cloud",
    ):
        assert key in data
    assert data["client_secret"] and data["tenant_id"] == server.tenant_id
    assert data["client_secret"] not in result.stderr


def test_cli_text_env_and_secret_out(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = _cli(server, monkeypatch, ["register", "--mailbox", MAILBOX])
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["ApplicationId", "TenantId", "ClientSecret"]
    env = _cli(
        server, monkeypatch, ["register", "--mailbox", MAILBOX, "--new-secret", "--output", "env"]
    )
    assert env.exit_code == 0, env.stderr
    assert env.stdout.startswith("MIM_O365_APPLICATION_ID='")
    assert "MIM_O365_CLIENT_SECRET='" in env.stdout
    out = tmp_path / "secret"
    filed = _cli(
        server,
        monkeypatch,
        [
            "register",
            "--mailbox",
            MAILBOX,
            "--new-secret",
            "--secret-out",
            str(out),
            "--output",
            "json",
        ],
    )
    assert filed.exit_code == 0, filed.stderr
    assert json.loads(filed.stdout)["client_secret"] is None
    assert out.read_text().strip() not in filed.stdout + filed.stderr


def test_cli_bad_input_exit_codes(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = _cli(server, monkeypatch, ["register", "--mailbox", "nope"])
    assert bad.exit_code == 78
    assert "not an e-mail address" in bad.stderr
    missing_dir = _cli(
        server,
        monkeypatch,
        ["register", "--mailbox", MAILBOX, "--secret-out", str(tmp_path / "no" / "f")],
    )
    assert missing_dir.exit_code == 78
    assert "does not exist" in missing_dir.stderr
    assert server.emulator.count("graph") == 0, "checked before any request"


def test_cli_unknown_tenant_is_an_authentication_error(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", server.admin_client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", server.admin_client_secret)
    monkeypatch.setenv("AZURE_TENANT_ID", "fabrikam.onmicrosoft.com")
    result = CliRunner().invoke(
        main,
        [
            "register",
            "--mailbox",
            MAILBOX,
            "--cloud-file",
            str(server.cloud_file),
            "--tenant",
            "fabrikam.onmicrosoft.com",
            "--auth",
            "environment",
        ],
    )
    assert result.exit_code == 3, result.stderr
    assert "check --tenant" in result.stderr
    assert server.emulator.count("graph", method="POST") == 0


def test_cli_sandbox_persists_between_runs(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.json"
    runner = CliRunner()
    first = runner.invoke(
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
    assert first.exit_code == 0, first.stderr
    second = runner.invoke(
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
    assert second.exit_code == 0, second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["application_id"] == b["application_id"]
    assert b["created"] == [] and b["client_secret"] is None


SECRET_SHAPE = re.compile(r"[A-Za-z0-9]{3}[0-9]Q~[A-Za-z0-9~._-]{20,}")


def test_tenant_without_exchange_online_is_refused_before_writes(
    server: EmulatorServer, clock: FakeClock
) -> None:
    state = server.emulator.directory.state
    exo = next(sp for sp in state.service_principals.values() if sp.app_id == EXCHANGE_APP_ID)
    del state.service_principals[exo.id]
    with (
        _client(server, clock) as client,
        pytest.raises(ConfigurationError, match="no Office 365 Exchange Online"),
    ):
        client.register_mailbox_app(MAILBOX)
    assert server.emulator.count("graph", method="POST") == 0


def test_timeout_takes_the_undelivered_secret_back_and_a_rerun_finishes(clock: FakeClock) -> None:
    em = Emulator(seed=21, clock=clock, knobs=Knobs(consent=Lag(seconds=900)))
    with EmulatorServer(em) as server, _client(server, clock) as client:
        with pytest.raises(PropagationTimeoutError) as err:
            client.register_mailbox_app(MAILBOX, timeout=60)
        assert "full_access_as_app" in str(err.value)
        assert not SECRET_SHAPE.search(str(err.value))
        app = next(a for a in em.directory.state.applications.values() if "mim-o365" in a.tags)
        assert app.password_credentials == [], "a secret nobody received must not stay behind"
        clock.advance(900)
        reg = client.register_mailbox_app(MAILBOX, timeout=60)
    assert reg.token_has_role is True
    assert reg.created == ("client secret",)


def test_cli_timeout_is_exit_75(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    em = Emulator(seed=22, knobs=Knobs(consent=Lag(reads=10_000)))
    with EmulatorServer(em) as server:
        result = _cli(
            server, monkeypatch, ["register", "--mailbox", MAILBOX], extra=["--timeout", "1"]
        )
    assert result.exit_code == 75, result.stderr
    assert "run the same command again" in result.stderr


def test_cli_lifetime_cap_is_exit_78(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    em = Emulator(seed=23, clock=clock, knobs=Knobs(secret_max_lifetime_days=30))
    with EmulatorServer(em) as server:
        result = _cli(server, monkeypatch, ["register", "--mailbox", MAILBOX])
    assert result.exit_code == 78, result.stderr
    assert "Maximum allowed lifetime: 30 days" in result.stderr
    assert "--secret-lifetime-days" in result.stderr


@pytest.mark.skipif(
    not Path("/proc/self").is_dir(), reason="needs a folder where no file can be created (/proc)"
)
def test_cli_unwritable_secret_out_removes_the_secret(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _cli(
        server,
        monkeypatch,
        ["register", "--mailbox", MAILBOX, "--secret-out", "/proc/self/mim-secret"],
    )
    assert result.exit_code == 78, result.stderr
    assert "removed from the application again" in result.stderr
    apps = [
        a for a in server.emulator.directory.state.applications.values() if "mim-o365" in a.tags
    ]
    assert [a.password_credentials for a in apps] == [[]]
    assert not SECRET_SHAPE.search(result.stdout + result.stderr)


def test_cli_dry_run_and_debug_output_hold_no_secret(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dry = _cli(server, monkeypatch, ["register", "--mailbox", MAILBOX, "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    assert "create application" in dry.stderr
    assert dry.stdout == ""
    assert server.emulator.count("graph", method="POST") == 0
    loud = _cli(server, monkeypatch, ["-vv", "register", "--mailbox", MAILBOX, "--output", "json"])
    assert loud.exit_code == 0, loud.stderr
    secret = json.loads(loud.stdout)["client_secret"]
    assert "DEBUG" in loud.stderr or "INFO" in loud.stderr
    assert secret not in loud.stderr
    assert server.admin_client_secret not in loud.stderr + loud.stdout


def test_cli_auto_auth_without_identity_lists_the_choices(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_CERTIFICATE_PATH",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no Azure CLI either
    result = CliRunner().invoke(
        main,
        [
            "register",
            "--mailbox",
            MAILBOX,
            "--tenant",
            server.tenant_id,
            "--cloud-file",
            str(server.cloud_file),
        ],
    )
    assert result.exit_code == 78
    for choice in ("device-code", "browser", "azure-cli", "managed-identity", "--sandbox"):
        assert choice in result.stderr
