"""`status` end to end over HTTPS: each layer's health, the monitoring exit codes, and
`status --all` over a fleet of 2,000 registrations."""

from __future__ import annotations

import asyncio
import json
import math
import ssl
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from mim_o365 import Client, Cloud, FakeClock, NotFoundError, Secret
from mim_o365 import aio as mim_aio
from mim_o365._gateways import _clients
from mim_o365._wellknown import FULL_ACCESS_AS_APP_ID
from mim_o365.cli import main
from mim_o365.emulator import Emulator, EmulatorServer
from mim_o365.emulator._directory import Caller

MAILBOX = "MIMService@contoso.onmicrosoft.com"
OTHER = "alex.wilber@contoso.onmicrosoft.com"


def _credential(server: EmulatorServer) -> Any:
    cloud = Cloud.from_file(server.cloud_file)
    return _clients.client_secret_credential(
        cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
    )


def _client(server: EmulatorServer, clock: FakeClock) -> Client:
    cloud = Cloud.from_file(server.cloud_file)
    return Client(_credential(server), tenant=server.tenant_id, cloud=cloud, clock=clock)


@pytest.fixture
def clock() -> FakeClock:
    """The emulator's time close to the real time: the CLI judges expiry on the real clock."""
    return FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1))


@pytest.fixture
def client(server: EmulatorServer, clock: FakeClock) -> Iterator[Client]:
    with _client(server, clock) as c:
        yield c


@pytest.fixture
def registered(client: Client) -> tuple[str, Secret]:
    reg = client.register_mailbox_app(MAILBOX)
    assert reg.client_secret is not None
    return reg.application_id, reg.client_secret


def test_a_fresh_registration_is_healthy(
    server: EmulatorServer, client: Client, registered: tuple[str, Secret], clock: FakeClock
) -> None:
    app_id, secret = registered
    st = client.get_status(app_id, secret=secret)
    assert (st.health, st.problems) == ("healthy", ())
    assert st.ok
    assert st.mailbox == MAILBOX.lower(), "the mailbox comes from the app's tag"
    assert (st.consent, st.scope) == ("granted", "policy")
    assert st.group == f"mim-o365 scope {app_id}"
    assert st.group_exists is True and st.mailbox_in_group is True
    assert st.access_policy is not None and st.access_policy_valid is True
    assert st.ews_enabled is True and st.ews_allow_listed is True
    assert st.verification is not None and st.verification.ok
    (only,) = st.secrets
    assert (only.made_by, only.state, only.hint) == ("mim-o365", "valid", secret.reveal()[:3])
    assert only.created == clock.now()
    assert only.expires is not None and st.valid_until == only.expires
    report = st.as_dict()
    assert json.loads(json.dumps(report))["health"] == "healthy"
    assert secret.reveal() not in json.dumps(report) + repr(st)


def test_rbac_scope_is_healthy_without_consent(server: EmulatorServer, client: Client) -> None:
    reg = client.register_mailbox_app(MAILBOX, scope="rbac")
    st = client.get_status(reg.application_id, secret=reg.client_secret)
    assert st.health == "healthy", st.problems
    assert (st.consent, st.scope) == ("rbac", "rbac")
    assert st.rbac_assignment is not None and st.mailbox_in_group is True
    assert st.verification is not None and st.verification.ok


def test_secrets_made_elsewhere_are_marked_foreign(
    server: EmulatorServer, client: Client, registered: tuple[str, Secret]
) -> None:
    app_id, _ = registered
    app = server.emulator.directory.app_by_app_id(app_id)
    assert app is not None
    caller = Caller(server.admin_client_id, None, frozenset({"Application.ReadWrite.All"}))
    server.emulator.directory.add_password(
        caller, app, {"passwordCredential": {"displayName": "made in the portal"}}
    )
    st = client.get_status(app_id)
    assert sorted(s.made_by for s in st.secrets) == ["foreign", "mim-o365"]
    assert st.secrets[0].made_by == "foreign", "newest expiry first (the portal default is 2 years)"


