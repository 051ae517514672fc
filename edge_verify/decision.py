"""From per-frame votes to one decision per visit: k of n frames within T seconds, then a cooldown.

Pure logic, no I/O and no clock of its own: every call carries the frame's timestamp (seconds, any
monotonic origin), so a replay at any speed gives the same decisions.

- identify mode: a frame votes for the enrolled person it matched, for UNKNOWN (a usable face that
  matches nobody), or for nothing (no usable face). k agreeing votes among the last n frames, all within
  ``window_s``, give ``granted`` (a person) or ``unknown_face``.
- claim mode: only while a claim is active; a frame votes for the claimed person (match under tau) or
  for MISMATCH. k agreeing votes give ``granted`` or ``denied``; a claim that expires undecided gives
  ``denied`` (reason ``claim_expired``). Without a claim, frames are ignored.
- Liveness: a frame whose face is a presentation attack (a photo, a screen) votes SPOOF, never for a
  person; k SPOOF votes give ``spoof`` (in claim mode it also ends the claim). A face too small to judge
  votes for nothing.
- Cooldown: after an event for a label, no new event for that label until it has been unseen for
  ``cooldown_s`` (``unknown_cooldown_s`` for unknown faces and errors, ``spoof_cooldown_s`` for attacks,
  one cooldown for the whole device): one visit, one event.
- Fail-secure: an internal error clears the window and gives an ``error`` event, never ``granted``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .match import Decision

if TYPE_CHECKING:
    from .liveness import Liveness

UNKNOWN = "\x00unknown"
MISMATCH = "\x00mismatch"
ERROR = "\x00error"
SPOOF = "\x00spoof"


@dataclass(frozen=True)
class Vote:
    """One frame's opinion: ``label`` is a person, UNKNOWN, MISMATCH, SPOOF, or None (no usable face).
    ``liveness``: the face's liveness score when it was computed."""

    ts: float
    label: str | None
    distance: float | None = None
    liveness: float | None = None
    reason: str | None = None  # SPOOF: why the face was judged an attack
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)  # for the fused confirmation


Confirm = Callable[[str, list[Vote]], tuple[bool, float | None, str | None]]


@dataclass(frozen=True)
class Verdict:
    """A decision to publish."""

    event_type: str  # granted | denied | unknown_face | spoof | tamper | error
    person: str | None
    distance: float | None
    frames: int
    reason: str | None = None
    liveness: float | None = None  # mean liveness score of the agreeing frames, when computed


@dataclass
class Claim:
    person: str
    expires: float


