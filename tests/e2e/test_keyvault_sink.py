"""KeyVaultSink over real HTTPS against the emulator, built the way production builds it, and read
back with the real azure-keyvault-secrets SecretClient."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.identity import DeviceCodeCredential
from azure.keyvault.secrets import SecretClient

from mim_o365 import (
    AuthenticationError,
    Cloud,
    ConfigurationError,
    ConflictError,
    FileSink,
    NotFoundError,
    PermissionDeniedError,
    Secret,
    SecretSink,
    TransportError,
)
from mim_o365._gateways._clients import client_secret_credential
from mim_o365._keyvault import CONTENT_TYPE, KeyVaultSink, make_sink, parse_secret_out
from mim_o365.emulator import EmulatorServer
from mim_o365.emulator._seed import AZURE_CLI_APP_ID
from tests.helpers import admin_headers, create_app, http

SPEC = "keyvault://contoso-vault/mim-o365-client-secret"
NAME = "mim-o365-client-secret"


def _cloud(server: EmulatorServer) -> Cloud:
    return Cloud.from_file(server.cloud_file)


def _admin_credential(server: EmulatorServer, cloud: Cloud, tenant: str | None = None) -> Any:
    return client_secret_credential(
        cloud,
        tenant or server.tenant_id,
        server.admin_client_id,
        Secret(server.admin_client_secret),
    )


def _reader(server: EmulatorServer, cloud: Cloud) -> SecretClient:
    """The real SDK client, pointed at the emulator cloud's vault URL."""
    return SecretClient(
        vault_url=cloud.keyvault_url("contoso-vault"),
        credential=_admin_credential(server, cloud),
        verify_challenge_resource=False,
        connection_verify=str(cloud.ca_file),
    )


def _facts(server: EmulatorServer, expires: datetime, key_id: str = "k-1") -> dict[str, str]:
    return {
        "application_id": "11111111-2222-3333-4444-555555555555",
        "tenant_id": server.tenant_id,
        "expires_at": expires.isoformat(),
        "key_id": key_id,
    }


def _assert_clean(exc: BaseException, value: str) -> None:
    assert value not in str(exc)
    assert value not in repr(exc)
    assert all(value not in str(a) for a in exc.args)
    assert exc.__cause__ is None
    assert exc.__suppress_context__


# --- delivery -------------------------------------------------------------------------------------


