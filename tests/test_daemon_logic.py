"""The daemon's loop, claims, events and fault handling, without the model: a scripted verifier and a
recording link behind the daemon's typed seams (FrameVerifier, Link), frames from the synthetic source,
and a real outbox and sd_notify socket."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_verify import config
from edge_verify.access import AccessRule, make_rule
from edge_verify.claims import CLAIM_QUEUE
from edge_verify.daemon import Daemon
from edge_verify.decision import MISMATCH, UNKNOWN, Vote
from edge_verify.detect import Face
from edge_verify.errors import EmptyGalleryError, UnknownPersonError
from edge_verify.match import Decision
from edge_verify.outbox import Outbox
from edge_verify.pipeline import FaceResult, FrameResult
from edge_verify.quality import Quality

FACE = Face((10.0, 10.0, 80.0, 80.0), 0.9, np.zeros((5, 2), np.float32))
EMB = np.ones(128, np.float32) / np.sqrt(128)


class ScriptedVerifier:
    """FrameVerifier whose frames hold a face or not, and whose matches say what ``script`` says:
    script(frame_number, claim) -> (accepted, person, distance), or None for a frame without a face."""

    tau = 1.0
    model_sha256 = "c" * 64

    def __init__(self, script: Callable[[int, str | None], tuple[bool, str | None, float] | None],
                 face: Callable[[int], bool] = lambda i: True) -> None:
        self.script, self.face = script, face
        self.frames = 0
        self.flips: list[bool | None] = []  # what each process() call asked of the embedder's flip
        self.closed = False
        self.rules: dict[str, AccessRule] = {}

    def self_test(self) -> None:
        pass

    def check_gallery(self) -> int:
        return 2

    def people(self) -> list[str]:
        return ["alice", "bob"]

    def process(self, image: Any, only_ok: bool = False, max_faces: int | None = None,
                detect_image: np.ndarray | None = None, flip: bool | None = None) -> FrameResult:
        self.flips.append(flip)
        self.frames += 1
        self._frame = self.frames
        faces = [FaceResult(FACE, Quality(True), EMB)] if self.face(self.frames) else []
        return FrameResult(faces, {"detect": 1.0, "embed": 2.0})

    def match(self, embedding: np.ndarray, claim: str | None = None, top_k: int = 1) -> Decision:
        r = self.script(self._frame, claim)
        if r is None:
            raise EmptyGalleryError("no one is enrolled yet")
        if claim is not None and claim not in self.people():
            raise UnknownPersonError(f"{claim!r} is not enrolled")
        accepted, person, d = r
        return Decision(accepted, person, d, self.tau, [])

    def access(self, name: str) -> AccessRule:
        return self.rules.get(name, AccessRule())

    def matcher(self, level: str, k: int, n: int, tau: float | None = None) -> ScriptedMatcher:
        return ScriptedMatcher(self)

    def close(self) -> None:
        self.closed = True


class ScriptedMatcher:
    """FrameMatcher voting what the verifier's script says; every agreement is confirmed."""

    def __init__(self, verifier: ScriptedVerifier) -> None:
        self.v = verifier

    def vote(self, ts: float, embedding: np.ndarray, claim: str | None, liveness: float | None) -> Vote:
        d = self.v.match(embedding, claim)
        if claim is not None:
            return Vote(ts, claim if d.accepted else MISMATCH, d.distance, liveness)
        return Vote(ts, d.person if d.accepted and d.person else UNKNOWN, d.distance, liveness)

    def confirm(self, label: str, votes: list[Vote]) -> tuple[bool, float | None, str | None]:
        return True, min(v.distance for v in votes if v.distance is not None), None

    def state(self) -> dict[str, Any]:
        return {"security": "strict", "tau": self.v.tau, "claim_tau": self.v.tau}


class RecordingLink:
    """Link that records what the daemon asks of it; ``alive`` says whether its threads run."""

    connected = True

    def __init__(self) -> None:
        self.submitted: list[int] = []
        self.alive = True
        self.restarts = 0
        self.restart_heals = False
        self.outbox: Outbox | None = None

    def start(self) -> None:
        pass

    def attach_outbox(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def healthy(self) -> bool:
        return self.alive

    def restart(self) -> None:
        self.restarts += 1
        self.alive = self.restart_heals

    def submit(self, seq: int) -> None:
        self.submitted.append(seq)

    def publish_state(self) -> None:
        pass

    def publish_telemetry(self, data: dict[str, Any]) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"healthy": self.alive}

    def stop(self, flush_timeout: float = 5.0) -> None:
        pass


