"""Bounded polling with backoff and jitter, through an injected clock.

Each wait names what it waits for, reports progress, and ends with a
:class:`PropagationTimeoutError` naming the pending condition when the deadline passes.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from mim_o365._clock import Clock
from mim_o365._errors import PropagationTimeoutError

T = TypeVar("T")
log = logging.getLogger("mim_o365")

ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True)
class Pending:
    """Not yet: ``reason`` says why; ``retry_after`` is the service's own hint, if any."""

    reason: str
    retry_after: float | None = None
    code: str | None = None


@dataclass(frozen=True)
class Ready(Generic[T]):
    """Done, with a value."""

    value: T


@dataclass(frozen=True)
class Backoff:
    """Delays between polls.

    Delays grow from ``initial`` by ``factor``, but never beyond ``ratio`` times the time already
    spent waiting (at least ``floor``), nor beyond ``maximum``. So a condition that clears after
    t seconds is seen at most about ``ratio * t`` late: short waits stay short, long waits poll
    rarely. Each delay gets +-``jitter``.
    """

    initial: float = 0.2
    factor: float = 1.6
    floor: float = 0.5
    ratio: float = 0.25
    maximum: float = 5.0
    jitter: float = 0.2

    def delays(self, rng: random.Random) -> Callable[[float], float]:
        """A function from seconds waited so far to the next delay."""
        state = {"next": self.initial}

        def nxt(waited: float) -> float:
            cap = min(self.maximum, max(self.floor, self.ratio * waited))
            base = min(state["next"], cap)
            state["next"] = base * self.factor
            return max(0.0, base * (1 + rng.uniform(-self.jitter, self.jitter)))

        return nxt


class Deadline:
    """A point on a clock's monotonic scale."""

    def __init__(self, clock: Clock, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout
        self.start = clock.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return self.clock.monotonic() - self.start

    @property
    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.timeout - self.elapsed)


async def poll(
    what: str,
    attempt: Callable[[], Awaitable[Ready[T] | Pending]],
    *,
    deadline: Deadline,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
    on_progress: ProgressCallback | None = None,
) -> T:
    """Call ``attempt`` until it is :class:`Ready` or the deadline passes.

    Raises:
        PropagationTimeoutError: still pending at the deadline; the message names ``what`` and why.
    """
    nxt = (backoff or Backoff()).delays(rng or random.Random())  # noqa: S311 - jitter, not secrets
    reported = False
    started = deadline.elapsed
    while True:
        outcome = await attempt()
        if isinstance(outcome, Ready):
            if reported:
                log.info("done waiting for %s after %.1fs", what, deadline.elapsed)
            return outcome.value
        delay = nxt(deadline.elapsed - started)
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        if deadline.remaining <= 0:
            raise PropagationTimeoutError(
                f"timed out after {deadline.timeout:.0f}s waiting for {what} ({outcome.reason}); "
                "Microsoft's services can take minutes to replicate: run the same command again "
                "(it resumes), or raise --timeout",
                pending=(what,),
            )
        delay = min(delay, deadline.remaining)
        log.info("waiting for %s: %s (%.1fs elapsed)", what, outcome.reason, deadline.elapsed)
        if on_progress is not None:
            on_progress(f"waiting for {what}: {outcome.reason}", deadline.elapsed)
        reported = True
        await deadline.clock.sleep(delay)
