from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mim_o365._rotation import SecretFacts, marker_tags, removable, rotation_due

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def s(
    key: str, age_days: float, life_days: float = 180, *, ours: bool = True, order: int = 0
) -> SecretFacts:
    start = NOW - timedelta(days=age_days)
    return SecretFacts(
        key, "mim-o365 x" if ours else "by hand", start, start + timedelta(days=life_days), order
    )


def test_due_rules() -> None:
    fresh = [s("a", 10)]
    assert rotation_due(fresh, [], NOW, before_expiry_days=30) == (
        False,
        rotation_due(fresh, [], NOW, before_expiry_days=30)[1],
    )
    assert rotation_due([s("a", 160)], [], NOW, before_expiry_days=30)[0] is True
    assert rotation_due([s("a", 40)], [], NOW, before_expiry_days=30, max_age_days=30)[0] is True
    assert (
        rotation_due([s("a", 200)], [], NOW, before_expiry_days=30)[1]
        == "no valid secret of ours is in use"
    )
    assert rotation_due([s("f", 10, ours=False)], [], NOW, before_expiry_days=30)[0] is True, (
        "foreign ones don't count"
    )
    assert rotation_due(fresh, [], NOW, before_expiry_days=30, force=True) == (True, "forced")


def test_unverified_and_orphans_make_it_due() -> None:
    secrets = [s("a", 20, order=0), s("b", 1, order=1)]
    tags = marker_tags([], delivered=["a", "b"], verified=["a"])
    assert "never verified" in rotation_due(secrets, tags, NOW, before_expiry_days=30)[1]
    orphaned = marker_tags([], delivered=["a"], verified=["a"])
    assert "interrupted" in rotation_due(secrets, orphaned, NOW, before_expiry_days=30)[1]


def test_removable_keeps_the_new_and_the_previous_and_foreign() -> None:
    secrets = [
        s("old", 300, 400, order=0),
        s("prev", 150, order=1),
        s("hand", 100, ours=False, order=2),
        s("new", 0, order=3),
    ]
    tags = marker_tags([], delivered=["old", "prev", "new"], verified=["old", "prev", "new"])
    assert removable(secrets, tags, new_key_id="new", keep=2) == ["old"]
    assert removable(secrets, tags, new_key_id="new", keep=1) == ["old", "prev"]
    assert removable(secrets, tags, new_key_id="new", keep=1, include_foreign=True) == [
        "old",
        "prev",
        "hand",
    ]
    with pytest.raises(ValueError, match="at least 1"):
        removable(secrets, tags, new_key_id="new", keep=0)


def test_removable_never_removes_the_new_one_and_drops_orphans() -> None:
    secrets = [s("prev", 150, order=0), s("orphan", 5, order=1), s("new", 0, order=2)]
    tags = marker_tags([], delivered=["prev", "new"])
    assert removable(secrets, tags, new_key_id="new", keep=2) == ["orphan"]
    assert "new" not in removable(secrets, tags, new_key_id="new", keep=1)


def test_marker_tags_keep_other_tags_and_forget() -> None:
    tags = marker_tags(["team"], delivered=["A"], verified=["A"])
    assert tags == ["team", "mim-o365:delivered:a", "mim-o365:verified:a"]
    assert marker_tags(tags, forget=["a"]) == ["team"]
