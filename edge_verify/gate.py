"""The gate: one frame at a time, from faces to votes to decisions to events.

:class:`Gate` asks the verifier for the faces of a frame and their match (1:N, or 1:1 against an active
claim), turns each match into a vote (:func:`edge_verify.decision.vote_for`), lets the decision window
decide, and hands each decision to the event sink. It keeps no thread and no I/O of its own beyond
those two seams: the daemon owns the loop, the camera and the link.

Before a ``granted`` is emitted, the person's access rule (validity dates, weekly windows) is checked at
the decision's wall-clock time: outside it, the decision becomes ``denied`` (reason ``outside_schedule``).
Every emitted decision feeds a tamper watch: ``access.tamper_events`` unknown_face/denied/spoof events
within ``access.tamper_window_s`` give one ``tamper`` alert, and, only when ``access.tamper_lockout_s`` is
set, every grant is refused for that long (reason ``tamper_lockout``).

Fail-secure: any error while a frame is processed clears the window and gives an ``error`` decision,
never ``granted``; so does an error while the access rule is read.

Observers (:class:`edge_verify.frametap.FrameTap`: the console's live view, an enrolment at the door) see
each frame with its faces and the decision of its main face; with none, the loop does nothing more.
The face that decided an event goes to the sink with it, for an opt-in snapshot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import access
from .access import AccessRule
from .camera import Frame
from .claims import ClaimInbox
from .config import Config
from .decision import MISMATCH, SPOOF, UNKNOWN, DecisionWindow, Verdict, Vote, vote_for
from .errors import EdgeVerifyError, EmptyGalleryError, UnknownPersonError
from .eventsink import EventSink
from .frametap import FrameTap
from .match import Decision
from .snapshots import face_crop

if TYPE_CHECKING:
    from .pipeline import FaceVerifier, FrameResult

log = logging.getLogger(__name__)


class FrameMatcher(Protocol):
    """Votes and confirmations at the security level's taus (``visits.VisitMatcher``)."""

    def vote(self, ts: float, embedding: np.ndarray, claim: str | None, liveness: float | None) -> Vote: ...

    def confirm(self, label: str, votes: list[Vote]) -> tuple[bool, float | None, str | None]: ...

    def state(self) -> dict[str, Any]: ...


class FrameVerifier(Protocol):
    """What the daemon needs from :class:`edge_verify.pipeline.FaceVerifier`."""

    tau: float

    @property
    def model_sha256(self) -> str: ...

    def self_test(self) -> None: ...

    def check_gallery(self) -> int: ...

    def people(self) -> list[str]: ...

    def process(self, image: Any, only_ok: bool = False, max_faces: int | None = None,
                detect_image: np.ndarray | None = None, flip: bool | None = None) -> Any: ...

    def match(self, embedding: np.ndarray, claim: str | None = None, top_k: int = 1) -> Decision: ...

    def access(self, name: str) -> AccessRule: ...

    def matcher(self, level: str, k: int, n: int, tau: float | None = None) -> FrameMatcher: ...

    def add_templates(self, name: str, embeddings: np.ndarray) -> int: ...

    def close(self) -> None: ...


def verifier_from_config(cfg: Config) -> FaceVerifier:
    """The FaceVerifier the daemon runs with: detection at ``quality.detect_max_side`` with the configured
    backend and without the padded retry (most camera frames hold no face), the model, tau and quality
    gate of the config."""
    from .detect import FaceDetector
    from .liveness import LivenessSettings
    from .pipeline import FaceVerifier

    q, m, lv = cfg.quality, cfg.model, cfg.liveness
    detector = FaceDetector(score_threshold=min(0.5, q.min_score), max_side=q.detect_max_side, pad_retry=False,
                            backend=m.detector, num_threads=m.threads)
    liveness = LivenessSettings(enabled=lv.enabled, threshold=lv.threshold, min_face_px=lv.min_face_px)
    return FaceVerifier(model=m.name or None, state_dir=cfg.state_path, tau=m.tau, num_threads=m.threads,
                        quality=q.thresholds(), detector=detector, liveness=liveness if lv.enabled else None)


