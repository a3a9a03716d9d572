"""The ``--sandbox`` tenant: an emulator served on loopback whose state persists between runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mim_o365._clouds import Cloud
from mim_o365._secrets import Secret


def default_state_path() -> Path:
    """Per-user state: ``%LOCALAPPDATA%\\mim-o365`` on Windows, ``$XDG_STATE_HOME/mim-o365`` elsewhere."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "mim-o365" / "sandbox-tenant.json"


@dataclass(frozen=True)
class Sandbox:
    """What a run against the sandbox needs."""

    cloud: Cloud
    tenant_id: str
    admin_client_id: str
    admin_client_secret: Secret
    state_path: Path


@contextmanager
def sandbox(state_path: Path | None = None) -> Iterator[Sandbox]:
    """Serve the sandbox tenant for the duration of the block (state saved after every change)."""
    from mim_o365.emulator import EmulatorServer

    path = state_path or default_state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with EmulatorServer(state_path=path) as server:
        yield Sandbox(
            server.cloud,
            server.tenant_id,
            server.admin_client_id,
            Secret(server.admin_client_secret),
            path,
        )