class DecisionWindow:
    """The k-of-n-within-T window with per-label cooldown; see the module docstring."""

    def __init__(self, k: int = 3, n: int = 5, window_s: float = 3.0, cooldown_s: float = 10.0,
                 unknown_cooldown_s: float = 10.0, mode: str = "identify", spoof_cooldown_s: float = 30.0,
                 confirm: Confirm | None = None) -> None:
        """``confirm(person, agreeing_votes) -> (granted, distance, reason)``: the final word on a person k
        frames agreed on in identify mode (the fused encodings and the margin, ``visits.VisitMatcher``);
        without it, k agreeing frames grant."""
        if not 1 <= k <= n:
            raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
        if mode not in ("identify", "claim"):
            raise ValueError(f"mode must be identify or claim, got {mode!r}")
        self.k, self.n, self.window_s = k, n, window_s
        self.cooldown_s, self.unknown_cooldown_s, self.mode = cooldown_s, unknown_cooldown_s, mode
        self.spoof_cooldown_s, self.confirm = spoof_cooldown_s, confirm
        self.votes: deque[Vote] = deque(maxlen=n)
        self.last_seen: dict[str, float] = {}  # label -> last ts seen since its last event
        self.claim: Claim | None = None

    # -- claims ---------------------------------------------------------------------------------
    def set_claim(self, person: str, ts: float, ttl_s: float) -> Verdict | None:
        """Start verifying against ``person`` until ``ts + ttl_s``. A claim still pending is ended first
        and returned as ``denied`` (superseded)."""
        previous = self._end_claim("claim_superseded") if self.claim else None
        self.claim = Claim(person, ts + ttl_s)
        self.votes.clear()
        return previous

    def _end_claim(self, reason: str) -> Verdict:
        assert self.claim is not None
        person = self.claim.person
        self.claim = None
        self.votes.clear()
        return Verdict("denied", person, None, 0, reason)

    def tick(self, ts: float) -> Verdict | None:
        """Time passes without a frame: an expired claim gives ``denied``."""
        if self.claim is not None and ts >= self.claim.expires:
            return self._end_claim("claim_expired")
        return None

    # -- frames ---------------------------------------------------------------------------------
    def _cooldown(self, label: str) -> float:
        if label == SPOOF:
            return self.spoof_cooldown_s
        return self.cooldown_s if label not in (UNKNOWN, ERROR) else self.unknown_cooldown_s

    def _cooling(self, label: str, ts: float) -> bool:
        """True when ``label`` is in cooldown; seeing it again extends the cooldown."""
        last = self.last_seen.get(label)
        if last is None:
            return False
        if ts - last < self._cooldown(label):
            self.last_seen[label] = ts
            return True
        del self.last_seen[label]
        return False

    def observe(self, vote: Vote) -> Verdict | None:
        """Add one frame's vote; return a Verdict when the window decides."""
        expired = self.tick(vote.ts)
        if expired is not None:
            return expired
        if self.mode == "claim" and self.claim is None:
            return None
        if vote.label is not None and (self.mode == "identify" or vote.label == SPOOF) \
                and self._cooling(vote.label, vote.ts):
            return None
        self.votes.append(vote)
        while self.votes and vote.ts - self.votes[0].ts > self.window_s:
            self.votes.popleft()
        if vote.label is None:
            return None
        agreeing = [v for v in self.votes if v.label == vote.label]
        if len(agreeing) < self.k:
            return None
        distances = [v.distance for v in agreeing if v.distance is not None]
        best = min(distances) if distances else None
        scores = [v.liveness for v in agreeing if v.liveness is not None]
        live = sum(scores) / len(scores) if scores else None
        reasons = [v.reason for v in agreeing if v.reason]
        reason = max(set(reasons), key=reasons.count) if len(reasons) * 2 > len(agreeing) else None
        self.votes = deque((v for v in self.votes if v.label != vote.label), maxlen=self.n)
        if vote.label == SPOOF:
            self.last_seen[SPOOF] = vote.ts
            person = self.claim.person if self.claim is not None else None
            if self.mode == "claim":
                self.claim = None
                self.votes.clear()
            return Verdict("spoof", person, None, len(agreeing), f"presentation_attack: {reason or 'not live'}", live)
        if self.mode == "claim":
            assert self.claim is not None
            person = self.claim.person
            self.claim = None
            self.votes.clear()
            if vote.label == MISMATCH:
                return Verdict("denied", person, best, len(agreeing), "no_match", live)
            return Verdict("granted", person, best, len(agreeing), None, live)
        if vote.label != UNKNOWN and self.confirm is not None:
            granted, distance, why = self.confirm(vote.label, agreeing)
            if not granted:  # a lookalike: an unknown face, and the real person is not put in cooldown
                if self._cooling(UNKNOWN, vote.ts):
                    return None
                self.last_seen[UNKNOWN] = vote.ts
                return Verdict("unknown_face", None, distance, len(agreeing), why, live)
            best = distance
        self.last_seen[vote.label] = vote.ts
        if vote.label == UNKNOWN:
            return Verdict("unknown_face", None, best, len(agreeing), reason, live)
        return Verdict("granted", vote.label, best, len(agreeing), None, live)

    def error(self, ts: float, reason: str) -> Verdict | None:
        """An internal error on a frame: fail-secure. Clears the window (and any claim); gives an
        ``error`` verdict unless one was given within ``unknown_cooldown_s``."""
        self.votes.clear()
        person = self.claim.person if self.claim else None
        self.claim = None
        if self._cooling(ERROR, ts):
            return None
        self.last_seen[ERROR] = ts
        return Verdict("error", person, None, 0, reason)


def vote_for(ts: float, decision: Decision | None, claim: str | None, liveness: Liveness | None = None) -> Vote:
    """One frame's vote from its match (None: no one is enrolled, nothing to match against) and its
    face's liveness (None: not computed). An attack votes SPOOF and a face too small to judge votes for
    nothing, whatever it matched. Else, in claim mode the frame votes for the claimed person or
    MISMATCH; in identify mode for the person or UNKNOWN (reason ``ambiguous`` when two people were too
    close to tell apart)."""
    score = liveness.score if liveness is not None else None
    if liveness is not None and not liveness.live:
        if liveness.too_small:
            return Vote(ts, None)
        return Vote(ts, SPOOF, None, score, liveness.reason)
    if decision is None:
        return Vote(ts, UNKNOWN, None, score)
    if claim is not None:
        return Vote(ts, claim if decision.accepted else MISMATCH, decision.distance, score)
    if decision.accepted and decision.person:
        return Vote(ts, decision.person, decision.distance, score)
    ambiguous = "ambiguous" if (decision.reason or "").startswith("ambiguous") else None
    return Vote(ts, UNKNOWN, decision.distance, score, ambiguous)