@pytest.mark.parametrize(
    ("days", "warn_days", "health", "words"),
    [
        (155, 30, "warning", "rotate it with `mim-o365 rotate --app-id"),
        (155, 10, "healthy", ""),
        (181, 30, "broken", "no valid client secret: every client secret has expired"),
    ],
)
def test_secret_expiry(
    server: EmulatorServer,
    registered: tuple[str, Secret],
    clock: FakeClock,
    days: int,
    warn_days: int,
    health: str,
    words: str,
) -> None:
    app_id, _ = registered
    clock.advance(timedelta(days=days).total_seconds())
    with _client(server, clock) as later:  # a new admin token: the old one expired meanwhile
        st = later.get_status(app_id, warn_days=warn_days)
    assert st.health == health
    assert words in " ".join(st.problems)


def _remove_consent(em: Emulator, app_id: str) -> None:
    st = em.directory.state
    sp = em.directory.sp_by_app_id(app_id)
    assert sp is not None
    for a in list(st.app_role_assignments.values()):
        if a.principal_id == sp.id and a.app_role_id == FULL_ACCESS_AS_APP_ID:
            del st.app_role_assignments[a.id]


def _unlist(em: Emulator, app_id: str) -> None:
    org = em.directory.state.exchange.org
    others = ",".join(a for a in (org.ews_allowed_app_ids or "").split(",") if a != app_id)
    em.exchange.set_org({"EwsAllowedAppIDs": others})


