from __future__ import annotations

import asyncio
import logging
import pickle
from datetime import datetime

import pytest

from mim_o365 import FakeClock, Secret, SystemClock


def test_secret_never_shows_itself(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret("abc8Q~supersecretvalue")
    rendered = [
        repr(s),
        str(s),
        f"{s}",
        f"{s!r}",
        "%s" % s,  # noqa: UP031 - old-style formatting must not leak either
        repr([s]),
        repr({"k": s}),
    ]
    assert all("supersecret" not in r for r in rendered)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("mim_o365.test").debug("secret is %s", s)
    assert "supersecret" not in caplog.text
    assert s.reveal() == "abc8Q~supersecretvalue"
    assert s == Secret("abc8Q~supersecretvalue")
    assert s != Secret("other")
    assert len(s.fingerprint) == 8
    assert "supersecret" not in s.fingerprint
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(ValueError, match="non-empty"):
        Secret("")


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    start = clock.now()
    assert clock.now() == start
    clock.advance(1.5)
    assert (clock.now() - start).total_seconds() == 1.5
    asyncio.run(clock.sleep(10))  # noqa: TID251 - drives the coroutine in a test
    assert clock.monotonic() == 11.5
    assert clock.slept == [10]
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def test_system_clock_is_aware() -> None:
    assert SystemClock().now().tzinfo is not None
    assert SystemClock().monotonic() > 0