class Gate:
    def __init__(self, cfg: Config, verifier: FrameVerifier, sink: EventSink, claims: ClaimInbox,
                 clock: Callable[[], float] = time.time, tap: FrameTap | None = None) -> None:
        """``clock``: wall-clock Unix time, for the access rules (the decisions keep the frames' clock);
        ``tap``: the frame loop's observers."""
        self.cfg, self.verifier, self.sink, self.claims, self.clock = cfg, verifier, sink, claims, clock
        self.tap = tap or FrameTap()
        self._result: FrameResult | None = None  # of the frame being handled
        self._processed_for: tuple[int, bool] = (0, False)  # (faces, flip) the frame was processed with
        self._decision: Decision | None = None
        d, a = cfg.decision, cfg.access
        self.matcher = verifier.matcher(d.security, d.k, d.n, cfg.model.tau)
        self.window = DecisionWindow(d.k, d.n, d.window_s, d.cooldown_s, d.unknown_cooldown_s, cfg.device.mode,
                                     d.spoof_cooldown_s, confirm=self.matcher.confirm)
        self.zone = access.configured_zone(a.timezone)
        self.tamper = access.TamperWatch(a.tamper_events, a.tamper_window_s) if a.tamper_events else None
        self.locked_until = 0.0
        self._frame_mono = (0.0, time.monotonic())  # (last frame ts, monotonic then)

    def emit(self, verdict: Verdict, latency: dict[str, float] | None = None, frame: Frame | None = None) -> None:
        """Emit a decision, after the access rules; then watch it for tampering. ``frame``: the frame that
        decided it (its main face goes with the event, for a snapshot)."""
        now = self.clock()
        verdict = self._allowed(verdict, now)
        crop = None
        if frame is not None and self._result is not None and self._result.faces and verdict.event_type != "error":
            crop = face_crop(frame.image, self._result.faces[0].face.bbox)
        self._emit(verdict, latency or {}, crop)
        if self.tamper is not None and self.tamper.observe(verdict.event_type, now):
            a = self.cfg.access
            reason = f"{a.tamper_events} unknown_face/denied/spoof events within {a.tamper_window_s:g} s"
            if a.tamper_lockout_s > 0:
                self.locked_until = now + a.tamper_lockout_s
                reason += f"; grants refused for {a.tamper_lockout_s:g} s"
            log.warning("tamper alert: %s", reason)
            self._emit(Verdict("tamper", None, None, 0, reason), {})

    def _emit(self, verdict: Verdict, latency: dict[str, float], crop: np.ndarray | None = None) -> None:
        try:
            m = self.matcher.state()
            tau = m["claim_tau"] if self.cfg.device.mode == "claim" else m["tau"]
            security = m["security"]
        except EdgeVerifyError:  # no one enrolled: no tau derived
            tau, security = None, None
        self.sink.emit(verdict, latency, tau=tau, model=self.verifier.model_sha256, crop=crop, security=security)

    def _allowed(self, verdict: Verdict, now: float) -> Verdict:
        """A ``granted`` stays one only for a person allowed now and while no tamper lockout runs."""
        if verdict.event_type != "granted" or verdict.person is None:
            return verdict
        if now < self.locked_until:
            return replace(verdict, event_type="denied", reason="tamper_lockout")
        try:
            rule = self.verifier.access(verdict.person)
        except Exception as e:  # fail-secure: no rule read, no grant
            log.exception("access rule of %r", verdict.person)
            return replace(verdict, event_type="error", reason=f"access rule: {type(e).__name__}: {e}")
        decision = access.check(rule, datetime.fromtimestamp(now, UTC), self.zone)
        if decision.allowed:
            return verdict
        log.info("%r is enrolled but not allowed now: %s", verdict.person, decision.detail)
        return replace(verdict, event_type="denied", reason=decision.reason)

    def now_ts(self) -> float:
        """Now, on the frames' clock."""
        ts, mono = self._frame_mono
        return ts + (time.monotonic() - mono)

    def _take_claims(self, ts: float) -> None:
        """The newest claim received since the last frame starts now (on the frames' clock)."""
        claim = self.claims.take()
        if claim is None:
            return
        person, ttl = claim
        if self.cfg.device.mode != "claim":
            log.warning("claim for %r ignored: device.mode is identify", person)
            return
        previous = self.window.set_claim(person, ts, ttl)
        if previous is not None:
            self.emit(previous)

    def tick(self) -> None:
        """Time passes without a frame: claims start, an expired claim gives ``denied``."""
        now = self.now_ts()
        self._take_claims(now)
        verdict = self.window.tick(now)
        if verdict is not None:
            self.emit(verdict)

    def handle(self, frame: Frame) -> dict[str, float]:
        """One frame: claims, detection, match, vote; an event when the window decides. Returns the time
        each stage took (ms, ``total`` included)."""
        self._frame_mono = (frame.ts, time.monotonic())
        self._take_claims(frame.ts)
        t0 = time.perf_counter()
        latency: dict[str, float] = {}
        self._result = self._decision = None
        self._processed_for = (0, False)
        try:
            verdict = self._decide(frame, latency)
        except Exception as e:
            log.exception("frame %s: processing failed", frame.name)
            verdict = self.window.error(frame.ts, f"{type(e).__name__}: {e}")
        latency["total"] = (time.perf_counter() - t0) * 1000
        if verdict is not None:
            self.emit(verdict, latency, frame)
        if self.tap.active:
            self.tap.notify(frame, self._result, self._decision, *self._processed_for)
        return latency

    def _decide(self, frame: Frame, latency: dict[str, float]) -> Verdict | None:
        claim = self.window.claim.person if self.window.claim is not None else None
        idle = self.cfg.device.mode == "claim" and claim is None
        if idle and not self.tap.active:
            return None  # nothing to verify against: no work until a claim arrives
        q = self.cfg.quality
        max_faces, flip = max(q.max_faces, self.tap.faces()), self.tap.flip()
        result = self.verifier.process(frame.image, only_ok=q.require_ok, max_faces=max_faces,
                                       detect_image=frame.lores, flip=True if flip else None)
        self._result, self._processed_for = result, (max_faces, flip)
        latency.update(result.timings_ms)
        faces = [f for f in result.faces[:q.max_faces] if f.embedding is not None]
        if idle:  # processed for an observer only: no vote without a claim
            if faces:
                self._decision = self._observe_match(faces[0].embedding)
            return None
        if not faces:
            return self.window.observe(Vote(frame.ts, None))
        t = time.perf_counter()
        live = faces[0].liveness
        score = live.score if live is not None else None
        if live is not None and not live.live:  # an attack votes SPOOF, a face too small for no one
            vote = vote_for(frame.ts, None, claim, live)
        else:
            try:
                vote = self.matcher.vote(frame.ts, faces[0].embedding, claim, score)
            except UnknownPersonError:
                self.window.claim = None
                return Verdict("denied", claim, None, 0, "unknown_person")
            except EmptyGalleryError:
                if claim is not None:
                    raise
                vote = Vote(frame.ts, UNKNOWN, None, score)  # no one enrolled: every face is unknown
        latency["match"] = (time.perf_counter() - t) * 1000
        self._decision = self._for_observers(vote, claim) if self.tap.active else None  # only observers read it
        log.debug("frame %s: %r d=%s", frame.name, vote.label, vote.distance)
        return self.window.observe(vote)

    def _for_observers(self, vote: Vote, claim: str | None) -> Decision | None:
        """The frame's vote as the live view shows it: the nearest person, accepted when under tau."""
        if vote.label is None or vote.label == SPOOF:
            return None
        person = claim if claim is not None else (None if vote.label == UNKNOWN else vote.label)
        try:
            m = self.matcher.state()
        except EdgeVerifyError:
            return Decision(False, None, vote.distance, 0.0, [])
        tau = float(m["claim_tau"] if claim is not None else m["tau"])
        accepted = person is not None and vote.label != MISMATCH and vote.distance is not None and vote.distance < tau
        return Decision(accepted, person, vote.distance, tau, [])

    def _observe_match(self, embedding: np.ndarray) -> Decision | None:
        """1:N for an observer (the live view's name), outside any vote."""
        try:
            return self.verifier.match(embedding)
        except EmptyGalleryError:
            return None
