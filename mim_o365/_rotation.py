"""Pure rotation policy: when a secret is due, and which secrets may go. ``now`` is passed in.

A secret counts as *delivered* once the tool has handed it to its consumer; rotation records
that with an application tag (``mim-o365:delivered:<keyId>``), added right after delivery. A
secret minted but never marked (a run killed between mint and delivery) is an orphan: it is not
trusted to be in use, so it neither postpones the next rotation nor survives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mim_o365._plan import secret_is_ours

DELIVERED_TAG = "mim-o365:delivered:"
VERIFIED_TAG = "mim-o365:verified:"


@dataclass(frozen=True)
class SecretFacts:
    """What rotation needs to know about one client secret."""

    key_id: str
    display_name: str | None
    start: datetime | None
    end: datetime | None
    order: int = 0  # position in the application's list: later is newer when times tie

    @property
    def ours(self) -> bool:
        """Minted by mim-o365 (its display name says so)."""
        return secret_is_ours(self.display_name)

    def valid(self, now: datetime) -> bool:
        """Not expired (and started)."""
        return (self.end is None or self.end > now) and (self.start is None or self.start <= now)


def delivered_ids(tags: Iterable[str]) -> set[str]:
    """Key ids marked as delivered in the application's tags."""
    return {t[len(DELIVERED_TAG) :].lower() for t in tags if t.startswith(DELIVERED_TAG)}


def verified_ids(tags: Iterable[str]) -> set[str]:
    """Key ids marked as verified end to end."""
    return {t[len(VERIFIED_TAG) :].lower() for t in tags if t.startswith(VERIFIED_TAG)}


def newest_in_use(
    secrets: Sequence[SecretFacts], tags: Iterable[str], now: datetime
) -> SecretFacts | None:
    """The newest valid secret a consumer may hold."""
    return _newest(s for s in in_use(secrets, tags) if s.valid(now))


def in_use(secrets: Sequence[SecretFacts], tags: Iterable[str]) -> list[SecretFacts]:
    """Our secrets that a consumer may hold: the marked ones, or (before any rotation marked one)
    every secret of ours."""
    marked = delivered_ids(tags)
    ours = [s for s in secrets if s.ours]
    if not marked:
        return ours
    return [s for s in ours if s.key_id.lower() in marked]


def age_key(s: SecretFacts) -> tuple[float, int]:
    """Sort key: start time (or expiry), then position; larger is newer."""
    when = s.start or s.end
    return (when.timestamp() if when is not None else float("-inf"), s.order)


def _newest(secrets: Iterable[SecretFacts]) -> SecretFacts | None:
    return max(secrets, key=age_key, default=None)


def rotation_due(
    secrets: Sequence[SecretFacts],
    tags: Iterable[str],
    now: datetime,
    *,
    before_expiry_days: float,
    max_age_days: float | None = None,
    force: bool = False,
) -> tuple[bool, str]:
    """Whether to rotate now, and why (in words for the log and the JSON output)."""
    if force:
        return True, "forced"
    tags = list(tags)
    current = newest_in_use(secrets, tags, now)
    if current is None:
        return True, "no valid secret of ours is in use"
    if delivered_ids(tags) and current.key_id.lower() not in verified_ids(tags):
        return (
            True,
            f"the newest secret ({current.key_id}) was delivered but never verified end to end",
        )
    orphans = [
        s
        for s in secrets
        if s.ours and s.key_id.lower() not in delivered_ids(tags) and age_key(s) > age_key(current)
    ]
    if delivered_ids(tags) and orphans:
        return True, (
            f"a previous rotation was interrupted: secret {orphans[-1].key_id} was minted but never "
            "confirmed delivered"
        )
    if current.end is not None and current.end - now <= timedelta(days=before_expiry_days):
        days = (current.end - now).total_seconds() / 86400
        return True, f"the newest secret ({current.key_id}) expires in {days:.1f} days"
    if (
        max_age_days is not None
        and current.start is not None
        and now - current.start >= timedelta(days=max_age_days)
    ):
        return True, f"the newest secret ({current.key_id}) is older than {max_age_days:g} days"
    days = (current.end - now).total_seconds() / 86400 if current.end else float("inf")
    return False, f"not due: the newest secret ({current.key_id}) expires in {days:.0f} days"


def marker_tags(
    tags: Iterable[str],
    *,
    delivered: Iterable[str] = (),
    verified: Iterable[str] = (),
    forget: Iterable[str] = (),
) -> list[str]:
    """The application's tags with markers added for ``delivered``/``verified`` key ids and removed
    for ``forget`` (secrets that are gone). Other tags are kept in order."""
    gone = {k.lower() for k in forget}
    out = [
        t
        for t in tags
        if not (
            (t.startswith(DELIVERED_TAG) and t[len(DELIVERED_TAG) :] in gone)
            or (t.startswith(VERIFIED_TAG) and t[len(VERIFIED_TAG) :] in gone)
        )
    ]
    for prefix, ids in ((DELIVERED_TAG, delivered), (VERIFIED_TAG, verified)):
        for key_id in ids:
            tag = f"{prefix}{key_id.lower()}"
            if tag not in out:
                out.append(tag)
    return out


def removable(
    secrets: Sequence[SecretFacts],
    tags: Iterable[str],
    *,
    new_key_id: str,
    keep: int,
    include_foreign: bool = False,
) -> list[str]:
    """Key ids to remove after the new secret was verified: everything of ours beyond the ``keep``
    newest in-use secrets (the new one counts), orphans included; foreign secrets only with
    ``include_foreign``. The new secret is never removed."""
    if keep < 1:
        raise ValueError("keep must be at least 1 (the new secret)")
    tags = list(tags)
    marked = delivered_ids(tags) | {new_key_id.lower()}
    kept_in_use = sorted(
        (s for s in secrets if s.key_id.lower() in marked or (not delivered_ids(tags) and s.ours)),
        key=age_key,
        reverse=True,
    )
    keep_ids = {new_key_id.lower()}
    for s in kept_in_use:
        if len(keep_ids) >= keep:
            break
        keep_ids.add(s.key_id.lower())
    out = []
    for s in secrets:
        if s.key_id.lower() in keep_ids:
            continue
        if s.ours or include_foreign:
            out.append(s.key_id)
    return out
