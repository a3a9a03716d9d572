"""The ``mim-o365`` command line: a thin renderer over the public API.

Everything meant for people goes to stderr; stdout carries only what scripts consume.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import Any

import click

from mim_o365 import __version__
from mim_o365._errors import (
    AuthenticationError,
    ConfigurationError,
    MimO365Error,
    PermissionDeniedError,
    PlanConflictError,
    PropagationTimeoutError,
    ThrottledError,
    TransportError,
)


class ExitStatus(IntEnum):
    """Exit codes: stable, documented in README.md."""

    OK = 0
    ERROR = 1
    USAGE = 2
    AUTHENTICATION = 3
    PERMISSION = 4
    CONFLICT = 5
    TEMPORARY = 75  # EX_TEMPFAIL: a cron job may retry
    CONFIGURATION = 78  # EX_CONFIG
    INTERRUPTED = 130


def exit_status_for(exc: BaseException) -> ExitStatus:
    """The exit code for an error."""
    if isinstance(exc, ConfigurationError):
        return ExitStatus.CONFIGURATION
    if isinstance(exc, AuthenticationError):
        return ExitStatus.AUTHENTICATION
    if isinstance(exc, PermissionDeniedError):
        return ExitStatus.PERMISSION
    if isinstance(exc, PlanConflictError):
        return ExitStatus.CONFLICT
    if isinstance(exc, TransportError | ThrottledError | PropagationTimeoutError):
        return ExitStatus.TEMPORARY
    if isinstance(exc, KeyboardInterrupt):
        return ExitStatus.INTERRUPTED
    return ExitStatus.ERROR


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("mim_o365")
    root.handlers[:] = [handler]
    root.setLevel(level)


def _fail(exc: MimO365Error) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(int(exit_status_for(exc)))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mim-o365")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Register and maintain the Entra ID app MIM Service uses to send mail through Exchange Online."""
    _setup_logging(verbose)


@main.group()
def emulator() -> None:
    """An emulated Microsoft 365 tenant for trying the tool and for tests."""


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@emulator.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--info-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write base_url, ca_file, tenant_id, cloud_file, admin credentials (owner-only) here.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the CA and cloud file (default: a temporary folder).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Load the tenant from this file and save it after every change.",
)
@click.option("--seed", type=int, help="Make ids and random faults reproducible.")
@click.option(
    "--replication-delay",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds before new apps and service principals are visible.",
)
@click.option(
    "--secret-delay",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds before a new client secret is accepted.",
)
@click.option(
    "--consent-delay",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds before granted roles appear in tokens.",
)
@click.option(
    "--policy-delay",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds before Exchange policy changes take effect.",
)
@click.option(
    "--throttle-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of requests answered 429.",
)
@click.option(
    "--error-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of requests answered 503."
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of connections closed without an answer.",
)
@click.option(
    "--secret-max-lifetime-days",
    type=click.FloatRange(min=1),
    help="App-management policy cap on secret lifetime.",
)
def serve(
    host: str,
    port: int,
    info_file: Path | None,
    workdir: Path | None,
    state_path: Path | None,
    seed: int | None,
    replication_delay: float,
    secret_delay: float,
    consent_delay: float,
    policy_delay: float,
    throttle_rate: float,
    error_rate: float,
    drop_rate: float,
    secret_max_lifetime_days: float | None,
) -> None:
    """Serve the emulated tenant over HTTPS until interrupted."""
    from mim_o365.emulator import EmulatorServer, Knobs, Lag

    if throttle_rate + error_rate + drop_rate > 1:
        raise click.UsageError(
            "--throttle-rate, --error-rate and --drop-rate must add up to at most 1"
        )
    knobs = Knobs(
        replication=Lag(seconds=replication_delay),
        secret=Lag(seconds=secret_delay),
        consent=Lag(seconds=consent_delay),
        policy=Lag(seconds=policy_delay),
        throttle_rate=throttle_rate,
        error_rate=error_rate,
        drop_rate=drop_rate,
        secret_max_lifetime_days=secret_max_lifetime_days,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, on_signal)
    try:
        server = EmulatorServer(
            host=host, port=port, state_path=state_path, workdir=workdir, seed=seed, knobs=knobs
        )
    except ValueError as exc:
        _fail(ConfigurationError(f"--state {state_path}: {exc}"))
        return
    with server:
        info: dict[str, Any] = server.info()
        if info_file is not None:
            _write_private(info_file, json.dumps(info, indent=2) + "\n")
        public = {k: v for k, v in info.items() if k != "admin_client_secret"}
        click.echo("mim-o365 emulator serving:", err=True)
        for key, value in public.items():
            click.echo(f"  {key}: {value}", err=True)
        if info_file is not None:
            click.echo(f"  admin_client_secret: in {info_file}", err=True)
        click.echo("Press Ctrl-C to stop.", err=True)
        stop.wait()
    click.echo("emulator stopped", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
