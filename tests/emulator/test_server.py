"""The emulator over real HTTPS: persistence, dropped connections, and `mim-o365 emulator serve`."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mim_o365 import Cloud, FakeClock
from mim_o365.emulator import Emulator, EmulatorServer


def _client(server: EmulatorServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, verify=ssl.create_default_context(cafile=server.ca_file)
    )


def _admin_token(client: httpx.Client, tenant: str, client_id: str, secret: str) -> str:
    r = client.post(
        f"/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_cloud_file_describes_the_server(server: EmulatorServer) -> None:
    cloud = Cloud.from_file(server.cloud_file)
    assert cloud.authority == server.base_url
    assert cloud.graph_endpoint == server.base_url
    assert cloud.graph_resource == "https://graph.microsoft.com"
    assert cloud.exchange_resource == "https://outlook.office365.com"
    assert cloud.ca_file == server.ca_file
    assert cloud.instance_discovery is False
    info = json.loads(server.info_json())
    assert set(info) == {
        "base_url",
        "ca_file",
        "tenant_id",
        "tenant_domain",
        "cloud_file",
        "admin_client_id",
        "admin_client_secret",
        "mailbox",
    }
    assert info["mailbox"] == "MIMService@contoso.onmicrosoft.com"
    assert server.emulator.admin_client_secret not in repr(server)


def test_tls_is_verified_against_the_generated_ca(server: EmulatorServer) -> None:
    with httpx.Client(base_url=server.base_url) as untrusting, pytest.raises(httpx.ConnectError):
        untrusting.get(f"/{server.tenant_id}/v2.0/.well-known/openid-configuration")
    with _client(server) as trusting:
        assert (
            trusting.get(f"/{server.tenant_id}/v2.0/.well-known/openid-configuration").status_code
            == 200
        )


def test_dropped_connection_over_https(server: EmulatorServer) -> None:
    server.emulator.faults.inject("drop", 1, service="identity")
    with _client(server) as client:
        url = f"/{server.tenant_id}/v2.0/.well-known/openid-configuration"
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(url)
        assert client.get(url).status_code == 200


def test_unknown_route_and_malformed_body_over_https_are_odata_errors(
    server: EmulatorServer,
) -> None:
    with _client(server) as client:
        token = _admin_token(
            client, server.tenant_id, server.admin_client_id, server.admin_client_secret
        )
        h = {"Authorization": f"Bearer {token}"}
        unknown = client.get("/nothing/here", headers=h)
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"]
        bad = client.post(
            "/v1.0/applications",
            content=b"{not json",
            headers={**h, "Content-Type": "application/json"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "Request_BadRequest"
    assert server.emulator.statuses()[500] == 0


def test_state_persists_between_servers_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "tenant.json"
    with (
        EmulatorServer(state_path=state, seed=5, clock=FakeClock()) as first,
        _client(first) as client,
    ):
        token = _admin_token(
            client, first.tenant_id, first.admin_client_id, first.admin_client_secret
        )
        r = client.post(
            "/v1.0/applications",
            json={"displayName": "kept"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201
        app_id, tenant, admin = (
            r.json()["appId"],
            first.tenant_id,
            (first.admin_client_id, first.admin_client_secret),
        )
    if os.name == "posix":
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
    with EmulatorServer(state_path=state, clock=FakeClock()) as second, _client(second) as client:
        assert second.tenant_id == tenant
        assert (second.admin_client_id, second.admin_client_secret) == admin
        token = _admin_token(client, tenant, *admin)
        r = client.get(
            "/v1.0/applications",
            params={"$filter": f"appId eq '{app_id}'"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert [a["displayName"] for a in r.json()["value"]] == ["kept"]


def test_server_requires_start_for_addresses() -> None:
    srv = EmulatorServer(Emulator(seed=1))
    with pytest.raises(RuntimeError, match="not started"):
        _ = srv.base_url


def _serve(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REQUESTS_CA", "SSL_CERT"))}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mim_o365",
            "emulator",
            "serve",
            "--info-file",
            str(tmp_path / "info.json"),
            "--workdir",
            str(tmp_path / "work"),
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_cli_serve_runs_until_interrupted(tmp_path: Path) -> None:
    proc = _serve(
        tmp_path, "--state", str(tmp_path / "state.json"), "--seed", "3", "--replication-delay", "0"
    )
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # blocks until the server has printed its banner
            lines.append(line)
            if "Ctrl-C" in line:
                break
        info = json.loads((tmp_path / "info.json").read_text())
        banner = "".join(lines)
        assert info["base_url"] in banner
        assert info["admin_client_secret"] not in banner, (
            "the admin secret must not reach the terminal"
        )
        if os.name == "posix":
            assert stat.S_IMODE((tmp_path / "info.json").stat().st_mode) == 0o600
        cloud = Cloud.from_file(info["cloud_file"])
        ctx = ssl.create_default_context(cafile=cloud.ca_file)
        with httpx.Client(base_url=cloud.authority, verify=ctx) as client:
            _admin_token(
                client, info["tenant_id"], info["admin_client_id"], info["admin_client_secret"]
            )
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == "", "serve writes nothing to stdout"
    assert (tmp_path / "state.json").exists()


def test_cli_serve_rejects_a_corrupt_state_file(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{}")
    proc = _serve(tmp_path, "--state", str(tmp_path / "state.json"))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 78, err
    assert "state.json" in err
    assert "not a mim-o365-emulator-state/1 file" in err
