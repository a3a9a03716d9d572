"""Each fault knob: the documented error first, then success once the condition clears. No sleeping."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import requests

from mim_o365 import FakeClock
from mim_o365._wellknown import EXCHANGE_APP_ID, FULL_ACCESS_AS_APP_ID
from mim_o365.emulator import Emulator, Knobs, Lag
from tests.helpers import EXCHANGE, admin_headers, claims, create_app, http, token_response


def _setup(knobs: Knobs, clock: FakeClock) -> tuple[Emulator, httpx.Client, dict[str, str]]:
    em = Emulator(seed=7, clock=clock, knobs=knobs)
    client = http(em)
    return em, client, admin_headers(client, em)


def test_replication_lag_by_reads_hides_new_app_then_shows_it(clock: FakeClock) -> None:
    _em, client, h = _setup(Knobs(replication=Lag(reads=2)), clock)
    app = create_app(client, h)
    for _ in range(2):
        r = client.get(f"/v1.0/applications/{app['id']}", headers=h)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "Request_ResourceNotFound"
    assert client.get(f"/v1.0/applications/{app['id']}", headers=h).status_code == 200


def test_replication_lag_by_time(clock: FakeClock) -> None:
    _em, client, h = _setup(Knobs(replication=Lag(seconds=5)), clock)
    app = create_app(client, h)
    r = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=h)
    assert r.status_code == 404
    clock.advance(4.9)
    assert (
        client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=h).status_code
        == 404
    )
    clock.advance(0.2)
    assert (
        client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=h).status_code
        == 200
    )


def test_service_principal_before_app_replicated_is_no_backing_application(
    clock: FakeClock,
) -> None:
    _em, client, h = _setup(Knobs(replication=Lag(reads=1)), clock)
    app = create_app(client, h)
    r = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=h)
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["code"] == "NoBackingApplicationObject"
    assert (
        client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=h).status_code
        == 201
    )


def test_token_for_unreplicated_service_principal_is_700016(clock: FakeClock) -> None:
    em, client, h = _setup(Knobs(replication=Lag(seconds=10)), clock)
    app = create_app(client, h)
    clock.advance(10)
    assert (
        client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=h).status_code
        == 201
    )
    secret = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=h).json()[
        "secretText"
    ]
    r = token_response(client, em, app["appId"], secret, EXCHANGE)
    assert r.status_code == 400
    assert r.json()["error_codes"] == [700016]
    clock.advance(10)
    assert token_response(client, em, app["appId"], secret, EXCHANGE).status_code == 200


def _app_with_sp(client: httpx.Client, h: dict[str, str]) -> tuple[dict[str, str], str]:
    app = create_app(client, h)
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=h)
    assert sp.status_code == 201
    return app, sp.json()["id"]


def test_secret_activation_delay(clock: FakeClock) -> None:
    em, client, h = _setup(Knobs(secret=Lag(seconds=30)), clock)
    app, _ = _app_with_sp(client, h)
    secret = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=h).json()[
        "secretText"
    ]
    r = token_response(client, em, app["appId"], secret, EXCHANGE)
    assert r.status_code == 401
    assert r.json()["error_codes"] == [7000215]
    clock.advance(30)
    assert token_response(client, em, app["appId"], secret, EXCHANGE).status_code == 200


def test_consent_propagation_gives_tokens_without_roles_first(clock: FakeClock) -> None:
    em, client, h = _setup(Knobs(consent=Lag(reads=2)), clock)
    app, sp_id = _app_with_sp(client, h)
    secret = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=h).json()[
        "secretText"
    ]
    exo = client.get(f"/v1.0/servicePrincipals(appId='{EXCHANGE_APP_ID}')", headers=h).json()
    r = client.post(
        f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo",
        headers=h,
        json={"principalId": sp_id, "resourceId": exo["id"], "appRoleId": FULL_ACCESS_AS_APP_ID},
    )
    assert r.status_code == 201
    seen = [
        claims(
            token_response(client, em, app["appId"], secret, EXCHANGE).json()["access_token"]
        ).get("roles")
        for _ in range(3)
    ]
    assert seen == [None, None, ["full_access_as_app"]]


def test_throttling_answers_429_with_retry_after_then_recovers(emulator: Emulator) -> None:
    client = http(emulator)
    h = admin_headers(client, emulator)
    emulator.faults.inject("throttle", 2, service="graph", retry_after=7)
    for _ in range(2):
        r = client.get("/v1.0/organization", headers=h)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "7"
        assert r.json()["error"]["code"] == "TooManyRequests"
    assert client.get("/v1.0/organization", headers=h).status_code == 200


def test_service_unavailable_then_recovers(emulator: Emulator) -> None:
    client = http(emulator)
    h = admin_headers(client, emulator)
    emulator.faults.inject("unavailable", 1, path="/applications")
    r = client.get("/v1.0/applications", headers=h)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "serviceNotAvailable"
    assert client.get("/v1.0/organization", headers=h).status_code == 200
    assert client.get("/v1.0/applications", headers=h).status_code == 200


def test_identity_throttling_is_json_with_retry_after(emulator: Emulator) -> None:
    client = http(emulator)
    emulator.faults.inject("throttle", 1, service="identity")
    r = token_response(client, emulator, emulator.admin_client_id, emulator.admin_client_secret)
    assert r.status_code == 429
    assert "Retry-After" in r.headers
    assert r.json()["error"] == "temporarily_unavailable"
    assert (
        token_response(
            client, emulator, emulator.admin_client_id, emulator.admin_client_secret
        ).status_code
        == 200
    )


def test_dropped_connection_in_process_httpx_and_requests(emulator: Emulator) -> None:
    client = http(emulator)
    h = admin_headers(client, emulator)
    emulator.faults.inject("drop", 1, service="graph")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1.0/organization", headers=h)
    assert client.get("/v1.0/organization", headers=h).status_code == 200
    session = emulator.requests_session()
    emulator.faults.inject("drop", 1, service="identity")
    url = f"https://emulator.test/{emulator.tenant_id}/v2.0/.well-known/openid-configuration"
    with pytest.raises(requests.ConnectionError):
        session.get(url)
    assert session.get(url).status_code == 200


def test_secret_lifetime_policy_cap(clock: FakeClock) -> None:
    _em, client, h = _setup(Knobs(secret_max_lifetime_days=90), clock)
    app = create_app(client, h)
    r = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=h)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "CredentialInvalidLifetimeAsPerAppPolicy"
    end = (clock.now() + timedelta(days=90)).isoformat()
    ok = client.post(
        f"/v1.0/applications/{app['id']}/addPassword",
        headers=h,
        json={"passwordCredential": {"endDateTime": end}},
    )
    assert ok.status_code == 200


def test_random_faults_are_reproducible_under_a_seed() -> None:
    def run(seed: int) -> list[int]:
        em = Emulator(seed=seed, clock=FakeClock(), knobs=Knobs(throttle_rate=0.3, error_rate=0.2))
        client = http(em)
        url = f"/{em.tenant_id}/v2.0/.well-known/openid-configuration"
        return [client.get(url).status_code for _ in range(40)]

    first = run(11)
    assert first == run(11)
    assert {429, 503, 200} <= set(first)
    assert first != run(12)


def test_knobs_reject_impossible_values() -> None:
    with pytest.raises(ValueError, match="throttle_rate"):
        Knobs(throttle_rate=1.5)
    with pytest.raises(ValueError, match="negative"):
        Lag(seconds=-1)
    with pytest.raises(ValueError, match="unknown fault"):
        Emulator(seed=1).faults.inject("explode")
