"""`unregister` end to end over HTTPS: the tenant ends as it was before `register`, and nothing
that is not ours is touched."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from mim_o365 import Client, Cloud, ConfigurationError, FakeClock, Secret
from mim_o365._gateways import _clients
from mim_o365._wellknown import FULL_ACCESS_AS_APP_ID, GRAPH_APP_ID, GRAPH_USER_READ_SCOPE_ID
from mim_o365.cli import main
from mim_o365.emulator import Emulator, EmulatorServer, Knobs, _persist

MAILBOX = "MIMService@contoso.onmicrosoft.com"
OTHER = "alex.wilber@contoso.onmicrosoft.com"


def _client(server: EmulatorServer, clock: FakeClock) -> Client:
    cloud = Cloud.from_file(server.cloud_file)
    cred = _clients.client_secret_credential(
        cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
    )
    return Client(cred, tenant=server.tenant_id, cloud=cloud, clock=clock)


@pytest.fixture
def client(server: EmulatorServer, clock: FakeClock) -> Iterator[Client]:
    with _client(server, clock) as c:
        yield c


def snapshot(em: Emulator) -> dict[str, Any]:
    """The parts of the tenant that register touches, as the persisted state writes them.

    ``issued_secret_hashes`` (every secret ever issued, for uniqueness) is left out; the EWS
    settings are compared as Get-OrganizationConfig shows them and as EWS enforces them.
    """
    data = json.loads(_persist.dumps(em.directory.state))["directory"]
    ex = data["exchange"]
    enabled, allowed = em.exchange.effective_org()
    return {
        "applications": data["applications"],
        "service_principals": data["service_principals"],
        "app_role_assignments": data["app_role_assignments"],
        "users": data["users"],
        "groups": data["groups"],
        "org": {
            "EwsEnabled": ex["org"]["ews_enabled"],
            "EwsAllowedAppIDs": ex["org"]["ews_allowed_app_ids"],
            "enforced": [enabled, allowed],
        },
        "exchange_groups": ex["groups"],
        "policies": ex["policies"],
        "exchange_service_principals": ex["service_principals"],
        "scopes": ex["scopes"],
        "role_assignments": ex["role_assignments"],
    }


def _graph_admin_http(server: EmulatorServer) -> tuple[httpx.Client, dict[str, str]]:
    """Plain Graph calls as the seeded admin (to set up objects made outside mim-o365)."""
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


def _group_name(app_id: str) -> str:
    return f"mim-o365 scope {app_id}"


@pytest.mark.parametrize("scope", ["policy", "rbac"])
def test_unregister_leaves_the_tenant_as_it_was(
    server: EmulatorServer, client: Client, scope: str
) -> None:
    em = server.emulator
    seeded = em.directory.state.exchange.org.ews_allowed_app_ids
    assert seeded, "the seeded tenant lists one unrelated app"
    before = snapshot(em)
    reg = client.register_mailbox_app(MAILBOX, scope=scope)
    assert reg.verified is True
    during = snapshot(em)
    assert during != before
    assert reg.application_id in (during["org"]["EwsAllowedAppIDs"] or "")

    result = client.unregister(reg.application_id)

    assert snapshot(em) == before
    assert em.directory.state.exchange.org.ews_allowed_app_ids == seeded
    assert result.found and result.managed and not result.adopted
    assert result.removed == result.plan
    assert result.removed[0].startswith("client secret"), "credentials go first"
    assert result.removed[-1].startswith("application"), "the application goes last"
    if scope == "rbac":
        assert any("RBAC for Applications role assignment" in r for r in result.removed)
        assert any("service principal pointer" in r for r in result.removed)
        assert not any("admin consent" in r for r in result.removed)
    else:
        assert any("admin consent" in r for r in result.removed)
        assert any("application access policy" in r for r in result.removed)

    again = client.unregister(reg.application_id)
    assert again.removed == () and again.plan == ()
    assert not again.found
    assert "already removed" in again.notes[0]
    assert snapshot(em) == before


def test_order_takes_access_away_before_restrictions(
    server: EmulatorServer, client: Client
) -> None:
    reg = client.register_mailbox_app(MAILBOX)
    removed = client.unregister(reg.application_id).removed

    def at(word: str) -> int:
        return next(i for i, r in enumerate(removed) if word in r)

    assert at("client secret") < at("admin consent") < at("EwsAllowedAppIDs")
    assert at("admin consent") < at("application access policy") < at("group '")
    assert at("group '") < at("service principal ") < at("application '")


def test_dry_run_lists_the_plan_and_writes_nothing(server: EmulatorServer, client: Client) -> None:
    em = server.emulator
    reg = client.register_mailbox_app(MAILBOX)
    before = snapshot(em)
    writes = em.count("graph") - em.count("graph", method="GET")
    dry = client.unregister(reg.application_id, dry_run=True)
    assert dry.dry_run and dry.removed == ()
    assert len(dry.plan) == 7
    assert snapshot(em) == before
    assert em.count("graph") - em.count("graph", method="GET") == writes
    real = client.unregister(reg.application_id)
    assert real.removed == dry.plan


def _portal_app(server: EmulatorServer) -> dict[str, Any]:
    """An app made in the portal, as the MIM docs describe, with a secret and a tag of its own."""
    http, h = _graph_admin_http(server)
    with closing(http):
        app: dict[str, Any] = http.post(
            "/v1.0/applications",
            headers=h,
            json={
                "displayName": "MIM mail (made in the portal)",
                "signInAudience": "AzureADMyOrg",
                "tags": ["owner:messaging-team"],
                "requiredResourceAccess": [
                    {
                        "resourceAppId": GRAPH_APP_ID,
                        "resourceAccess": [{"id": GRAPH_USER_READ_SCOPE_ID, "type": "Scope"}],
                    }
                ],
            },
        ).json()
        http.post(
            f"/v1.0/applications/{app['id']}/addPassword",
            headers=h,
            json={"passwordCredential": {"displayName": "portal secret"}},
        )
    return app


def test_an_adopted_app_survives_unregister(server: EmulatorServer, client: Client) -> None:
    em = server.emulator
    portal = _portal_app(server)
    reg = client.register_mailbox_app(MAILBOX, app_id=portal["appId"])
    app = em.directory.state.applications[portal["id"]]
    assert "mim-o365:adopted" in app.tags
    assert len(app.password_credentials) == 2
    policies_before = dict(em.directory.state.exchange.policies)

    result = client.unregister(reg.application_id)

    assert result.adopted
    app = em.directory.state.applications[portal["id"]]
    assert app.tags == ["owner:messaging-team"], "only our tags are removed"
    assert [c.display_name for c in app.password_credentials] == ["portal secret"]
    sp = em.directory.sp_by_app_id(portal["appId"])
    assert sp is not None, "the service principal of an adopted app stays"
    grants = [
        a for a in em.directory.state.app_role_assignments.values() if a.principal_id == sp.id
    ]
    assert [g.app_role_id for g in grants] == [FULL_ACCESS_AS_APP_ID], "consent stays"
    assert em.directory.state.exchange.policies == policies_before, (
        "a RestrictAccess policy is never removed from an app that stays: that would widen it"
    )
    assert reg.application_id in (em.directory.state.exchange.org.ews_allowed_app_ids or "")
    assert any("adopted" in k for k in result.kept)
    assert any("application access policy" in k and "left in place" in k for k in result.kept)
    assert reg.client_secret is not None
    assert result.removed == (
        f"client secret {reg.client_secret.reveal()[:3]}... ({reg.secret_key_id})",
        "application tags added by mim-o365 (mim-o365, mailbox, adopted)",
    )

    again = client.unregister(reg.application_id)
    assert again.removed == () and again.plan == ()
    assert not again.managed
    assert "not tagged as registered by mim-o365" in again.kept[0]


def test_a_group_with_another_member_survives(server: EmulatorServer, client: Client) -> None:
    em = server.emulator
    reg = client.register_mailbox_app(MAILBOX)
    name = _group_name(reg.application_id)
    em.exchange.add_member(name, OTHER)

    result = client.unregister(reg.application_id)

    group = next(g for g in em.directory.state.exchange.groups.values() if g.name == name)
    members = [u.mail for u in em.exchange.group_members(group)]
    assert members == [OTHER], "the other member stays; only our mailbox is taken out"
    assert f"{MAILBOX.lower()} from group '{name}' (the group stays)" in result.removed
    assert any("other members" in k and OTHER in k for k in result.kept)
    assert not em.directory.state.exchange.policies
    assert reg.object_id not in em.directory.state.applications


def test_a_group_we_did_not_create_is_left_as_it_is(server: EmulatorServer, client: Client) -> None:
    em = server.emulator
    em.exchange.new_security_group("MIM mail scope", notes="Made by the messaging team")
    reg = client.register_mailbox_app(MAILBOX, policy_group="MIM mail scope")

    result = client.unregister(reg.application_id)

    group = next(
        g for g in em.directory.state.exchange.groups.values() if g.name == "MIM mail scope"
    )
    assert [u.mail for u in em.exchange.group_members(group)] == [MAILBOX], (
        "we cannot tell whether the mailbox was there before, so membership stays"
    )
    assert any("not created by mim-o365" in k for k in result.kept)
    assert not em.directory.state.exchange.policies, "our policy on it is still removed"


@pytest.mark.parametrize(("ews_enabled", "left"), [(True, True), (False, False)])
def test_our_id_alone_on_the_allow_list(
    server: EmulatorServer, client: Client, ews_enabled: bool, left: bool
) -> None:
    em = server.emulator
    reg = client.register_mailbox_app(MAILBOX)
    em.exchange.set_org({"EwsEnabled": ews_enabled, "EwsAllowedAppIDs": reg.application_id})

    result = client.unregister(reg.application_id)

    org = em.directory.state.exchange.org
    if left:
        # Clearing the list with EwsEnabled=$true would open EWS to every application.
        assert org.ews_allowed_app_ids == reg.application_id
        assert any("EwsEnabled is $true" in k for k in result.kept)
        assert not any("EwsAllowedAppIDs" in r for r in result.removed)
    else:
        assert org.ews_allowed_app_ids is None
        assert any("the list is cleared" in r for r in result.removed)
    assert org.ews_enabled is ews_enabled, "EwsEnabled is never changed"


def test_a_foreign_app_is_not_touched(server: EmulatorServer, client: Client) -> None:
    em = server.emulator
    other = em.directory.state.exchange.org.ews_allowed_app_ids or ""
    before = snapshot(em)
    result = client.unregister(other)
    assert result.found and not result.managed
    assert result.plan == () and result.removed == ()
    assert snapshot(em) == before


def test_a_malformed_app_id_is_refused_before_any_request(
    server: EmulatorServer, client: Client
) -> None:
    with pytest.raises(ConfigurationError, match="not an application"):
        client.unregister("not-a-guid")
    assert server.emulator.count() == 0


# --- the CLI ---------------------------------------------------------------------------------


def _cli(
    server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    input: str | None = None,
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
        input=input,
        catch_exceptions=False,
    )


def test_cli_refuses_without_yes_when_stdin_is_not_a_terminal(
    server: EmulatorServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = client.register_mailbox_app(MAILBOX)
    em = server.emulator
    before, requests = snapshot(em), em.count()
    result = _cli(server, monkeypatch, ["unregister", "--app-id", reg.application_id])
    assert result.exit_code == 78, result.stderr
    assert "--yes" in result.stderr
    assert "Nothing was changed" in result.stderr
    assert em.count() == requests, "refused before any request"
    assert snapshot(em) == before


def test_cli_yes_dry_run_and_json(
    server: EmulatorServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = client.register_mailbox_app(MAILBOX)
    em = server.emulator
    before = snapshot(em)
    dry = _cli(
        server,
        monkeypatch,
        ["unregister", "--app-id", reg.application_id, "--dry-run", "--output", "json"],
    )
    assert dry.exit_code == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True and planned["removed"] == []
    assert "Would remove, in this order" in dry.stderr
    assert snapshot(em) == before
    done = _cli(
        server,
        monkeypatch,
        ["unregister", "--app-id", reg.application_id, "--yes", "--output", "json"],
    )
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == planned["plan"]
    again = _cli(server, monkeypatch, ["unregister", "--app-id", reg.application_id, "-y"])
    assert again.exit_code == 0, again.stderr
    assert "already unregistered" in again.stderr


def test_cli_asks_on_a_terminal(
    server: EmulatorServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mim_o365 import _cli_lifecycle

    monkeypatch.setattr(_cli_lifecycle, "_interactive", lambda: True)
    reg = client.register_mailbox_app(MAILBOX)
    em = server.emulator
    before = snapshot(em)
    declined = _cli(server, monkeypatch, ["unregister", "--app-id", reg.application_id], "n\n")
    assert declined.exit_code == 1
    assert "Would remove" in declined.stderr and "Nothing was changed" in declined.stderr
    assert snapshot(em) == before
    accepted = _cli(server, monkeypatch, ["unregister", "--app-id", reg.application_id], "y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert "Removed:" in accepted.stderr
    assert reg.object_id not in em.directory.state.applications


def test_cli_sandbox_register_status_unregister(tmp_path: Any) -> None:
    state = str(tmp_path / "sandbox.json")
    runner = CliRunner()
    box = ["--sandbox", "--sandbox-state", state]
    reg = runner.invoke(
        main, ["register", "--mailbox", MAILBOX, *box, "--output", "json"], catch_exceptions=False
    )
    assert reg.exit_code == 0, reg.stderr
    app_id = json.loads(reg.stdout)["application_id"]
    gone = runner.invoke(main, ["unregister", "--app-id", app_id, "--yes", *box])
    assert gone.exit_code == 0, gone.stderr
    status = runner.invoke(main, ["status", "--app-id", app_id, *box])
    assert status.exit_code == 11
    assert status.stdout.startswith("BROKEN")
    listed = runner.invoke(main, ["status", "--all", *box, "--output", "json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_unregister_with_ews_off_needs_no_enable(clock: FakeClock) -> None:
    em = Emulator(seed=41, clock=clock, knobs=Knobs(ews_enabled=False))
    with EmulatorServer(em) as server, _client(server, clock) as client:
        before = snapshot(em)
        reg = client.register_mailbox_app(MAILBOX)
        assert reg.ews_problem is not None
        client.unregister(reg.application_id)
        assert snapshot(em) == before