def _cfg(state: Path, mode: str = "identify", access: dict[str, Any] | None = None,
         **decision: Any) -> config.Config:
    return config.parse({
        "access": access or {},
        "device": {"id": "door-unit", "state_dir": str(state), "mode": mode},
        "camera": {"type": "synthetic", "fps": 50.0, "lores_width": 64, "lores_height": 48},
        "decision": {"k": 3, "n": 5, "window_s": 2.0, "cooldown_s": 0.5, "unknown_cooldown_s": 0.5, **decision},
        "mqtt": {"enabled": False, "telemetry_interval_s": 0.2},
    })


@pytest.fixture()
def run_daemon() -> Iterator[Callable[..., Daemon]]:
    threads: list[tuple[Daemon, threading.Thread]] = []

    def start(cfg: config.Config, verifier: ScriptedVerifier, link: RecordingLink | None = None) -> Daemon:
        d = Daemon(cfg, verifier, link=link or RecordingLink())
        t = threading.Thread(target=d.run, daemon=True)
        t.start()
        threads.append((d, t))
        return d

    yield start
    for d, t in threads:
        d.stop_event.set()
        t.join(20)
        assert not t.is_alive()


def _events(state: Path) -> list[tuple[str, str | None, str | None]]:
    import json

    if not (state / "outbox.sqlite3").exists():
        return []
    db = sqlite3.connect(state / "outbox.sqlite3")
    try:
        rows = [json.loads(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY seq")]
    except sqlite3.OperationalError:  # the daemon is still creating it
        rows = []
    finally:
        db.close()
    return [(e["event_type"], e["person"], e["reason"]) for e in rows]


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_identify_votes_and_cooldown(tmp_path: Path, run_daemon: Callable[..., Daemon]) -> None:
    # frames 1-20: alice; then unknown faces
    v = ScriptedVerifier(lambda i, c: (True, "alice", 0.5) if i <= 20 else (False, None, 1.8))
    d = run_daemon(_cfg(tmp_path / "s"), v)
    assert _wait(lambda: v.frames > 40)
    d.stop_event.set()
    got = _events(tmp_path / "s")
    assert got[:2] == [("granted", "alice", None), ("unknown_face", None, None)]
    assert got.count(("granted", "alice", None)) == 1  # one visit, one event (cooldown while still seen)


def test_claim_flood_is_bounded_and_coalesced(tmp_path: Path, run_daemon: Callable[..., Daemon]) -> None:
    v = ScriptedVerifier(lambda i, c: (c == "alice", c, 0.5 if c == "alice" else 1.9))
    d = run_daemon(_cfg(tmp_path / "s", mode="claim"), v)
    assert _wait(lambda: d.status == "running")
    for i in range(3000):
        d.claims.put("bob" if i < 2999 else "alice", 30.0)
    # bounded whatever the speed: the frame loop may take a few batches meanwhile (it does under emulation)
    assert d.claims.qsize() <= CLAIM_QUEUE and d.claims.dropped > 1000
    assert _wait(lambda: ("granted", "alice", None) in _events(tmp_path / "s") or
                 ("denied", "bob", "no_match") in _events(tmp_path / "s"))
    d.stop_event.set()
    got = _events(tmp_path / "s")
    assert len(got) <= 2, got  # 3,000 claims did not make 3,000 events


def test_a_dead_link_is_restarted_and_without_it_no_watchdog(tmp_path: Path, run_daemon: Callable[..., Daemon],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "300000")  # ping every 0.1 s
    link = RecordingLink()
    v = ScriptedVerifier(lambda i, c: None)
    d = run_daemon(_cfg(tmp_path / "s"), v, link)

    def messages(seconds: float) -> list[bytes]:
        got, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                got.append(sock.recv(4096))
            except TimeoutError:
                pass
        return got

    assert b"WATCHDOG=1" in messages(1.0)
    link.alive = False  # the link's thread died, and restarting it does not help
    messages(0.3)
    assert b"WATCHDOG=1" not in messages(1.0)
    assert link.restarts >= 1
    link.restart_heals = True  # the next restart works: pings again
    assert _wait(lambda: link.alive)
    assert b"WATCHDOG=1" in messages(1.0)
    d.stop_event.set()
    sock.close()


def test_unstorable_decisions_wait_in_memory_and_losses_are_announced(
        tmp_path: Path, run_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox refuses writes for a while (as on a full disk): decisions are kept and stored later in
    order; beyond the memory bound they are counted as lost and an ``error`` event says so."""
    import edge_verify.daemon as daemon_mod
    from edge_verify.outbox import OutboxError

    monkeypatch.setattr(daemon_mod, "UNSAVED_MAX", 2)
    full = threading.Event()
    real_add = Outbox.add

    def add(self: Outbox, event: dict[str, Any], created: float | None = None) -> int:
        if full.is_set():
            raise OutboxError("cannot write the outbox: database or disk is full", transient=True)
        return real_add(self, event, created)

    monkeypatch.setattr(Outbox, "add", add)
    person = {"who": "alice"}
    v = ScriptedVerifier(lambda i, c: (True, person["who"], 0.4) if (i // 10) % 2 == 0 else (False, None, 1.9))
    full.set()
    d = run_daemon(_cfg(tmp_path / "s", cooldown_s=0.1, unknown_cooldown_s=0.1), v)
    assert _wait(lambda: d.sink.lost >= 1 and len(d.sink.unsaved) == 2)
    assert d.status.startswith("degraded") and d.state()["lost"] >= 1
    full.clear()
    assert _wait(lambda: any(e[0] == "error" and "events_lost" in (e[2] or "") for e in _events(tmp_path / "s")))
    d.stop_event.set()
    got = _events(tmp_path / "s")
    assert got[0][0] in ("granted", "unknown_face")  # the two kept in memory came first, in order
    db = sqlite3.connect(tmp_path / "s" / "outbox.sqlite3")
    seqs = [s for (s,) in db.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_empty_gallery_gives_unknown_and_an_error_gives_no_grant(tmp_path: Path,
                                                                 run_daemon: Callable[..., Daemon]) -> None:
    def script(i: int, c: str | None) -> tuple[bool, str | None, float] | None:
        if i == 2:
            raise RuntimeError("interpreter fault")
        return None if i < 10 else (True, "alice", 0.5)

    v = ScriptedVerifier(script)
    d = run_daemon(_cfg(tmp_path / "s"), v)
    assert _wait(lambda: len(_events(tmp_path / "s")) >= 3)
    d.stop_event.set()
    got = _events(tmp_path / "s")
    assert got[0][0] == "error" and "interpreter fault" in (got[0][2] or "")
    assert got[1] == ("unknown_face", None, None) and got[2] == ("granted", "alice", None)


def test_grants_follow_the_access_rules(tmp_path: Path, run_daemon: Callable[..., Daemon]) -> None:
    """alice's validity ended yesterday: denied (outside_schedule); bob has no rule: granted."""
    from datetime import date, timedelta

    v = ScriptedVerifier(lambda i, c: (True, "alice", 0.5) if i <= 15 else (True, "bob", 0.5))
    v.rules["alice"] = make_rule(valid_until=(date.today() - timedelta(days=2)).isoformat())
    d = run_daemon(_cfg(tmp_path / "s", access={"timezone": "UTC"}), v)
    assert _wait(lambda: len(_events(tmp_path / "s")) >= 2)
    d.stop_event.set()
    assert _events(tmp_path / "s")[:2] == [("denied", "alice", "outside_schedule"), ("granted", "bob", None)]


def test_tamper_alert_and_optional_lockout(tmp_path: Path, run_daemon: Callable[..., Daemon]) -> None:
    """Three unknown-face visits within the window: one tamper alert; with a lockout, the enrolled person
    who comes next is refused until it ends."""
    # three strangers' visits of 5 frames, 15 frames apart, then alice
    v = ScriptedVerifier(lambda i, c: (False, None, 1.9) if i <= 60 else (True, "alice", 0.5),
                         face=lambda i: i > 60 or i % 20 < 5)
    access = {"tamper_events": 3, "tamper_window_s": 60.0, "tamper_lockout_s": 3600.0}
    d = run_daemon(_cfg(tmp_path / "s", access=access, unknown_cooldown_s=0.1), v)
    assert _wait(lambda: any(e[0] == "denied" for e in _events(tmp_path / "s")), 20)
    d.stop_event.set()
    got = _events(tmp_path / "s")
    kinds = [e[0] for e in got]
    assert kinds[:4] == ["unknown_face"] * 3 + ["tamper"]
    assert ("denied", "alice", "tamper_lockout") in got and ("granted", "alice", None) not in got
