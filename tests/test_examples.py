"""Examples are tests: each runs against the emulator."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from mim_o365 import Secret
from mim_o365.emulator import EmulatorServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_directory_flow_example(server: EmulatorServer) -> None:
    result = _load("emulator_directory_flow").main(server)
    assert result["roles"] == ["full_access_as_app"]
    assert isinstance(result["ClientSecret"], Secret)
    assert result["TenantId"] == server.tenant_id


def test_directory_flow_example_as_a_script() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "emulator_directory_flow.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ApplicationId: " in proc.stdout
    assert "Exchange token roles: full_access_as_app" in proc.stdout


# --- scheduled rotation: the Python script, crontab, systemd and Windows Task Scheduler ----------

import configparser  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import stat  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from mim_o365 import Client, Cloud  # noqa: E402
from mim_o365._gateways import _clients  # noqa: E402
from mim_o365.emulator import Emulator  # noqa: E402

MAILBOX = "MIMService@contoso.onmicrosoft.com"


@pytest.fixture
def live() -> Iterator[tuple[EmulatorServer, str]]:
    """An emulator on the real clock (the scheduled commands run in their own processes) with a
    registered app."""
    with EmulatorServer(Emulator(seed=90)) as srv:
        cloud = Cloud.from_file(srv.cloud_file)
        cred = _clients.client_secret_credential(cloud, srv.tenant_id, srv.admin_client_id,
                                                 Secret(srv.admin_client_secret))
        with Client(cred, tenant=srv.tenant_id, cloud=cloud) as client:
            app_id = client.register_mailbox_app(MAILBOX).application_id
        yield srv, app_id


def _env(srv: EmulatorServer, app_id: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "MIM_O365_"))}
    env.update({
        "AZURE_TENANT_ID": srv.tenant_id, "AZURE_CLIENT_ID": srv.admin_client_id,
        "AZURE_CLIENT_SECRET": srv.admin_client_secret, "MIM_O365_APP_ID": app_id,
        "MIM_O365_CLOUD_FILE": str(srv.cloud_file), "XDG_STATE_HOME": str(tmp_path / "state"),
    })
    return env


def _localize(command: str, tmp_path: Path) -> str:
    """Point a scheduled command's install paths at this checkout and a temporary folder."""
    exe = f"{shlex.quote(sys.executable)} -m mim_o365"
    for placeholder, local in (
        ("/opt/mim-o365/.venv/bin/mim-o365", exe),
        ("/etc/mim-o365/client-secret", str(tmp_path / "client-secret")),
        ("/var/log/mim-o365-rotate.log", str(tmp_path / "rotate.log")),
        ("/etc/mim-o365.env", str(tmp_path / "mim-o365.env")),
    ):
        command = command.replace(placeholder, local)
    return command


def test_rotation_script_main(live: tuple[EmulatorServer, str], tmp_path: Path) -> None:
    srv, app_id = live
    cloud = Cloud.from_file(srv.cloud_file)
    cred = _clients.client_secret_credential(cloud, srv.tenant_id, srv.admin_client_id, Secret(srv.admin_client_secret))
    module = _load("rotate_secret")
    with Client(cred, tenant=srv.tenant_id, cloud=cloud) as client:
        idle = module.main(client, app_id, str(tmp_path / "secret"))
        assert idle.rotated is False
        assert not (tmp_path / "secret").exists()


def test_rotation_script_as_a_process(live: tuple[EmulatorServer, str], tmp_path: Path) -> None:
    srv, app_id = live
    env = {**_env(srv, app_id, tmp_path), "MIM_O365_SECRET_FILE": str(tmp_path / "secret")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / "rotate_secret.py")], env=env, capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "not due" in proc.stderr
    assert srv.admin_client_secret not in proc.stdout + proc.stderr


def test_crontab_line_runs(live: tuple[EmulatorServer, str], tmp_path: Path) -> None:
    srv, app_id = live
    lines = [ln for ln in (EXAMPLES / "crontab").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    minute, hour, dom, month, dow, command = fields
    assert (minute, hour, dom, month, dow) == ("17", "3", "*", "*", "*")
    env = _env(srv, app_id, tmp_path)
    (tmp_path / "mim-o365.env").write_text("".join(
        f"{k}={v}\n" for k, v in env.items() if k.startswith(("AZURE_", "MIM_O365_"))))
    proc = subprocess.run(["/bin/sh", "-c", _localize(command, tmp_path)], env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 0, (tmp_path / "rotate.log").read_text()
    log = (tmp_path / "rotate.log").read_text()
    assert json.loads(log[log.index("{"):])["rotated"] is False


def test_systemd_units(live: tuple[EmulatorServer, str], tmp_path: Path) -> None:
    srv, app_id = live
    service = configparser.ConfigParser(interpolation=None, strict=False)
    service.optionxform = str  # type: ignore[assignment,method-assign]
    service.read(EXAMPLES / "systemd" / "mim-o365-rotate.service")
    timer = configparser.ConfigParser(interpolation=None)
    timer.optionxform = str  # type: ignore[assignment,method-assign]
    timer.read(EXAMPLES / "systemd" / "mim-o365-rotate.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["UMask"] == "0077"
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "yes"
    env = _env(srv, app_id, tmp_path)
    command = re.sub(r"\$\{(\w+)\}", lambda m: shlex.quote(env[m.group(1)]), service["Service"]["ExecStart"])
    proc = subprocess.run(["/bin/sh", "-c", _localize(command, tmp_path)], env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rotated"] is False


def test_windows_task_runs_the_same_command(live: tuple[EmulatorServer, str], tmp_path: Path) -> None:
    srv, app_id = live
    script = (EXAMPLES / "windows" / "register-rotation-task.ps1").read_text()
    arguments = re.search(r"^\$Arguments = '([^']*)'", script, re.M)
    assert arguments is not None
    assert "Register-ScheduledTask" in script and "-Daily" in script
    env = _env(srv, app_id, tmp_path)
    args = re.sub(r"%(\w+)%", lambda m: env[m.group(1)], arguments.group(1))
    args = args.replace("C:\\ProgramData\\mim-o365\\client-secret", str(tmp_path / "client-secret"))
    proc = subprocess.run([sys.executable, "-m", "mim_o365", *shlex.split(args)], env=env, capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rotated"] is False
    if os.name == "posix":
        assert not (tmp_path / "client-secret").exists() or stat.S_IMODE((tmp_path / "client-secret").stat().st_mode) == 0o600
