"""A per-application lock file, so two rotations of the same app never run at once.

The operating system holds the lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), so
a process that is killed releases it at once: no stale lock files to clean up.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import IO

from mim_o365._errors import PropagationTimeoutError, ThrottledError
from mim_o365._retry import Backoff, Deadline, Pending, Ready, poll
from mim_o365._sandbox import default_state_path


def lock_dir() -> Path:
    """Where lock files live (next to the per-user state)."""
    return default_state_path().parent / "locks"


class LockBusyError(ThrottledError):
    """Another run holds the lock; a cron job may simply try again later (exit 75)."""


class AppLock:
    """An exclusive lock on ``path`` (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when someone else holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+b")  # noqa: SIM115 - held open while locked
        try:
            if sys.platform == "win32":
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n".encode())
        fh.flush()
        self._fh = fh
        return True

    async def acquire(self, deadline: Deadline, what: str) -> None:
        """Wait (polling on the deadline's clock) for the lock.

        Raises:
            LockBusyError: still held by another run when the deadline passed.
        """

        async def attempt() -> Ready[bool] | Pending:
            return Ready(True) if self.try_acquire() else Pending(f"another run holds {self.path}")

        try:
            await poll(
                what,
                attempt,
                deadline=deadline,
                backoff=Backoff(initial=0.1, floor=0.2, maximum=1.0),
            )
        except PropagationTimeoutError as exc:
            raise LockBusyError(
                f"another mim-o365 run is working on this application ({self.path}); try again later",
                service="lock",
            ) from exc

    def release(self) -> None:
        """Give the lock back."""
        if self._fh is None:
            return
        with contextlib.suppress(OSError):
            if sys.platform == "win32":
                import msvcrt

                self._fh.seek(0)
                msvcrt.locking(self._fh.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None

    def __enter__(self) -> AppLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
