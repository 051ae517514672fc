"""The local event log and snapshots: what the daemon appends once an event is stored, the console's
filters, retention by age, rows and megabytes, and forgetting a person's snapshots."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from edge_verify.decision import Verdict
from edge_verify.eventlog import EventLog
from edge_verify.events import make_event
from edge_verify.eventsink import EventSink
from edge_verify.outbox import Outbox
from edge_verify.snapshots import SnapshotStore, face_crop, forget_person, wanted

NOW = time.time()


def _event(kind: str = "granted", person: str | None = "alice", now: float = NOW, seq: int = 1) -> dict:
    e = make_event(Verdict(kind, person, 0.5 if person else None, 3, None), device_id="d", mode="identify",
                   tau=1.0, model="m", latency_ms={}, now=now)
    return {**e, "seq": seq}


def test_records_and_filters(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600
    t0 = float(int(NOW) - 3600)
    log.record(_event("granted", "alice", t0, 1))
    log.record(_event("unknown_face", None, t0 + 60, 2))
    log.record(_event("granted", "bob", t0 + 120, 3))
    e = _event("denied", "alice", t0 + 180, 4)
    log.record(e)
    log.record(e)  # the same event twice (a retried store) is kept once
    assert log.count() == 4
    every = log.query()
    assert [r.event["seq"] for r in every] == [4, 3, 2, 1]  # newest first
    assert [r.event["seq"] for r in log.query(types=["granted"])] == [3, 1]
    assert [r.event["seq"] for r in log.query(person="alice")] == [4, 1]
    assert [r.event["seq"] for r in log.query(since=t0 + 60, until=t0 + 180)] == [3, 2]
    assert [r.event["seq"] for r in log.query(types=["granted", "denied"], person="alice", limit=1)] == [4]
    assert log.query(person="nobody") == []
    log.close()
    assert [r.event["seq"] for r in EventLog(tmp_path).query(limit=2)] == [4, 3]  # kept across a restart


def test_retention_by_age_and_rows(tmp_path: Path) -> None:
    log = EventLog(tmp_path, retention_days=1.0, max_rows=100)
    now = NOW
    log.record(_event(now=now - 2 * 86400, seq=1))
    for i in range(150):
        log.record(_event(now=now, seq=i + 2))
    log.prune(now)
    assert log.count() == 100
    assert min(r.event["seq"] for r in log.query(limit=1000)) == 52  # the oldest went first


def test_drop_snapshots_in_one_transaction(tmp_path: Path) -> None:
    from edge_verify.eventlog import Snapshot

    log = EventLog(tmp_path)
    for i in range(5):
        log.add_snapshot(Snapshot(f"e{i}", "alice", NOW + i, f"e{i}.jpg", 100))
    log.drop_snapshots([])
    log.drop_snapshots(["e1", "e3", "not-there"])
    assert [s.event_id for s in log.snapshots()] == ["e0", "e2", "e4"] and log.snapshot_bytes() == 300
    assert not log._db.in_transaction  # committed, not left open
    log.drop_snapshots(["e0", "e2", "e4"])
    log.close()
    assert EventLog(tmp_path).snapshots() == []  # kept across a restart


def test_sink_logs_each_event_once_stored(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    sink = EventSink("d", "identify", lambda seq: None)
    sink.recorder = log
    sink.emit(Verdict("granted", "alice", 0.4, 3, None), {}, tau=1.0, model="m")  # no outbox yet: waits
    assert log.count() == 0
    sink.outbox = outbox
    sink.emit(Verdict("unknown_face", None, 1.5, 3, None), {}, tau=1.0, model="m")
    rows = log.query()
    assert [(r.event["seq"], r.event["event_type"]) for r in rows] == [(2, "unknown_face"), (1, "granted")]
    outbox.ack(1)
    outbox.ack(2)  # acknowledged by the broker: gone from the outbox, still in the log
    assert outbox.count() == 0 and log.count() == 2


def test_snapshots_policy_retention_and_forget(tmp_path: Path) -> None:
    assert wanted("unknown", "unknown_face") and wanted("unknown", "denied") and not wanted("unknown", "granted")
    assert wanted("unknown", "spoof") and not wanted("all", "tamper")
    assert wanted("all", "granted") and not wanted("all", "error") and not wanted("off", "unknown_face")
    log = EventLog(tmp_path)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), np.uint8)  # noise: a JPEG of it is large
    crop = face_crop(image, (300.0, 200.0, 120.0, 140.0))
    assert crop.shape[:2] == (252, 216)
    store = SnapshotStore(tmp_path, log, "unknown", days=1.0, max_mb=0.1)
    granted, unknown = _event("granted", "alice", seq=1), _event("unknown_face", None, seq=2)
    assert store.take(granted, crop) is None  # "unknown" keeps no granted face
    name = store.take(unknown, crop)
    assert name is not None and store.path(unknown["event_id"]) is not None
    f = store.dir / name
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600 and stat.S_IMODE(os.stat(store.dir).st_mode) == 0o700
    assert f.read_bytes()[:2] == b"\xff\xd8"
    assert store.path("../../gallery.sqlite3") is None
    # size: at most 0.1 MB; the oldest go first
    store.policy = "all"
    t = NOW - 60
    events = [_event("denied", "bob", t + i, seq=10 + i) for i in range(12)]
    for e in events:
        store.take(e, crop)
    total = sum(p.stat().st_size for p in store.dir.iterdir())
    assert total <= 0.1 * 1024 * 1024 and log.snapshot_bytes() == total
    assert store.path(events[-1]["event_id"]) is not None and store.path(events[0]["event_id"]) is None
    # age
    assert store.prune(now=t + 2 * 86400) >= 1 and not list(store.dir.iterdir())
    # forget
    for e in events[:2]:
        store.take(e, crop)
    store.take(_event("granted", "carol", NOW, 99), crop)
    assert forget_person(tmp_path, "bob") == 2
    assert [s.person for s in log.snapshots()] == ["carol"]
    assert len(list(store.dir.iterdir())) == 1


def test_an_unwritable_snapshot_loses_no_event(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    store = SnapshotStore(tmp_path, log, "all")
    (tmp_path / "snapshots").write_text("a file where the directory should be")
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    sink = EventSink("d", "identify", lambda seq: None)
    sink.outbox, sink.recorder, sink.snapshots = outbox, log, store
    sink.emit(Verdict("granted", "alice", 0.4, 3, None), {}, tau=1.0, model="m",
              crop=np.zeros((50, 50, 3), np.uint8))
    assert outbox.count() == 1 and log.count() == 1 and log.query()[0].snapshot is None


@pytest.mark.parametrize("policy", ["off", "unknown", "all"])
def test_snapshot_policy_is_a_config_choice(tmp_path: Path, policy: str) -> None:
    from edge_verify import config

    p = tmp_path / "c.toml"
    p.write_text(f'[events]\nsnapshots = "{policy}"\n')
    assert config.load(p).events.snapshots == policy
