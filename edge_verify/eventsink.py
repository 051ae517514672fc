"""From decisions to stored events: :class:`EventSink` turns each Verdict into an event (schema v1),
stores it in the outbox and tells the link. When the outbox cannot take it (a full disk, a lock), the
event waits in memory and is stored at the next chance, oldest first, so that ``seq`` keeps the
decisions' order; beyond ``max_unsaved`` the oldest are dropped, counted in ``lost``, and an ``error``
event (reason ``events_lost``) says so as soon as one can be stored again.

Once stored, an event is also appended to the local event log (``recorder``, for the console), and the
face crop that decided it is kept as a snapshot when the configuration asks for it (``snapshots``)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .decision import Verdict
from .errors import EdgeVerifyError
from .events import make_event
from .outbox import Outbox, OutboxError

log = logging.getLogger(__name__)


class EventRecorder(Protocol):
    """The event log (:class:`edge_verify.eventlog.EventLog`)."""

    def record(self, event: dict[str, Any]) -> None: ...


class SnapshotTaker(Protocol):
    """The snapshot store (:class:`edge_verify.snapshots.SnapshotStore`): never raises."""

    def take(self, event: dict[str, Any], crop: np.ndarray) -> str | None: ...


class EventSink:
    def __init__(self, device_id: str, mode: str, submit: Callable[[int], None], max_unsaved: int = 1000) -> None:
        self.device_id, self.mode, self.submit = device_id, mode, submit
        self.max_unsaved = max_unsaved
        self.outbox: Outbox | None = None
        self.unsaved: deque[dict[str, Any]] = deque()
        self.lost = 0
        self.emitted = 0
        self.degraded: str | None = None  # why events wait in memory, while they do
        self.recorder: EventRecorder | None = None
        self.snapshots: SnapshotTaker | None = None
        self._announced = 0

    def emit(self, verdict: Verdict, latency: dict[str, float], *, tau: float | None, model: str | None,
             crop: np.ndarray | None = None, security: str | None = None) -> None:
        """Make the event of a decision and store it (or keep it until it can be stored); ``crop``: the
        face that decided it, for a snapshot; ``security``: the level whose tau decided."""
        event = make_event(verdict, device_id=self.device_id, mode=self.mode, tau=tau, model=model,
                           latency_ms=latency, now=time.time(), security=security)
        if crop is not None and self.snapshots is not None:
            self.snapshots.take(event, crop)
        self.emitted += 1
        log.info("event %s person=%r distance=%s frames=%d%s", verdict.event_type, verdict.person,
                 event["distance"], verdict.frames, f" ({verdict.reason})" if verdict.reason else "")
        if len(self.unsaved) >= self.max_unsaved:
            self.unsaved.popleft()
            self.lost += 1
        self.unsaved.append(event)
        self.store()

    def store(self) -> None:
        """Store the events waiting in memory, oldest first, until the outbox refuses one."""
        while self.unsaved and self.outbox is not None:
            event = self.unsaved[0]
            try:
                seq = self.outbox.add(event)
            except OutboxError as e:
                if e.transient:
                    if self.degraded is None:
                        log.error("outbox: %s; %d events kept in memory, retried at every frame", e,
                                  len(self.unsaved))
                    self.degraded = str(e)
                    return
                log.error("event %s lost: %s", event["event_type"], e)
                self.unsaved.popleft()
                self.lost += 1
                continue
            self.unsaved.popleft()
            log.debug("event #%d stored", seq)
            self.submit(seq)
            self._record({**event, "seq": seq})
        if not self.unsaved and self.degraded is not None:
            log.info("outbox: writable again; the events kept in memory are stored")
            self.degraded = None

    def _record(self, event: dict[str, Any]) -> None:
        """Append a stored event to the event log; a failure there is logged, never fatal."""
        if self.recorder is None:
            return
        try:
            self.recorder.record(event)
        except EdgeVerifyError as e:
            log.warning("event log: event #%d not recorded: %s", event["seq"], e)

    def unannounced_losses(self) -> int:
        """How many losses no ``error`` event has announced yet (0 while events still wait); counts them
        as announced."""
        if self.lost <= self._announced or self.unsaved:
            return 0
        n, self._announced = self.lost - self._announced, self.lost
        return n
