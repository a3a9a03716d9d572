"""Identifiers drawn from a seeded generator, so a seed reproduces a whole run."""

from __future__ import annotations

import base64
import random
import threading
import uuid


class IdSource:
    """GUIDs and opaque ids from a seeded generator (thread-safe)."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - ids, not secrets
        self._lock = threading.Lock()

    def guid(self) -> str:
        """A random (version 4) GUID."""
        with self._lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def opaque(self, nbytes: int = 32) -> str:
        """A base64url string such as an app role assignment id."""
        with self._lock:
            raw = self._rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big")
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def digits(self, n: int) -> str:
        """``n`` random decimal digits."""
        with self._lock:
            return "".join(str(self._rng.randrange(10)) for _ in range(n))

    def letters(self, n: int) -> str:
        """``n`` random upper-case letters."""
        with self._lock:
            return "".join(self._rng.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(n))
