"""Observers of the daemon's frame loop (:class:`FrameTap`): the console's live view and enrolments at
the door see each frame with its faces and the decision of its main face. Registered from any thread;
with none registered the loop does nothing more than before."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .camera import Frame
from .match import Decision

if TYPE_CHECKING:
    from .pipeline import FrameResult

log = logging.getLogger(__name__)

FrameObserver = Callable[[Frame, "FrameResult | None", Decision | None], None]


class FrameTap:
    """Each observer says how many faces per frame it needs to see (an enrolment wants 2, to refuse a
    frame with two people in view) and whether it wants the encodings flip-averaged (an enrolment does:
    its frames become templates, made as photo enrolment makes them); while any is registered, frames
    are also processed in claim mode without a claim (no vote is taken)."""

    def __init__(self) -> None:
        self._observers: dict[int, tuple[FrameObserver, int, bool]] = {}
        self._ids = itertools.count(1)

    def add(self, observer: FrameObserver, faces: int = 1, flip: bool = False) -> int:
        token = next(self._ids)
        self._observers = {**self._observers, token: (observer, faces, flip)}  # replaced, never mutated
        return token

    def remove(self, token: int) -> None:
        self._observers = {k: v for k, v in self._observers.items() if k != token}

    @property
    def active(self) -> bool:
        return bool(self._observers)

    def faces(self) -> int:
        return max((n for _, n, _ in self._observers.values()), default=0)

    def flip(self) -> bool:
        """Whether an observer wants flip-averaged encodings (``Embedder.embed``): a second encoder run
        per face, only while such an observer is registered."""
        return any(f for _, _, f in self._observers.values())

    def notify(self, frame: Frame, result: FrameResult | None, decision: Decision | None, faces: int = 0,
               flip: bool = False) -> None:
        """Each observer sees the frame; its result only when the frame was processed for what the
        observer needs (``faces`` per frame, ``flip``-averaged encodings): one that registered while the
        frame was being processed gets ``None`` for that frame, not a result made without its needs."""
        for observer, n, wants_flip in self._observers.values():
            met = n <= faces and (flip or not wants_flip)
            try:
                observer(frame, result if met else None, decision)
            except Exception:
                log.exception("frame observer failed")
