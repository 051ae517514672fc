"""A guided enrolment session at the door's camera, pure: it is fed the faces of each frame with the
frame's time and says what to tell the person (closer, face the camera, hold still, too dark...), keeps
K sharp and varied frames, and refuses a face that is already enrolled under another name. Where the
frames come from (the camera, the daemon's frame loop) is :mod:`edge_verify.enrol_camera`'s business."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from .enrolment import Matcher, crowded
from .match import squared_l2
from .quality import Quality

if TYPE_CHECKING:
    from .pipeline import FrameResult


@dataclass(frozen=True)
class EnrolSettings:
    k: int = 5  # frames kept
    timeout_s: float = 20.0
    min_gap_s: float = 0.2  # between two kept frames
    min_pose_change: float = 3.0  # degrees of yaw or pitch from every kept frame...
    pose_wait_s: float = 1.0  # ...unless this long has passed since the last kept frame
    min_brightness: float = 40.0  # mean grey level of the face box
    max_brightness: float = 225.0


@dataclass(frozen=True)
class Observed:
    """One face of a frame, as the session needs it."""

    quality: Quality
    embedding: np.ndarray | None
    brightness: float | None = None  # mean grey level of the face box
    size: float = 0.0  # the smaller side of the face box, px
    live: bool | None = None  # None: no liveness verdict available


State = Literal["guide", "kept", "done", "refused"]


@dataclass(frozen=True)
class Progress:
    state: State
    kept: int
    k: int
    message: str

    @property
    def finished(self) -> bool:
        return self.state in ("done", "refused")

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state, "kept": self.kept, "k": self.k, "message": self.message}


def observed(result: FrameResult, image: np.ndarray) -> list[Observed]:
    """The faces of a processed frame as the session takes them, with the brightness of each box."""
    out = []
    for f in result.faces:
        x, y, w, h = f.face.bbox
        x0, y0 = max(0, int(x)), max(0, int(y))
        box = image[y0:y0 + max(1, int(h)), x0:x0 + max(1, int(w))]
        live = None if f.liveness is None else f.liveness.live  # too small to judge: not live either
        out.append(Observed(f.quality, f.embedding, float(box.mean()) if box.size else None, f.face.size, live))
    return out


def hint(q: Quality) -> str:
    """What to tell a person whose face the quality gate refuses."""
    reason = q.reasons[0] if q.reasons else ""
    if reason.startswith("face too small"):
        return "come closer"
    if reason.startswith("face too blurred"):
        return "hold still (the face is blurred)"
    if reason.startswith("detection score"):
        return "face the camera (the face is hard to see)"
    return "face the camera"


@dataclass
class EnrolSession:
    name: str
    match: Matcher
    tau: float
    settings: EnrolSettings = field(default_factory=EnrolSettings)
    kept: list[tuple[float, Quality, np.ndarray]] = field(default_factory=list)
    last: Progress | None = None

    def _say(self, state: State, message: str) -> Progress:
        self.last = Progress(state, len(self.kept), self.settings.k, message)
        return self.last

    def feed(self, ts: float, faces: list[Observed]) -> Progress:
        """The faces of one frame at time ``ts`` (seconds, any clock that only goes forward)."""
        s = self.settings
        if self.last is not None and self.last.finished:
            return self.last
        if not faces:
            return self._say("guide", "step in front of the camera")
        if (n := crowded([f.size or f.quality.size for f in faces])) > 1:
            return self._say("guide", f"{n} faces in view: only the person being enrolled, please")
        f = faces[0]
        if f.brightness is not None and f.brightness < s.min_brightness:
            return self._say("guide", "too dark: more light on the face")
        if f.brightness is not None and f.brightness > s.max_brightness:
            return self._say("guide", "too bright: less light on the face")
        if not f.quality.ok:
            return self._say("guide", hint(f.quality))
        if f.live is False:
            return self._say("guide", "a live face is needed (not a photo or a screen)")
        if f.embedding is None:
            return self._say("guide", "hold still")
        d = self.match(f.embedding)
        if d is not None and d.accepted and d.person != self.name:
            return self._say("refused", f"this face is already enrolled as {d.person!r}: nothing enrolled")
        if self.kept:
            dist = squared_l2(f.embedding, np.stack([e for _, _, e in self.kept]))
            if float(dist.min()) >= self.tau:
                self.kept.clear()
                return self._say("guide", "a different face: starting again")
            last_ts = self.kept[-1][0]
            if ts - last_ts < s.min_gap_s:
                return self._say("guide", "hold still")
            change = min(max(abs(f.quality.yaw - q.yaw), abs(f.quality.pitch - q.pitch)) for _, q, _ in self.kept)
            if change < s.min_pose_change and ts - last_ts < s.pose_wait_s:
                return self._say("guide", "turn your head a little")
        self.kept.append((ts, f.quality, f.embedding))
        if len(self.kept) >= s.k:
            return self._say("done", f"{s.k} frames kept")
        return self._say("kept", "good: keep looking at the camera, turning a little")

    def embeddings(self) -> np.ndarray:
        return np.stack([e for _, _, e in self.kept])
