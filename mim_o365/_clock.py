"""Time, injected.

Every wait in mim-o365 goes through a :class:`Clock`, so that tests and the emulator can move time
forward without sleeping. This is the only module allowed to sleep for real.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Wall time, a monotonic reading and an awaitable sleep."""

    def now(self) -> datetime:
        """Current UTC time (timezone-aware)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (the only way library code waits)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running event loop."""
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that moves only when told to, or when something sleeps on it.

    ``sleep`` advances the clock by the requested amount at once, so code that polls with backoff
    runs in microseconds while seeing time pass. Thread-safe: the emulator's server threads read it.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        # Default start in the past, so that components on the real clock (token caches) agree
        # that what the fake clock issued is already valid.
        self._now = start or datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time, e.g. tzinfo=UTC")
        self._mono = 0.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        """The fake current time."""
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        """Seconds advanced since creation."""
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        """Record the wait and advance instantly."""
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now().isoformat()})"
