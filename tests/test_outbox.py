"""The outbox: durable, ordered, seq kept across reopen, caps with a warning."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from edge_verify import events
from edge_verify.decision import Verdict
from edge_verify.outbox import Outbox, OutboxError


def _event() -> dict[str, object]:
    return events.make_event(Verdict("granted", "alice", 0.9, 3), device_id="d", mode="identify", tau=1.38,
                             model=None, latency_ms={}, now=time.time())


def test_seq_is_monotonic_across_reopen_and_acks(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    ob = Outbox(path)
    seqs = [ob.add(_event()) for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for s in seqs:
        ob.ack(s)  # all delivered: the table is empty, but numbering continues
    assert ob.count() == 0
    ob.close()
    ob = Outbox(path)
    assert ob.add(_event()) == 4
    e = _event()
    assert ob.add(e) == 5 and e["seq"] == 5
    pending = ob.pending()
    assert [p.seq for p in pending] == [4, 5] and pending[1].event["event_id"] == e["event_id"]
    assert [p.seq for p in ob.pending(exclude={4})] == [5]
    ob.close()


def test_caps_drop_oldest_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ob = Outbox(tmp_path / "o.sqlite3", max_events=3, max_age_s=60)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            ob.add(_event())
    assert [p.seq for p in ob.pending()] == [3, 4, 5]
    assert "dropped the 1 oldest" in caplog.text
    ob.add(_event(), created=time.time() - 120)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert ob.expire() == 1
    assert "older than 60 s" in caplog.text
    assert [p.seq for p in ob.pending()] == [4, 5]


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError, match="cannot open the outbox"):
        Outbox(blocker / "outbox.sqlite3")


def test_outbox_and_state_dir_are_private(tmp_path: Path) -> None:
    import os
    import stat

    from edge_verify.daemon import check_state_dir

    state = tmp_path / "state"
    check_state_dir(state)
    Outbox(state / "outbox.sqlite3").close()
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / "outbox.sqlite3").st_mode) == 0o600
