"""The face detector's backends as a type, in a module with no dependency, so that ``config.py`` takes
its choices from here without loading OpenCV or numpy (as with ``thresholds.py``: the lock controller
reads ``config.py`` and runs with neither). ``detect.py`` implements them."""

from __future__ import annotations

from typing import Literal, get_args

# auto: LiteRT, falling back to OpenCV with a logged warning; litert: LiteRT only; opencv: cv2.FaceDetectorYN
DetectorBackend = Literal["auto", "litert", "opencv"]
BACKENDS: tuple[str, ...] = get_args(DetectorBackend)
