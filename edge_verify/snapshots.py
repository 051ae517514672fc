"""Face snapshots, opt-in (``[events] snapshots = "unknown" | "all"``): a small JPEG crop of the face
that decided an event, kept in ``<state_dir>/snapshots/`` (0700, files 0600) and indexed in the event
log, with retention by age and by total size. Shown in the console; never published on MQTT (events
carry no image). ``people forget`` deletes the person's snapshots with their templates."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgeVerifyError
from .eventlog import EventLog, Snapshot
from .events import parse_iso_utc

log = logging.getLogger(__name__)

DIRNAME = "snapshots"
MAX_SIDE = 192  # px: enough to recognise someone, small on disk (~6-10 kB)
JPEG_QUALITY = 85
UNKNOWN_TYPES = ("unknown_face", "denied", "spoof")  # what snapshots = "unknown" keeps
NO_FACE_TYPES = ("error", "tamper")  # decisions no single face made
_EVENT_ID = re.compile(r"^[0-9a-f-]{36}$")


def wanted(policy: str, event_type: str) -> bool:
    """Whether ``policy`` keeps a snapshot of an event of this type (errors and tamper alerts have no
    face to keep)."""
    if policy == "all":
        return event_type not in NO_FACE_TYPES
    return policy == "unknown" and event_type in UNKNOWN_TYPES


def face_crop(image: np.ndarray, bbox: tuple[float, float, float, float], margin: float = 0.4) -> np.ndarray:
    """The face box of a frame with a margin around it, clipped to the frame (a view, no copy)."""
    x, y, w, h = bbox
    h_img, w_img = image.shape[:2]
    x0, y0 = max(0, int(x - w * margin)), max(0, int(y - h * margin))
    x1, y1 = min(w_img, int(x + w * (1 + margin))), min(h_img, int(y + h * (1 + margin)))
    return image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]


class SnapshotStore:
    def __init__(self, state_dir: str | Path, eventlog: EventLog, policy: str = "off", days: float = 30.0,
                 max_mb: float = 200.0) -> None:
        self.dir = Path(state_dir) / DIRNAME
        self.log, self.policy = eventlog, policy
        self.max_age_s, self.max_bytes = days * 86400.0, int(max_mb * 1024 * 1024)

    def take(self, event: dict[str, Any], crop: np.ndarray) -> str | None:
        """Keep the face crop of ``event`` when the policy wants it; the file name, or None. Never raises:
        a snapshot is not worth losing an event for."""
        if not wanted(self.policy, event["event_type"]) or crop.size == 0:
            return None
        import cv2

        try:
            scale = MAX_SIDE / max(crop.shape[:2])
            if scale < 1:
                crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                return None
            data = jpeg.tobytes()
            self.dir.mkdir(mode=0o700, exist_ok=True)
            name = f"{event['event_id']}.jpg"
            fd = os.open(self.dir / name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.log.add_snapshot(Snapshot(event["event_id"], event.get("person"), parse_iso_utc(event["ts"]),
                                           name, len(data)))
            self.prune()
            return name
        except (OSError, EdgeVerifyError) as e:
            log.warning("snapshot of event %s not kept: %s", event["event_id"], e)
            return None

    def path(self, event_id: str) -> Path | None:
        """The file of an event's snapshot, or None (also for anything that is not an event id)."""
        if not _EVENT_ID.match(event_id):
            return None
        s = self.log.snapshot(event_id)
        p = self.dir / s.file if s is not None else None
        return p if p is not None and p.is_file() else None

    def _delete(self, snaps: list[Snapshot]) -> int:
        for s in snaps:
            try:
                (self.dir / s.file).unlink()
            except FileNotFoundError:
                pass
        self.log.drop_snapshots([s.event_id for s in snaps])
        return len(snaps)

    def forget(self, person: str) -> int:
        """Delete every snapshot of ``person``; how many."""
        return self._delete(self.log.snapshots(person=person))

    def prune(self, now: float | None = None) -> int:
        """Delete snapshots older than the retention, then the oldest until the total fits."""
        now = time.time() if now is None else now
        gone = self._delete(self.log.snapshots(older_than=now - self.max_age_s))
        total = self.log.snapshot_bytes()
        if total > self.max_bytes:
            drop = []
            for s in self.log.snapshots():
                if total <= self.max_bytes:
                    break
                drop.append(s)
                total -= s.bytes
            gone += self._delete(drop)
        return gone


def forget_person(state_dir: str | Path, person: str) -> int:
    """Delete a person's snapshots from a state directory (none when it keeps no event log)."""
    from .eventlog import FILENAME

    if not (Path(state_dir) / FILENAME).exists():
        return 0
    el = EventLog(state_dir)
    try:
        return SnapshotStore(state_dir, el).forget(person)
    finally:
        el.close()
