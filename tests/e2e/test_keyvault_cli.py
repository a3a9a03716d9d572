"""`--secret-out keyvault://VAULT/NAME` for register and rotate, through the CLI, over HTTPS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mim_o365.cli import main
from mim_o365.emulator import Emulator, EmulatorServer

MAILBOX = "MIMService@contoso.onmicrosoft.com"


def test_register_and_rotate_into_key_vault(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with EmulatorServer(Emulator(seed=91)) as server:
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        monkeypatch.setenv("AZURE_CLIENT_ID", server.admin_client_id)
        monkeypatch.setenv("AZURE_CLIENT_SECRET", server.admin_client_secret)
        monkeypatch.setenv("AZURE_TENANT_ID", server.tenant_domain)  # a domain: Key Vault answers with the id
        target = ["--cloud-file", str(server.cloud_file), "--tenant", server.tenant_domain, "--auth", "environment",
                  "--output", "json", "--secret-out", "keyvault://contoso-vault/mim-o365-client-secret"]
        reg = CliRunner().invoke(main, ["register", "--mailbox", MAILBOX, *target], catch_exceptions=False)
        assert reg.exit_code == 0, reg.stderr
        data = json.loads(reg.stdout)
        assert data["client_secret"] is None
        assert data["secret_destination"] == "Key Vault secret contoso-vault/mim-o365-client-secret"
        vault = server.emulator.directory.state.vaults["contoso-vault"]
        first = vault.secrets["mim-o365-client-secret"].versions
        assert len(first) == 1
        app = server.emulator.directory.state.applications[data["object_id"]]
        assert app.password_credentials[0].hint == first[0].value[:3]
        rot = CliRunner().invoke(main, ["rotate", "--app-id", data["application_id"], "--force", *target],
                                 catch_exceptions=False)
        assert rot.exit_code == 0, rot.stderr
        assert json.loads(rot.stdout)["delivered_to"] == ["Key Vault secret contoso-vault/mim-o365-client-secret"]
        versions = vault.secrets["mim-o365-client-secret"].versions
        assert len(versions) == 2
        assert versions[-1].value != versions[0].value
        assert versions[-1].value not in rot.stdout + rot.stderr


def test_bad_key_vault_spec_is_refused_before_any_write(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["register", "--mailbox", MAILBOX, "--sandbox", "--sandbox-state",
                                       str(tmp_path / "t.json"), "--secret-out", "keyvault://x/"])
    assert result.exit_code == 78
    assert "keyvault://" in result.stderr
