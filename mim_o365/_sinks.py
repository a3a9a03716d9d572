"""Where a new client secret goes. Delivery happens at once, before any later step can fail."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from mim_o365._errors import ConfigurationError
from mim_o365._secrets import Secret


@runtime_checkable
class SecretSink(Protocol):
    """A destination for a client secret."""

    @property
    def description(self) -> str:
        """Where the secret goes, for messages (never the secret)."""
        ...

    def check(self) -> None:
        """Raise ConfigurationError now if delivery certainly cannot work (before any write)."""
        ...

    def deliver(self, secret: Secret, facts: Mapping[str, str]) -> None:
        """Store ``secret``; raise on failure (the caller then removes the secret again)."""
        ...


class FileSink:
    """Writes the secret (one line) to a file created owner-only, atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    @property
    def description(self) -> str:
        """``file PATH``."""
        return f"file {self.path}"

    def check(self) -> None:
        """The folder must exist and the path must not be a folder."""
        if self.path.is_dir():
            raise ConfigurationError(f"--secret-out {self.path} is a folder; give a file path")
        if not self.path.parent.is_dir():
            raise ConfigurationError(
                f"--secret-out {self.path}: folder {self.path.parent} does not exist; create it first"
            )

    def deliver(self, secret: Secret, facts: Mapping[str, str]) -> None:
        """Write atomically: a temporary file (0600) in the same folder, then rename over."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secret.reveal() + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def __repr__(self) -> str:
        return f"FileSink({str(self.path)!r})"


class ExecSink:
    """Runs a command that updates the consumer (for example MIM Service's configuration).

    The secret reaches the command on its standard input, one line, and nowhere else: not in its
    arguments and not in its environment. A non-zero exit is a failed delivery.
    """

    def __init__(self, command: str, *, timeout: float = 120.0) -> None:
        self.command = command
        self.timeout = timeout

    @property
    def description(self) -> str:
        """``command <first word>``."""
        return f"command {self._argv()[0] if self._argv() else self.command!r}"

    def _argv(self) -> list[str]:
        import shlex

        return shlex.split(self.command, posix=os.name != "nt")

    def check(self) -> None:
        """The command must be non-empty and its program findable."""
        import shutil

        argv = self._argv()
        if not argv:
            raise ConfigurationError("--exec needs a command")
        if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
            raise ConfigurationError(f"--exec: program {argv[0]!r} not found; give its full path")

    def deliver(self, secret: Secret, facts: Mapping[str, str]) -> None:
        """Run the command with the secret on stdin and the non-secret facts in its environment."""
        import subprocess

        env = {k: v for k, v in os.environ.items() if "SECRET" not in k.upper()}
        env.update({f"MIM_O365_{k.upper()}": v for k, v in facts.items()})
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own command, no shell
                self._argv(),
                input=secret.reveal() + "\n",
                text=True,
                capture_output=True,
                timeout=self.timeout,
                env=env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OSError(f"{self.description} could not run: {exc.__class__.__name__}") from None
        if done.returncode != 0:
            tail = (done.stderr or "").strip().splitlines()[-1:] or [""]
            raise OSError(
                f"{self.description} exited with {done.returncode}: {tail[0][:200]}".replace(
                    secret.reveal(), "***"
                )
            )

    def __repr__(self) -> str:
        return f"ExecSink({self.command!r})"
