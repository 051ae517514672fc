"""Gate's frame observers (the live view, an enrolment): seen frames with their faces and decision; with
none registered the frame loop does what it did before, and in claim mode without a claim no frame is
processed unless someone observes (and then no vote is taken)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_verify.camera import Frame
from edge_verify.claims import ClaimInbox
from edge_verify.eventsink import EventSink
from edge_verify.frametap import FrameTap
from edge_verify.gate import Gate
from tests.test_daemon_logic import ScriptedVerifier, _cfg


def _gate(tmp_path: Path, mode: str) -> tuple[Gate, ScriptedVerifier, list[Any]]:
    verifier = ScriptedVerifier(lambda n, claim: (True, "alice", 0.2))
    decided: list[Any] = []
    sink = EventSink("d", mode, lambda seq: None)
    sink.emit = lambda verdict, *a, **k: decided.append(verdict)  # type: ignore[method-assign]
    return Gate(_cfg(tmp_path, mode, k=1, n=1), verifier, sink, ClaimInbox(), tap=FrameTap()), verifier, decided


def _frame(i: int) -> Frame:
    return Frame(np.zeros((48, 64, 3), np.uint8), i * 0.1, i, f"f#{i}")


def test_observers_see_frames_faces_and_decisions(tmp_path: Path) -> None:
    gate, _, decided = _gate(tmp_path, "identify")
    seen: list[tuple[int, int, str | None]] = []
    token = gate.tap.add(lambda f, r, d: seen.append((f.index, len(r.faces), d.person if d else None)))
    gate.handle(_frame(0))
    assert seen == [(0, 1, "alice")] and [v.event_type for v in decided] == ["granted"]
    gate.tap.remove(token)
    gate.handle(_frame(1))
    assert len(seen) == 1 and not gate.tap.active


def test_claim_mode_processes_frames_only_for_an_observer(tmp_path: Path) -> None:
    gate, verifier, decided = _gate(tmp_path, "claim")
    gate.handle(_frame(0))
    assert verifier.frames == 0  # no claim, no observer: no work at all
    seen: list[Any] = []
    gate.tap.add(lambda f, r, d: seen.append((r, d)), faces=2)
    assert gate.tap.faces() == 2
    gate.handle(_frame(1))
    assert verifier.frames == 1 and seen[0][0] is not None and seen[0][1].person == "alice"
    assert decided == []  # processed for the observer: no vote without a claim


def test_a_failing_observer_does_not_stop_the_loop(tmp_path: Path) -> None:
    gate, _, decided = _gate(tmp_path, "identify")
    gate.tap.add(lambda f, r, d: 1 / 0)
    gate.handle(_frame(0))
    assert [v.event_type for v in decided] == ["granted"]


def test_frames_are_flip_averaged_only_while_an_enrolment_observes(tmp_path: Path) -> None:
    gate, verifier, _ = _gate(tmp_path, "identify")
    gate.handle(_frame(0))
    live_view = gate.tap.add(lambda f, r, d: None)
    gate.handle(_frame(1))
    enrolment = gate.tap.add(lambda f, r, d: None, faces=2, flip=True)
    gate.handle(_frame(2))
    gate.tap.remove(enrolment)
    gate.handle(_frame(3))
    gate.tap.remove(live_view)
    # None: the embedder's own setting (one encoder run per face); True: crop and mirror, as templates are made
    assert verifier.flips == [None, None, True, None]


def test_an_observer_registered_mid_frame_gets_no_result_made_without_its_needs(tmp_path: Path) -> None:
    """An enrolment that registers while a frame is being processed must not take that frame's plain,
    one-face result as a template: it sees the frame without a result, and the next one as it asked."""
    gate, verifier, _ = _gate(tmp_path, "identify")
    seen: list[tuple[int, Any]] = []
    real = verifier.process

    def process(*args: Any, **kwargs: Any) -> Any:
        if not gate.tap.active:  # the enrolment arrives between processing and notification
            gate.tap.add(lambda f, r, d: seen.append((f.index, r)), faces=2, flip=True)
        return real(*args, **kwargs)

    verifier.process = process  # type: ignore[method-assign]
    gate.handle(_frame(0))
    gate.handle(_frame(1))
    assert verifier.flips == [None, True]
    assert seen[0] == (0, None) and seen[1][0] == 1 and seen[1][1] is not None
