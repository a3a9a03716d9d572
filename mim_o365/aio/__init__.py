"""The async API: same names and methods as :mod:`mim_o365`."""

from __future__ import annotations

from mim_o365.aio._client import Client

__all__ = ["Client"]
