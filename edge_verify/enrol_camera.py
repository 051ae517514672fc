"""``edge-verify enroll NAME --camera``: a guided enrolment from the door's camera.

While the daemon runs, it owns the camera (picamera2 is exclusive): the session runs inside the daemon
on its own frames, through the control socket (:mod:`edge_verify.control`). Otherwise the configured
source is opened here. Either way the rules are those of :class:`edge_verify.enrolment.EnrolSession`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import Config
from .control import ControlClient, socket_path
from .enrol_session import EnrolSession, EnrolSettings, Progress, observed
from .enrolment import check_new_name, matcher
from .errors import EnrolmentError, GalleryError

if TYPE_CHECKING:
    from .gate import FrameVerifier
    from .pipeline import FrameResult

log = logging.getLogger(__name__)

OnProgress = Callable[[dict[str, Any]], None]
Item = tuple[float, "FrameResult", np.ndarray]  # (ts, faces of the frame, the frame)


def drive(session: EnrolSession, items: Iterable[Item], timeout_s: float, on_progress: OnProgress,
          clock: Callable[[], float] = time.monotonic) -> tuple[Progress, str]:
    """Tell the person to look at the camera, then feed frames to the session until it finishes,
    ``timeout_s`` passes or the frames end: the last progress and why it stopped. Each change of what to
    tell the person is reported once."""
    on_progress({"state": "guide", "kept": 0, "k": session.settings.k, "message": "look at the camera"})
    deadline = clock() + timeout_s
    said: tuple[str, int] | None = None
    last = Progress("guide", 0, session.settings.k, "no frame from the camera")
    for ts, result, image in items:
        last = session.feed(ts, observed(result, image))
        if (last.message, last.kept) != said:
            said = (last.message, last.kept)
            on_progress(last.to_dict())
        if last.finished:
            return last, last.state
        if clock() >= deadline:
            return last, f"timed out after {timeout_s:g} s"
    return last, "timed out" if clock() >= deadline else "the camera gave no more frames"


def finish(session: EnrolSession, outcome: tuple[Progress, str], verifier: FrameVerifier) -> int:
    """Store what the session kept, or raise why it could not be done."""
    last, why = outcome
    if last.state == "refused":
        raise GalleryError(last.message)
    if last.state != "done":
        raise EnrolmentError(f"enrolment of {session.name!r} not done: {why}, with {last.kept} of {last.k} frames "
                             f"kept (last hint: {last.message}); nothing enrolled")
    return verifier.add_templates(session.name, session.embeddings())


def _frames(cfg: Config, verifier: FrameVerifier, stop_after: float) -> Iterator[Item]:
    from .camera import make_source

    source = make_source(cfg.camera)
    deadline = time.monotonic() + stop_after
    with source:
        while time.monotonic() < deadline:
            frame = source.read()
            if frame is None:
                return
            # flip-averaged, as photo enrolment makes templates (docs/ENCODERS.md)
            result = verifier.process(frame.image, only_ok=True, max_faces=2, detect_image=frame.lores, flip=True)
            yield frame.ts, result, frame.image


def enrol_here(cfg: Config, name: str, settings: EnrolSettings, new: bool, on_progress: OnProgress) -> int:
    """Open the configured camera and the model in this process, and enrol ``name`` from it."""
    from .gate import verifier_from_config

    fv = verifier_from_config(cfg)
    try:
        clean = check_new_name(fv.gallery.resolve, name) if new else name.strip()
        fv.gallery.check_model()
        session = EnrolSession(clean, matcher(fv), fv.tau, settings)
        outcome = drive(session, _frames(cfg, fv, settings.timeout_s), settings.timeout_s, on_progress)
        return finish(session, outcome, fv)
    finally:
        fv.close()


def enrol(cfg: Config, name: str, settings: EnrolSettings, new: bool, on_progress: OnProgress) -> int:
    """Enrol ``name`` from the camera: through the daemon when it runs, else here."""
    from .gallery import check_name

    check_name(name)
    client = ControlClient(socket_path(cfg.state_path))
    if client.available():
        log.info("the daemon owns the camera: enrolling through it")
        return client.enroll(name, settings.k, settings.timeout_s, new, on_progress)
    return enrol_here(cfg, name, settings, new, on_progress)
