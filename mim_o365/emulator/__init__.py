"""An emulated Microsoft 365 tenant: identity platform and Microsoft Graph (Exchange to follow).

Use it three ways, one code path:

* in process: ``Emulator().transport()`` (httpx) or ``.requests_session()`` (requests);
* over HTTPS on loopback: ``with EmulatorServer() as server: ...`` (``server.cloud_file``);
* from the shell: ``mim-o365 emulator serve``.
"""

from __future__ import annotations

from mim_o365.emulator._emulator import Emulator, RequestRecord, RequestsAdapter
from mim_o365.emulator._errors import EmulatorError
from mim_o365.emulator._knobs import Faults, Knobs, Lag
from mim_o365.emulator._server import EmulatorServer

__all__ = [
    "Emulator",
    "EmulatorError",
    "EmulatorServer",
    "Faults",
    "Knobs",
    "Lag",
    "RequestRecord",
    "RequestsAdapter",
]
