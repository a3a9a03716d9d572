from __future__ import annotations

import pytest

from mim_o365 import FakeClock
from mim_o365.emulator import Emulator, Knobs, Lag, _persist
from tests.helpers import admin_headers, create_app, http


def test_round_trip_keeps_every_object_and_pending_replication() -> None:
    em = Emulator(seed=2, clock=FakeClock(), knobs=Knobs(replication=Lag(reads=3)))
    client = http(em)
    h = admin_headers(client, em)
    app = create_app(client, h, tags=["mim-o365"])
    state = _persist.loads(_persist.dumps(em.directory.state))
    assert state == em.directory.state
    restored = state.applications[app["id"]]
    assert restored.tags == ["mim-o365"]
    assert restored.replica.reads_left == 3
    assert restored.created.tzinfo is not None


def test_rejects_foreign_files() -> None:
    with pytest.raises(ValueError, match="not a mim-o365-emulator-state/1 file"):
        _persist.loads('{"format": "other"}')
