"""Claims (claim mode): a badge reader or keypad says who stands at the door, and the next frames are
verified against that person only.

:func:`parse_claim` checks a payload from the network (bounded size, JSON, a name as enrolment accepts
it, a finite positive ttl); :class:`ClaimInbox` carries claims from the link's thread to the frame loop,
bounded (a flood is dropped and counted) and coalesced (of the claims that arrive between two frames
only the newest starts)."""

from __future__ import annotations

import json
import logging
import math
import queue

from .errors import GalleryError
from .gallery import check_name

log = logging.getLogger(__name__)

MAX_CLAIM_BYTES = 1024  # {"person": <64 characters>, "ttl_s": <number>} fits many times over
CLAIM_QUEUE = 16  # claims waiting for the next frame; beyond this they are dropped


class ClaimError(ValueError):
    """A claim payload that is not {"person": NAME, "ttl_s": NUMBER}."""


def parse_claim(payload: bytes, max_ttl_s: float) -> tuple[str, float]:
    """(person, ttl in seconds) from a claim payload, or ClaimError with the reason. The name is checked
    and trimmed as enrolment does (no control characters); the ttl is clamped to ``max_ttl_s``."""
    if len(payload) > MAX_CLAIM_BYTES:
        raise ClaimError(f"payload of {len(payload)} bytes (at most {MAX_CLAIM_BYTES})")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise ClaimError(f"not JSON: {type(e).__name__}") from None
    if not isinstance(data, dict) or "person" not in data:
        raise ClaimError('expected {"person": NAME, "ttl_s": NUMBER}')
    person, ttl = data["person"], data.get("ttl_s", 10)
    if not isinstance(person, str):
        raise ClaimError("person must be a string")
    try:
        person = check_name(person)
    except GalleryError as e:
        raise ClaimError(str(e)) from None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise ClaimError("ttl_s must be a number")
    try:
        ttl = float(ttl)
    except OverflowError:
        raise ClaimError("ttl_s is out of range") from None
    if not math.isfinite(ttl) or ttl <= 0:
        raise ClaimError("ttl_s must be a positive number")
    return person, min(ttl, max_ttl_s)


class ClaimInbox:
    """Claims from any thread to the frame loop."""

    def __init__(self, size: int = CLAIM_QUEUE) -> None:
        self._q: queue.Queue[tuple[str, float]] = queue.Queue(maxsize=size)
        self.dropped = 0

    def put(self, person: str, ttl_s: float) -> None:
        try:
            self._q.put_nowait((person, ttl_s))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("claim flood: %d claims dropped so far", self.dropped)

    def qsize(self) -> int:
        return self._q.qsize()

    def take(self) -> tuple[str, float] | None:
        """The newest claim waiting, or None; the older ones it replaces never began (no event)."""
        latest, waiting = None, 0
        while True:
            try:
                latest = self._q.get_nowait()
            except queue.Empty:
                break
            waiting += 1
        if latest is not None and waiting > 1:
            log.info("%d claims arrived together: only the last, for %r, is used", waiting, latest[0])
        return latest
