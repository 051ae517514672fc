"""The live view's picture: a frame with each face's box and the name of the main face (green: an
enrolled person, red: unknown, grey: a face the quality gate refuses), encoded as JPEG. Drawn only when
the console asks for a frame, never in the frame loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .match import Decision

if TYPE_CHECKING:
    from .pipeline import FrameResult

MAX_WIDTH = 640
GREEN, RED, GREY = (60, 180, 60), (50, 50, 220), (160, 160, 160)


def render(image: np.ndarray, result: FrameResult | None, decision: Decision | None, quality: int = 75) -> bytes:
    import cv2

    scale = min(1.0, MAX_WIDTH / image.shape[1])
    out = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
    for i, f in enumerate(result.faces if result is not None else []):
        x, y, w, h = (int(v * scale) for v in f.face.bbox)
        if not f.quality.ok:
            colour, label = GREY, f.quality.reasons[0].split(" (")[0] if f.quality.reasons else ""
        elif i == 0 and decision is not None:
            colour, label = (GREEN, str(decision.person)) if decision.accepted else (RED, "unknown")
        else:
            colour, label = RED, ""
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
        if label:
            cv2.putText(out, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpeg.tobytes() if ok else b""
