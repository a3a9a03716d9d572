"""Serve an :class:`Emulator` over real HTTPS on loopback, with a CA of its own."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import trustme

from mim_o365._clouds import PUBLIC, Cloud
from mim_o365.emulator import _persist
from mim_o365.emulator._emulator import Emulator
from mim_o365.emulator._http._common import ConnectionDropped

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    """One HTTPS connection: HTTP/1.1 keep-alive, every answer with Content-Length.

    Request parsing is the standard library's. The handler only turns each request into an
    ``httpx.Request`` for :meth:`Emulator.handle` and writes the answer back, or closes the
    connection without an answer when the fault plan drops it.
    """

    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    server: _Server

    def setup(self) -> None:
        """Send small answers at once (headers and body are separate writes; Nagle would hold the
        body back until the client's delayed ACK)."""
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are counted by the emulator, not logged line by line."""

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(411, "Length Required")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        request = httpx.Request(
            self.command,
            f"https://{host}{self.path}",
            headers=list(self.headers.items()),
            content=body,
        )
        try:
            response = self.server.emulator.handle(request)
        except ConnectionDropped:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        except Exception:
            log.exception("emulator failed on %s %s", self.command, request.url.path)
            response = httpx.Response(
                500,
                json={
                    "error": {
                        "code": "InternalServerError",
                        "message": "The emulator failed on this request.",
                    }
                },
            )
        self.send_response(response.status_code, response.reason_phrase)
        for key, value in response.headers.multi_items():
            if key.lower() not in (
                "content-length",
                "transfer-encoding",
                "connection",
                "date",
                "server",
            ):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.content)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve  # noqa: N815 - the stdlib's names


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: Emulator, ctx: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator
        # The TLS handshake runs in each connection's own thread, not in the accept loop.
        self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up or fails TLS is not an emulator error."""
        # socketserver calls this inside its own except block
        log.debug("connection from %s ended with an error", client_address, exc_info=True)  # noqa: LOG014


class EmulatorServer:
    """An emulated tenant on ``https://127.0.0.1:PORT``, as a context manager.

    Everything is served on one address: the identity platform under ``/{tenant}/...``, Graph under
    ``/v1.0``. ``cloud_file`` describes it (endpoints, the real resource ids, and the CA to trust)
    for :meth:`mim_o365.Cloud.from_file`.

    Args:
        emulator: the tenant to serve (a fresh one from ``emulator_options`` when None).
        host: loopback address to bind.
        port: port, 0 for any free one.
        state_path: load the tenant from this file when it exists, and save it after every write.
        workdir: where the CA and cloud file go (a temporary folder when None).
        **emulator_options: passed to :class:`Emulator` (seed, clock, knobs).
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_path: str | Path | None = None,
        workdir: str | Path | None = None,
        **emulator_options: Any,
    ) -> None:
        self.state_path = Path(state_path) if state_path else None
        if emulator is None:
            if self.state_path is not None and self.state_path.exists():
                emulator_options["state"] = _persist.load(self.state_path)
            emulator = Emulator(**emulator_options)
        self.emulator = emulator
        self._host = host
        self._port = port
        self._workdir_arg = Path(workdir) if workdir else None
        self._workdir: Path | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._save_lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        """Bind, write the CA and cloud file, and serve in a background thread."""
        if self._server is not None:
            return self
        if self._workdir_arg is not None:
            self._workdir_arg.mkdir(parents=True, exist_ok=True)
            self._workdir = self._workdir_arg
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix="mim-o365-emulator-"))
        ca = trustme.CA(organization_name="mim-o365 emulator")
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        ca.cert_pem.write_to_path(str(self._workdir / "ca.pem"))
        self._server = _Server((self._host, self._port), self.emulator, ctx)
        self._port = self._server.server_port
        self.cloud.write(self.cloud_file)
        if self.state_path is not None:
            self.emulator.on_change = self.save
            self.save()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mim-o365-emulator", daemon=True
        )
        self._thread.start()
        log.info("emulator serving on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, save the state, and remove the temporary folder."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        if self.state_path is not None:
            self.save()
        if self._workdir_arg is None and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def save(self) -> None:
        """Persist the tenant to ``state_path``."""
        if self.state_path is None:
            return
        with self._save_lock, self.emulator.directory.lock:
            _persist.save(self.emulator.directory.state, self.state_path)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what clients need --------------------------------------------------------------------

    def _need_started(self) -> Path:
        if self._workdir is None:
            raise RuntimeError(
                "EmulatorServer is not started: use it as a context manager or call start()"
            )
        return self._workdir

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        self._need_started()
        return f"https://{self._host}:{self._port}"

    @property
    def ca_file(self) -> Path:
        """PEM file of the CA that signed the server's certificate."""
        return self._need_started() / "ca.pem"

    @property
    def cloud_file(self) -> Path:
        """The cloud description to hand to ``--cloud-file`` / ``Cloud.from_file``."""
        return self._need_started() / "cloud.json"

    @property
    def cloud(self) -> Cloud:
        """This server as a :class:`Cloud`: our endpoints, the real resource identifiers."""
        return Cloud(
            name="emulator",
            authority=self.base_url,
            graph_endpoint=self.base_url,
            graph_resource=PUBLIC.graph_resource,
            exchange_endpoint=self.base_url,
            exchange_resource=PUBLIC.exchange_resource,
            keyvault_resource=PUBLIC.keyvault_resource,
            keyvault_endpoint=self.base_url,
            ca_file=self.ca_file,
            instance_discovery=False,
        )

    @property
    def tenant_id(self) -> str:
        """The tenant's GUID."""
        return self.emulator.tenant_id

    @property
    def tenant_domain(self) -> str:
        """The initial domain."""
        return self.emulator.tenant_domain

    @property
    def admin_client_id(self) -> str:
        """Client id of the automation admin."""
        return self.emulator.admin_client_id

    @property
    def admin_client_secret(self) -> str:
        """Its secret."""
        return self.emulator.admin_client_secret

    @property
    def mailbox(self) -> str:
        """The MIM Service mailbox."""
        return self.emulator.mailbox

    def info(self) -> dict[str, str]:
        """The facts ``--info-file`` receives (holds the admin secret: write it owner-only)."""
        return {
            "base_url": self.base_url,
            "ca_file": str(self.ca_file),
            "tenant_id": self.tenant_id,
            "tenant_domain": self.tenant_domain,
            "cloud_file": str(self.cloud_file),
            "admin_client_id": self.admin_client_id,
            "admin_client_secret": self.admin_client_secret,
            "mailbox": self.mailbox,
        }

    def info_json(self) -> str:
        """:meth:`info` as JSON text."""
        return json.dumps(self.info(), indent=2)

    def __repr__(self) -> str:
        where = f"{self._host}:{self._port}" if self._server else "not started"
        return f"EmulatorServer({where}, tenant_id={self.tenant_id!r})"
