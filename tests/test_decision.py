"""The decision window: k of n frames within T seconds, cooldown, claims, fail-secure errors."""

from __future__ import annotations

import pytest

from edge_verify.decision import MISMATCH, UNKNOWN, DecisionWindow, Verdict, Vote


def feed(w: DecisionWindow, labels: list[str | None], fps: float = 10.0, t0: float = 0.0,
         d: float = 0.5) -> list[tuple[int, Verdict]]:
    out = []
    for i, label in enumerate(labels):
        v = w.observe(Vote(t0 + i / fps, label, None if label is None else d + i * 0.01))
        if v is not None:
            out.append((i, v))
    return out


def test_k_of_n_gives_one_event_per_visit() -> None:
    w = DecisionWindow(k=3, n=5, window_s=2.0, cooldown_s=1.0)
    got = feed(w, ["alice", None, "alice", UNKNOWN, "alice", "alice", "alice", "alice"])
    assert [(i, v.event_type, v.person, v.frames) for i, v in got] == [(4, "granted", "alice", 3)]
    assert got[0][1].distance == 0.5  # the best of the agreeing frames


def test_window_needs_k_within_t_seconds() -> None:
    w = DecisionWindow(k=3, n=5, window_s=0.5, cooldown_s=1.0)
    # one frame per 0.3 s: never 3 within 0.5 s
    assert feed(w, ["bob"] * 6, fps=1 / 0.3) == []
    w = DecisionWindow(k=3, n=5, window_s=0.7, cooldown_s=1.0)
    assert [v.person for _, v in feed(w, ["bob"] * 3, fps=1 / 0.3)] == ["bob"]


def test_mixed_people_do_not_add_up() -> None:
    w = DecisionWindow(k=3, n=5, window_s=5.0)
    assert feed(w, ["alice", "bob", "alice", "bob", UNKNOWN]) == []


def test_cooldown_lasts_while_the_person_stays_and_ends_after_absence() -> None:
    w = DecisionWindow(k=2, n=3, window_s=5.0, cooldown_s=1.0)
    # alice stays 3 s: one event; then 1.5 s of nothing; then alice again: a second event
    labels: list[str | None] = ["alice"] * 30 + [None] * 15 + ["alice"] * 5
    got = feed(w, labels)
    assert [(i, v.person) for i, v in got] == [(1, "alice"), (46, "alice")]


def test_unknown_faces_use_their_own_cooldown() -> None:
    w = DecisionWindow(k=2, n=3, window_s=5.0, cooldown_s=100.0, unknown_cooldown_s=0.5)
    got = feed(w, [UNKNOWN] * 3 + [None] * 6 + [UNKNOWN] * 2)
    assert [(i, v.event_type, v.person) for i, v in got] == [(1, "unknown_face", None),
                                                             (10, "unknown_face", None)]


def test_claim_mode_grants_denies_and_expires() -> None:
    w = DecisionWindow(k=2, n=3, window_s=5.0, mode="claim")
    assert feed(w, ["alice"] * 3) == []  # no claim: frames are ignored
    assert w.set_claim("alice", 0.0, 5.0) is None
    got = feed(w, ["alice", "alice", "alice"])
    assert [(v.event_type, v.person) for _, v in got] == [("granted", "alice")]  # claim consumed
    w.set_claim("bob", 10.0, 5.0)
    got = feed(w, [MISMATCH, MISMATCH], t0=10.0)
    assert [(v.event_type, v.person, v.reason) for _, v in got] == [("denied", "bob", "no_match")]
    w.set_claim("carol", 20.0, 1.0)
    assert w.tick(20.5) is None
    v = w.tick(21.0)
    assert v is not None and (v.event_type, v.person, v.reason) == ("denied", "carol", "claim_expired")
    w.set_claim("dave", 30.0, 9.0)
    v = w.set_claim("erin", 31.0, 9.0)
    assert v is not None and (v.event_type, v.person, v.reason) == ("denied", "dave", "claim_superseded")


