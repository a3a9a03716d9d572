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