def test_sink_delivers_and_the_sdk_reads_it_back(
    server: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud = _cloud(server)
    assert cloud.keyvault_endpoint == server.base_url
    sink = make_sink(SPEC, cloud=cloud, credential=_admin_credential(server, cloud))
    assert isinstance(sink, KeyVaultSink)
    assert isinstance(sink, SecretSink)
    assert sink.description == f"Key Vault secret contoso-vault/{NAME}"
    assert sink.vault_url == f"{server.base_url}/keyvault/contoso-vault"
    sink.check()
    expires = datetime(2027, 5, 25, 9, 0, tzinfo=UTC)
    value = "Abc1Q~first-secret-value-0123456789abcdef"
    sink.deliver(Secret(value), _facts(server, expires))

    with _reader(server, cloud) as reader:
        stored = reader.get_secret(NAME)
    assert stored.value == value
    assert stored.id == sink.last_secret_id
    assert stored.properties.content_type == CONTENT_TYPE == "text/plain; charset=utf-8"
    assert stored.properties.expires_on == expires
    assert stored.properties.enabled is True
    assert stored.properties.tags == {
        "application-id": "11111111-2222-3333-4444-555555555555",
        "tenant-id": server.tenant_id,
        "key-id": "k-1",
        "managed-by": "mim-o365",
    }
    assert stored.properties.vault_url == "https://contoso-vault.vault.azure.net"
    # the value went over the wire and into the owner-only state, never into a log
    assert value not in caplog.text
    assert server.emulator.count("keyvault", method="PUT") == 2  # the challenge, then the write


def test_each_delivery_is_a_new_version(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    sink = KeyVaultSink.from_spec(SPEC, cloud=cloud, credential=_admin_credential(server, cloud))
    soon = datetime(2027, 1, 1, tzinfo=UTC)
    sink.deliver(Secret("value-one"), _facts(server, soon, "k-1"))
    first = sink.last_secret_id
    sink.deliver(Secret("value-two"), _facts(server, soon + timedelta(days=180), "k-2"))
    second = sink.last_secret_id
    assert first and second and first != second

    with _reader(server, cloud) as reader:
        versions = list(reader.list_properties_of_secret_versions(NAME, max_page_size=1))
        assert sorted(v.id or "" for v in versions) == sorted([first, second])
        current = reader.get_secret(NAME)
        assert current.value == "value-two"
        assert current.properties.tags is not None
        assert current.properties.tags["key-id"] == "k-2"
        assert current.properties.expires_on == soon + timedelta(days=180)
        old = reader.get_secret(NAME, first.rsplit("/", 1)[1])
        assert old.value == "value-one"
        assert old.properties.expires_on == soon
        names = [p.name for p in reader.list_properties_of_secrets()]
        assert names == [NAME]


def test_delivery_without_expiry_and_with_a_naive_time(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    sink = KeyVaultSink(
        "contoso-vault", "plain", cloud=cloud, credential=_admin_credential(server, cloud)
    )
    sink.deliver(Secret("no-expiry"), {"application_id": "a", "tenant_id": server.tenant_id})
    sink.deliver(Secret("naive"), {"expires_at": "2027-03-01T12:00:00"})
    with _reader(server, cloud) as reader:
        versions = {p.version: p for p in reader.list_properties_of_secret_versions("plain")}
        expiries = sorted((p.expires_on is not None) for p in versions.values())
        assert expiries == [False, True]
        latest = reader.get_secret("plain")
    assert latest.properties.expires_on == datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    assert latest.properties.tags == {"managed-by": "mim-o365"}


def test_the_interactive_admin_may_deliver(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    user = DeviceCodeCredential(
        client_id=AZURE_CLI_APP_ID,
        tenant_id=server.tenant_id,
        authority=cloud.authority,
        disable_instance_discovery=True,
        connection_verify=str(cloud.ca_file),
        prompt_callback=lambda uri, code, expires: None,
    )
    sink = KeyVaultSink("contoso-vault", "from-a-person", cloud=cloud, credential=user)
    sink.deliver(Secret("typed-by-admin"), {})
    with _reader(server, cloud) as reader:
        assert reader.get_secret("from-a-person").value == "typed-by-admin"


# --- failures -------------------------------------------------------------------------------------


def test_denied_caller_gets_permission_denied_without_the_secret(server: EmulatorServer) -> None:
    client = http(server.emulator)
    gh = admin_headers(client, server.emulator)
    app = create_app(client, gh, "not on the vault's access list")
    r = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=gh)
    outsider_secret = r.json()["secretText"]
    assert client.post(
        "/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=gh
    ).is_success

    cloud = _cloud(server)
    credential = client_secret_credential(
        cloud, server.tenant_id, app["appId"], Secret(outsider_secret)
    )
    sink = make_sink(SPEC, cloud=cloud, credential=credential)
    value = "Xyz9Q~this-must-never-appear-in-an-error"
    with pytest.raises(PermissionDeniedError) as caught:
        sink.deliver(Secret(value), _facts(server, datetime(2027, 1, 1, tzinfo=UTC)))
    err = caught.value
    _assert_clean(err, value)
    assert outsider_secret not in str(err)
    assert "Key Vault Secrets Officer" in str(err)
    assert "secrets set" in str(err)
    assert "contoso-vault" in str(err)
    assert err.missing == ("Key Vault Secrets Officer", "secrets set")
    assert server.emulator.directory.state.vaults["contoso-vault"].secrets == {}


def test_revoked_admin_is_denied(server: EmulatorServer) -> None:
    admin_sp = server.emulator.directory.sp_by_app_id(server.admin_client_id)
    assert admin_sp is not None
    server.emulator.keyvault.vaults.revoke("contoso-vault", admin_sp.id)
    cloud = _cloud(server)
    sink = make_sink(SPEC, cloud=cloud, credential=_admin_credential(server, cloud))
    with pytest.raises(PermissionDeniedError) as caught:
        sink.deliver(Secret("revoked-value"), {})
    _assert_clean(caught.value, "revoked-value")


def test_wrong_client_secret_is_an_authentication_error(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    credential = client_secret_credential(
        cloud, server.tenant_id, server.admin_client_id, Secret("not-the-admin-secret")
    )
    sink = make_sink(SPEC, cloud=cloud, credential=credential)
    with pytest.raises(AuthenticationError) as caught:
        sink.deliver(Secret("the-new-secret"), {})
    _assert_clean(caught.value, "the-new-secret")
    assert caught.value.error_code == "AADSTS7000215"


def test_credential_for_a_domain_name_is_told_to_use_the_tenant_id(
    server: EmulatorServer,
) -> None:
    cloud = _cloud(server)
    credential = _admin_credential(server, cloud, tenant=server.tenant_domain)
    sink = make_sink(SPEC, cloud=cloud, credential=credential)
    with pytest.raises(AuthenticationError, match="tenant id") as caught:
        sink.deliver(Secret("domain-secret"), {})
    assert server.tenant_id in str(caught.value)
    _assert_clean(caught.value, "domain-secret")


def test_unreachable_vault_is_a_transport_error(server: EmulatorServer) -> None:
    cloud = replace(_cloud(server), keyvault_endpoint="https://127.0.0.1:9")
    sink = KeyVaultSink(
        "contoso-vault",
        NAME,
        cloud=cloud,
        credential=_admin_credential(server, _cloud(server)),
        client_options={"retry_total": 0},
    )
    with pytest.raises(TransportError) as caught:
        sink.deliver(Secret("unsent-secret"), {})
    _assert_clean(caught.value, "unsent-secret")
    assert "127.0.0.1:9" in str(caught.value)


def test_unknown_vault_is_not_found(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    sink = make_sink(
        "keyvault://no-such-vault/x", cloud=cloud, credential=_admin_credential(server, cloud)
    )
    with pytest.raises(NotFoundError) as caught:
        sink.deliver(Secret("lost-secret"), {})
    assert caught.value.status_code == 404
    assert caught.value.service == "keyvault"
    _assert_clean(caught.value, "lost-secret")


def test_soft_deleted_secret_is_a_conflict(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    sink = make_sink(SPEC, cloud=cloud, credential=_admin_credential(server, cloud))
    sink.deliver(Secret("before-delete"), {})
    with _reader(server, cloud) as reader:
        reader.begin_delete_secret(NAME).wait()
    with pytest.raises(ConflictError, match="recover") as caught:
        sink.deliver(Secret("after-delete"), {})
    assert caught.value.status_code == 409
    _assert_clean(caught.value, "after-delete")


# --- the spec -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "keyvault://contoso-vault/mim-o365-client-secret",
            ("contoso-vault", "mim-o365-client-secret"),
        ),
        ("KEYVAULT://Kv1/S", ("Kv1", "S")),
        ("keyvault://abc/" + "a" * 127, ("abc", "a" * 127)),
        ("keyvault://a" + "b" * 22 + "c/x", ("a" + "b" * 22 + "c", "x")),
    ],
)
def test_parse_secret_out_accepts_key_vault_references(
    spec: str, expected: tuple[str, str]
) -> None:
    assert parse_secret_out(spec) == expected


@pytest.mark.parametrize(
    "spec", ["/etc/mim/secret", "secret.txt", "./keyvault/x", r"C:\mim\secret.txt", "~/s"]
)
def test_parse_secret_out_leaves_file_paths_alone(spec: str) -> None:
    assert parse_secret_out(spec) is None
    sink = make_sink(spec, cloud=Cloud.named("global"), credential=None)
    assert isinstance(sink, FileSink)


@pytest.mark.parametrize(
    ("spec", "fix"),
    [
        ("keyvault:contoso-vault/name", "keyvault://VAULT/NAME"),
        ("keyvault://contoso-vault", "keyvault://VAULT/NAME"),
        ("keyvault://contoso-vault/", "keyvault://VAULT/NAME"),
        ("keyvault:///name", "keyvault://VAULT/NAME"),
        ("keyvault://contoso-vault/name/0123456789abcdef", "no version"),
        ("keyvault://contoso-vault.vault.azure.net/name", "keyvault://contoso-vault/name"),
        ("keyvault://kv/name", "3-24"),
        ("keyvault://" + "k" * 25 + "/name", "3-24"),
        ("keyvault://1vault/name", "start with a letter"),
        ("keyvault://vault-/name", "end with a letter or digit"),
        ("keyvault://my--vault/name", "consecutive hyphens"),
        ("keyvault://my_vault/name", "3-24"),
        ("keyvault://contoso-vault/mim.secret", "letters, digits and hyphens"),
        ("keyvault://contoso-vault/mim_secret", "no dots, underscores"),
        ("keyvault://contoso-vault/" + "a" * 128, "1-127"),
        ("https://contoso-vault.vault.azure.net/secrets/name", "keyvault://"),
    ],
)
def test_parse_secret_out_explains_bad_references(spec: str, fix: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_secret_out(spec)
    assert fix in str(caught.value)
    with pytest.raises(ConfigurationError):
        make_sink(spec, cloud=Cloud.named("global"), credential=None)


def test_key_vault_sink_needs_a_credential_and_checks_without_network() -> None:
    cloud = Cloud.named("usgov")
    with pytest.raises(ConfigurationError, match="credential"):
        make_sink(SPEC, cloud=cloud, credential=None)
    sink = KeyVaultSink.from_spec(SPEC, cloud=cloud, credential=object())  # type: ignore[arg-type]
    sink.check()  # no request: the credential is never used
    assert sink.vault_url == "https://contoso-vault.vault.usgovcloudapi.net"
    assert repr(sink) == f"KeyVaultSink({SPEC!r}, cloud='usgov')"
    bad = KeyVaultSink("x", "y", cloud=cloud, credential=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="3-24"):
        bad.check()
    with pytest.raises(ConfigurationError, match="not a Key Vault reference"):
        KeyVaultSink.from_spec("secret.txt", cloud=cloud, credential=object())  # type: ignore[arg-type]