BREAKAGES: dict[str, tuple[Callable[[Emulator, str], object], str]] = {
    "ews disabled": (
        lambda em, a: em.exchange.set_org({"EwsEnabled": False}),
        "EwsEnabled is $false",
    ),
    "ews unset": (lambda em, a: em.exchange.set_org({"EwsEnabled": None}), "EwsEnabled is not set"),
    "not allow-listed": (_unlist, "not on the organization's EwsAllowedAppIDs"),
    "no consent": (_remove_consent, "admin consent for full_access_as_app is missing"),
    "group removed": (
        lambda em, a: em.exchange.remove_group(f"mim-o365 scope {a}"),
        "no longer exists",
    ),
    "mailbox left the group": (
        lambda em, a: em.exchange.remove_member(f"mim-o365 scope {a}", MAILBOX),
        "is not a member of the group",
    ),
    "policy removed": (
        lambda em, a: em.directory.state.exchange.policies.clear(),
        "no RestrictAccess application access policy",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_broken_layer_is_named_with_its_fix(
    server: EmulatorServer, client: Client, registered: tuple[str, Secret], breakage: str
) -> None:
    app_id, _ = registered
    breaker, words = BREAKAGES[breakage]
    breaker(server.emulator, app_id)
    st = client.get_status(app_id)
    assert st.health == "broken"
    assert any(words in p for p in st.problems), st.problems
    assert all("mim-o365 " in p or "Global Administrator" in p for p in st.problems), (
        "every problem names the fix"
    )


def test_a_failing_live_check_is_broken(
    server: EmulatorServer, client: Client, registered: tuple[str, Secret]
) -> None:
    app_id, _ = registered
    st = client.get_status(app_id, secret=Secret("not-the-secret-at-all"))
    assert st.health == "broken"
    assert st.verification is not None and st.verification.layer == "secret_not_valid"
    assert any("layer 'secret_not_valid'" in p for p in st.problems)


def test_an_unknown_application_is_not_found(server: EmulatorServer, client: Client) -> None:
    with pytest.raises(NotFoundError, match="status --all"):
        client.get_status("11111111-2222-3333-4444-555555555555")


def test_the_async_client_has_the_same_methods(
    server: EmulatorServer, registered: tuple[str, Secret], clock: FakeClock
) -> None:
    app_id, _ = registered
    cloud = Cloud.from_file(server.cloud_file)

    async def run() -> tuple[str, int]:
        async with mim_aio.Client(
            _credential(server), tenant=server.tenant_id, cloud=cloud, clock=clock
        ) as aclient:
            st = await aclient.get_status(app_id)
            listed = await aclient.list_registrations()
            return st.health, len(listed)

    with asyncio.Runner() as runner:
        assert runner.run(run()) == ("healthy", 1)


# --- status --all over a fleet -----------------------------------------------------------------

FLEET = 2000


def fill_fleet(em: Emulator, n: int = FLEET) -> dict[str, str]:
    """``n`` registrations made through the emulator's backend (no HTTP): app id -> expected health.

    Every 10th has only an expired secret (broken), every 10th+1 a secret expiring in 10 days
    (warning), the rest one valid secret and one expired (healthy).
    """
    d = em.directory
    caller = Caller(em.admin_client_id, None, frozenset({"Application.ReadWrite.All"}))
    now = em.clock.now()
    expected = {}
    for i in range(n):
        mailbox = f"mim{i:04d}@contoso.onmicrosoft.com"
        app = d.create_application(
            caller,
            {
                "displayName": f"MIM Service mailbox client access {i:04d}",
                "signInAudience": "AzureADMyOrg",
                "tags": ["mim-o365", f"mim-o365:mailbox:{mailbox}"],
            },
        )

        def secret(days: float, app: Any = app) -> None:
            start = now - timedelta(days=400)
            d.add_password(
                caller,
                app,
                {
                    "passwordCredential": {
                        "displayName": "mim-o365 fleet",
                        "startDateTime": start.isoformat(),
                        "endDateTime": (now + timedelta(days=days)).isoformat(),
                    }
                },
            )

        if i % 10 == 0:
            secret(-5)
            expected[app.app_id] = "broken"
        elif i % 10 == 1:
            secret(10)
            expected[app.app_id] = "warning"
        else:
            secret(-30)
            secret(120 + i % 50)
            expected[app.app_id] = "healthy"
    return expected


def test_status_all_lists_2000_registrations_in_3_graph_requests(
    server: EmulatorServer, client: Client
) -> None:
    em = server.emulator
    expected = fill_fleet(em)
    graph, tokens = em.count("graph"), em.count("identity", path="/token")

    rows = client.list_registrations()

    assert em.count("graph") - graph == math.ceil(FLEET / 999) == 3
    assert em.count("identity", path="/token") - tokens == 1, "one admin token"
    assert len(rows) == FLEET
    assert len({r.application_id for r in rows}) == FLEET, "each listed exactly once"
    assert {r.application_id: r.health for r in rows} == expected
    healthy = next(r for r in rows if r.health == "healthy")
    assert healthy.secrets == 2
    assert healthy.next_expiry is not None and healthy.valid_until == healthy.next_expiry
    assert all(r.mailbox and r.mailbox.startswith("mim") for r in rows)
    seeded = {em.admin_client_id, em.directory.state.exchange.org.ews_allowed_app_ids}
    assert not seeded & set(expected), "apps without our tag are not listed"


# --- the CLI -----------------------------------------------------------------------------------


def _cli(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, args: list[str], **kw: Any
) -> Result:
    monkeypatch.setenv("AZURE_CLIENT_ID", server.admin_client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", server.admin_client_secret)
    monkeypatch.setenv("AZURE_TENANT_ID", server.tenant_id)
    return CliRunner().invoke(
        main,
        [
            *args,
            "--cloud-file",
            str(server.cloud_file),
            "--tenant",
            server.tenant_id,
            "--auth",
            "environment",
        ],
        catch_exceptions=False,
        **kw,
    )


def test_cli_exit_codes_for_monitoring(
    server: EmulatorServer,
    registered: tuple[str, Secret],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app_id, _ = registered
    healthy = _cli(server, monkeypatch, ["status", "--app-id", app_id])
    assert healthy.exit_code == 0, healthy.stderr
    assert healthy.stdout.startswith("HEALTHY: ")
    assert "full_access_as_app (admin consent)" in healthy.stderr
    warning = _cli(server, monkeypatch, ["status", "--app-id", app_id, "--warn-days", "365"])
    assert warning.exit_code == 10
    assert warning.stdout.startswith("WARNING: ") and "mim-o365 rotate" in warning.stdout
    server.emulator.exchange.set_org({"EwsEnabled": False})
    broken = _cli(server, monkeypatch, ["status", "--app-id", app_id, "--output", "json"])
    assert broken.exit_code == 11
    report = json.loads(broken.stdout)
    assert report["health"] == "broken" and report["ews_enabled"] is False
    missing = _cli(
        server, monkeypatch, ["status", "--app-id", "11111111-2222-3333-4444-555555555555"]
    )
    assert missing.exit_code == 11
    assert missing.stdout.startswith("BROKEN: ")


def test_cli_verify_reads_the_secret_like_verify(
    server: EmulatorServer,
    registered: tuple[str, Secret],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app_id, secret = registered
    none = _cli(server, monkeypatch, ["status", "--app-id", app_id, "--verify"])
    assert none.exit_code == 78
    assert "never on the command line" in none.stderr
    piped = _cli(
        server,
        monkeypatch,
        ["status", "--app-id", app_id, "--secret-stdin", "--output", "json"],
        input=secret.reveal() + "\n",
    )
    assert piped.exit_code == 0, piped.stderr
    assert json.loads(piped.stdout)["verification"]["ok"] is True
    monkeypatch.setenv("MIM_O365_CLIENT_SECRET", "wrong-secret-value")
    wrong = _cli(server, monkeypatch, ["status", "--app-id", app_id, "--verify"])
    assert wrong.exit_code == 11
    assert "[FAIL] token" in wrong.stderr
    assert secret.reveal() not in piped.stdout + piped.stderr + wrong.stdout + wrong.stderr


def test_cli_status_all(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, client: Client
) -> None:
    em = server.emulator
    expected = fill_fleet(em, 12)
    text = _cli(server, monkeypatch, ["status", "--all"])
    assert text.exit_code == 11, "the worst health decides the exit code"
    lines = text.stdout.splitlines()
    assert len(lines) == 12, "one line per registration on stdout"
    assert {ln.split()[0] for ln in lines} == set(expected)
    assert "12 registrations: 8 healthy, 2 warning, 2 broken" in text.stderr
    as_json = _cli(server, monkeypatch, ["status", "--all", "--output", "json"])
    assert {r["application_id"]: r["health"] for r in json.loads(as_json.stdout)} == expected


def test_cli_usage_errors(server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _cli(server, monkeypatch, ["status"]).exit_code == 2
    both = _cli(server, monkeypatch, ["status", "--all", "--app-id", "x"])
    assert both.exit_code == 2
    assert server.emulator.count() == 0


def _graph_admin_http(server: EmulatorServer) -> tuple[httpx.Client, dict[str, str]]:
    http = httpx.Client(
        base_url=server.base_url, verify=ssl.create_default_context(cafile=server.ca_file)
    )
    token = http.post(
        f"/{server.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": server.admin_client_id,
            "client_secret": server.admin_client_secret,
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()["access_token"]
    return http, {"Authorization": f"Bearer {token}"}


def test_an_app_without_mailbox_tag_needs_mailbox_to_verify(
    server: EmulatorServer, client: Client
) -> None:
    http, h = _graph_admin_http(server)
    with closing(http):
        app = http.post(
            "/v1.0/applications", headers=h, json={"displayName": "someone else's app"}
        ).json()
    st = client.get_status(app["appId"])
    assert st.managed is False and st.mailbox is None
    assert st.health == "broken"
    assert any("no service principal" in p for p in st.problems)
    assert any("not tagged" in n for n in st.notes)
    from mim_o365 import ConfigurationError

    with pytest.raises(ConfigurationError, match="--mailbox"):
        client.get_status(app["appId"], secret=Secret("whatever-secret"))


def test_the_fast_listing_reads_what_the_sdk_models_read(
    server: EmulatorServer, client: Client, registered: tuple[str, Secret]
) -> None:
    """``applications_with_tag`` parses the pages itself; it must agree with msgraph-sdk."""
    from mim_o365._retry import Deadline

    fill_fleet(server.emulator, 5)
    aclient = client._aclient

    async def both() -> tuple[list[Any], list[Any]]:
        directory = aclient._directory(Deadline(aclient._clock, 60))
        return (
            await directory.applications_with_tag("mim-o365"),
            await directory.applications_tagged("mim-o365"),
        )

    fast, sdk = client._run(both())
    assert len(fast) == 6
    assert fast == sdk


def test_a_malformed_app_id_is_a_configuration_error(
    server: EmulatorServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mim_o365 import ConfigurationError

    with pytest.raises(ConfigurationError, match="not an application"):
        client.get_status("MIM Service mailbox client access")
    assert _cli(server, monkeypatch, ["status", "--app-id", "nope"]).exit_code == 78
    assert server.emulator.count() == 0