def test_errors_are_fail_secure() -> None:
    w = DecisionWindow(k=2, n=3, window_s=5.0, unknown_cooldown_s=1.0)
    feed(w, ["alice"])  # one vote for alice in the window
    v = w.error(0.2, "boom")
    assert v is not None and v.event_type == "error" and v.person is None
    assert w.error(0.3, "boom") is None  # one error event per burst
    # the error cleared the window: alice needs k fresh frames again
    assert w.observe(Vote(0.4, "alice", 0.5)) is None
    assert w.observe(Vote(0.5, "alice", 0.5)) is not None
    c = DecisionWindow(k=1, n=1, mode="claim")
    c.set_claim("alice", 0.0, 5.0)
    v = c.error(1.0, "boom")
    assert v is not None and v.event_type == "error" and c.claim is None


# -- liveness -------------------------------------------------------------------------------------------
def _live(score: float, live: bool, too_small: bool = False) -> object:
    from edge_verify.liveness import Liveness

    return Liveness(score, live, 0.5, None if live else ("face too small" if too_small else "print attack"),
                    too_small)


def test_attacks_vote_spoof_and_small_faces_vote_for_nobody() -> None:
    from edge_verify.decision import SPOOF, UNKNOWN, vote_for
    from edge_verify.match import Decision

    alice = Decision(True, "alice", 0.4, 1.0, [])
    assert vote_for(0.0, alice, None, _live(0.9, True)).label == "alice"  # type: ignore[arg-type]
    v = vote_for(0.0, alice, None, _live(0.01, False))  # type: ignore[arg-type]
    assert v.label == SPOOF and v.liveness == 0.01 and v.reason == "print attack"
    assert vote_for(0.0, alice, None, _live(0.2, False, too_small=True)).label is None  # type: ignore[arg-type]
    assert vote_for(0.0, alice, "alice", _live(0.01, False)).label == SPOOF  # type: ignore[arg-type]
    assert vote_for(0.0, None, None, None).label == UNKNOWN
    tie = Decision(False, None, 0.4, 1.0, [], reason="ambiguous: alice and bob at 0.400")
    assert vote_for(0.0, tie, None, None).reason == "ambiguous"


def test_k_attack_frames_give_one_spoof_event_and_a_device_cooldown() -> None:
    from edge_verify.decision import SPOOF, DecisionWindow, Vote

    w = DecisionWindow(k=3, n=5, window_s=2.0, cooldown_s=1.0, unknown_cooldown_s=1.0, spoof_cooldown_s=5.0)
    out = [w.observe(Vote(i * 0.1, SPOOF, None, 0.01, "print attack")) for i in range(3)]
    assert out[:2] == [None, None] and out[2] is not None
    assert out[2].event_type == "spoof" and out[2].person is None and out[2].frames == 3
    assert out[2].reason == "presentation_attack: print attack" and out[2].liveness == pytest.approx(0.01)
    # the same attack held up: no second event while it is seen within the cooldown
    assert all(w.observe(Vote(0.3 + i * 0.5, SPOOF, None, 0.01)) is None for i in range(10))
    # a live person arriving meanwhile is still decided
    got = [w.observe(Vote(6.0 + i * 0.1, "alice", 0.4, 0.9)) for i in range(3)]
    assert got[2] is not None and got[2].event_type == "granted" and got[2].liveness == pytest.approx(0.9)


def test_a_spoof_in_claim_mode_ends_the_claim() -> None:
    from edge_verify.decision import SPOOF, DecisionWindow, Vote

    w = DecisionWindow(k=2, n=3, window_s=2.0, mode="claim")
    w.set_claim("alice", 0.0, 10.0)
    assert w.observe(Vote(0.1, SPOOF, None, 0.02)) is None
    v = w.observe(Vote(0.2, SPOOF, None, 0.02))
    assert v is not None and v.event_type == "spoof" and v.person == "alice" and w.claim is None
