"""A secret value that does not show itself."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["Secret"]


class Secret:
    """Holds a client secret; ``repr``/``str``/format show ``Secret('***')``.

    Read the value explicitly with :meth:`reveal`. Secrets compare in constant time and cannot be
    pickled by accident into logs or caches.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        """The secret text. Call this only where the secret is handed to its destination."""
        return self._value

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible tag to tell secrets apart in output (first 8 hex of SHA-256)."""
        return hashlib.sha256(self._value.encode()).hexdigest()[:8]

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        raise TypeError("Secret cannot be pickled")
