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
