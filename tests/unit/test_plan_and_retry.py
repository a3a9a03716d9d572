from __future__ import annotations

import asyncio
import random

import pytest

from mim_o365 import ConfigurationError, FakeClock, PropagationTimeoutError
from mim_o365._plan import check_lifetime, check_mailbox, desired_access, mailbox_tag, managed_tags
from mim_o365._retry import Backoff, Deadline, Pending, Ready, poll
from mim_o365._wellknown import (
    EXCHANGE_APP_ID,
    FULL_ACCESS_AS_APP_ID,
    GRAPH_APP_ID,
    GRAPH_USER_READ_SCOPE_ID,
)

ROLE = (FULL_ACCESS_AS_APP_ID, "Role")
USER_READ = (GRAPH_USER_READ_SCOPE_ID, "Scope")
OTHER_GRAPH = ("df021288-bdef-4463-88db-98f22de89214", "Role")


def test_desired_access_from_nothing() -> None:
    assert desired_access((), FULL_ACCESS_AS_APP_ID) == ((EXCHANGE_APP_ID, (ROLE,)),)


def test_desired_access_removes_only_user_read_and_keeps_the_rest() -> None:
    current = (
        (GRAPH_APP_ID, (USER_READ, OTHER_GRAPH)),
        ("11111111-1111-1111-1111-111111111111", (("a", "Scope"),)),
    )
    assert desired_access(current, FULL_ACCESS_AS_APP_ID) == (
        (GRAPH_APP_ID, (OTHER_GRAPH,)),
        ("11111111-1111-1111-1111-111111111111", (("a", "Scope"),)),
        (EXCHANGE_APP_ID, (ROLE,)),
    )


def test_desired_access_is_idempotent() -> None:
    current = ((GRAPH_APP_ID, (USER_READ,)), (EXCHANGE_APP_ID, (("x", "Scope"),)))
    once = desired_access(current, FULL_ACCESS_AS_APP_ID)
    assert once == ((EXCHANGE_APP_ID, (("x", "Scope"), ROLE)),)
    assert desired_access(once, FULL_ACCESS_AS_APP_ID) == once


def test_tags_are_added_once_and_others_kept() -> None:
    tags = managed_tags(("team:identity",), "MIMService@Contoso.onmicrosoft.com", adopted=True)
    assert tags == [
        "team:identity",
        "mim-o365",
        mailbox_tag("mimservice@contoso.onmicrosoft.com"),
        "mim-o365:adopted",
    ]
    assert managed_tags(tuple(tags), "mimservice@contoso.onmicrosoft.com", adopted=True) == tags


@pytest.mark.parametrize("bad", ["", "MIMService", "a@b", "two@@contoso.com", "sp ace@contoso.com"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="e-mail address"):
        check_mailbox(bad)


def test_lifetime_bounds() -> None:
    assert check_lifetime(180) == 180
    for bad in (0, 731):
        with pytest.raises(ConfigurationError, match="1 to 730"):
            check_lifetime(bad)


def test_backoff_stays_proportional_to_the_wait() -> None:
    nxt = Backoff(jitter=0).delays(random.Random(1))
    delays = [nxt(waited) for waited in (0, 0.2, 0.5, 1, 2, 4, 8, 60, 600, 620, 640)]
    assert delays[0] == pytest.approx(0.2)
    assert max(delays[:5]) <= 0.5 + 1e-9, "short waits poll often"
    assert delays[-1] == 5.0, "long waits poll at most every maximum seconds"


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]  # noqa: TID251 - tests drive their own loop


def test_poll_waits_on_the_clock_and_honours_retry_after() -> None:
    clock = FakeClock()
    answers: list[Ready[str] | Pending] = [
        Pending("busy", retry_after=7),
        Pending("replicating"),
        Ready("done"),
    ]

    async def attempt() -> Ready[str] | Pending:
        return answers.pop(0)

    seen: list[str] = []
    result = _run(
        poll(
            "the thing",
            attempt,
            deadline=Deadline(clock, 60),
            on_progress=lambda m, t: seen.append(m),
        )
    )
    assert result == "done"
    assert clock.slept[0] >= 7
    assert seen == ["waiting for the thing: busy", "waiting for the thing: replicating"]


def test_poll_times_out_naming_the_condition() -> None:
    clock = FakeClock()

    async def attempt() -> Ready[str] | Pending:
        return Pending("the service principal has not replicated yet")

    with pytest.raises(PropagationTimeoutError) as err:
        _run(poll("admin consent", attempt, deadline=Deadline(clock, 30)))
    assert err.value.pending == ("admin consent",)
    assert "the service principal has not replicated yet" in str(err.value)
    assert "run the same command again" in str(err.value)
    assert clock.monotonic() == pytest.approx(30)
