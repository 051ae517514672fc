"""YuNet on LiteRT: the model's twelve head outputs decoded in numpy, as ``cv2.FaceDetectorYN`` does.

The bundled ``.tflite`` is OpenCV Zoo's YuNet imported by ``converter.import_onnx`` (``make detector``).
Its input is resizable: an image is zero-padded on the right and bottom to a multiple of 32 (as
OpenCV pads it), and the interpreter is resized only when that padded size changes (the daemon's
frames keep one size). Per stride s in (8, 16, 32), for the anchor at column c, row r:

- score = sqrt(clip(cls, 0, 1) * clip(obj, 0, 1));
- box centre ((c, r) + bbox[0:2]) * s, size exp(bbox[2:4]) * s;
- landmark k at ((c, r) + kps[2k:2k+2]) * s, in the order right eye, left eye, nose tip, right and
  left mouth corner;

then greedy non-maximum suppression over the faces above the score threshold (the ``top_k`` best
considered, boxes truncated to integers for the overlap as OpenCV does). TensorFlow is never imported.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .embed import dequantize, open_interpreter, quantize
from .errors import ModelError

STRIDES = (8, 16, 32)
DIVISOR = 32
HEADS = ("cls", "obj", "bbox", "kps")
OUTPUTS = tuple(f"{head}_{s}" for head in HEADS for s in STRIDES)
ROW = 15  # one face: x, y, w, h, 5 landmarks (x, y), score: the layout of cv2.FaceDetectorYN.detect


def padded_size(width: int, height: int) -> tuple[int, int]:
    """The (w, h) the network sees: both sides rounded up to a multiple of 32."""
    return (-(-width // DIVISOR) * DIVISOR, -(-height // DIVISOR) * DIVISOR)


def decode(outputs: dict[str, np.ndarray], width: int, height: int, score_threshold: float) -> np.ndarray:
    """Faces above ``score_threshold`` from the head outputs of a ``width`` x ``height`` (padded) input,
    as (N, 15) rows in anchor order (stride 8 first, then row by row)."""
    rows = []
    for s in STRIDES:
        cols, nrows = width // s, height // s
        n = cols * nrows
        cls = np.clip(outputs[f"cls_{s}"].reshape(n), 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{s}"].reshape(n), 0.0, 1.0)
        score = np.sqrt(cls * obj)
        keep = np.flatnonzero(score >= score_threshold)
        if not keep.size:
            continue
        bbox = outputs[f"bbox_{s}"].reshape(n, 4)[keep].astype(np.float32)
        kps = outputs[f"kps_{s}"].reshape(n, 10)[keep].astype(np.float32)
        anchor = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)  # (c, r)
        centre = (anchor + bbox[:, :2]) * s
        size = np.exp(bbox[:, 2:4]) * s
        marks = (kps.reshape(-1, 5, 2) + anchor[:, None, :]) * s
        face = np.empty((keep.size, ROW), np.float32)
        face[:, 0:2] = centre - size / 2
        face[:, 2:4] = size
        face[:, 4:14] = marks.reshape(-1, 10)
        face[:, 14] = score[keep]
        rows.append(face)
    return np.concatenate(rows) if rows else np.zeros((0, ROW), np.float32)


def nms(faces: np.ndarray, score_threshold: float, iou_threshold: float, top_k: int) -> np.ndarray:
    """Greedy non-maximum suppression of (N, 15) face rows, best score first (``cv2.dnn.NMSBoxes``:
    scores strictly above the threshold, the ``top_k`` best candidates, integer boxes)."""
    order = np.flatnonzero(faces[:, 14] > score_threshold)
    order = order[np.argsort(-faces[order, 14], kind="stable")]
    if top_k > 0:
        order = order[:top_k]
    box = np.trunc(faces[order, :4]).astype(np.float64)
    x1, y1 = box[:, 0], box[:, 1]
    x2, y2 = x1 + box[:, 2], y1 + box[:, 3]
    area = box[:, 2] * box[:, 3]
    kept: list[int] = []
    for i in range(len(order)):
        if kept:
            k = np.asarray(kept)
            iw = np.clip(np.minimum(x2[i], x2[k]) - np.maximum(x1[i], x1[k]), 0, None)
            ih = np.clip(np.minimum(y2[i], y2[k]) - np.maximum(y1[i], y1[k]), 0, None)
            inter = iw * ih
            union = area[i] + area[k] - inter
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
            if (iou > iou_threshold).any():
                continue
        kept.append(i)
    return faces[order[kept]]


class LiteRTYuNet:
    """YuNet as a ``.tflite`` (int8 or fp32) on the LiteRT interpreter; ``run`` is thread-safe."""

    def __init__(self, model_path: str | Path, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 top_k: int = 50, num_threads: int | None = None) -> None:
        self.model_path = Path(model_path)
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k
        self._tfl, self.interpreter, self.num_threads = open_interpreter(self.model_path, num_threads, "face detector")
        try:
            runner = self._tfl.get_signature_runner()
            outs = runner.get_output_details()
        except (ValueError, RuntimeError, AttributeError) as exc:
            raise ModelError(f"{self.model_path.name}: no serving signature with named outputs ({exc})") from None
        missing = [n for n in OUTPUTS if n not in outs]
        if missing:
            raise ModelError(f"{self.model_path.name}: not a YuNet detector (outputs {', '.join(missing)} missing)")
        self._outputs = {n: (int(outs[n]["index"]), outs[n]["quantization"], np.dtype(outs[n]["dtype"]))
                         for n in OUTPUTS}
        inp = self._tfl.get_input_details()[0]
        if len(inp["shape"]) != 4 or int(inp["shape"][3]) != 3:
            raise ModelError(f"{self.model_path.name}: expected an NHWC 3-channel input, got {list(inp['shape'])}")
        self._in_index, self._in_dtype, self._in_q = int(inp["index"]), np.dtype(inp["dtype"]), inp["quantization"]
        self._resizable = bool(np.any(np.asarray(inp.get("shape_signature", inp["shape"]))[1:3] < 0))
        self._size = (int(inp["shape"][2]), int(inp["shape"][1]))  # (w, h) the interpreter is allocated for
        self._lock = threading.Lock()

    @property
    def dtype(self) -> str:
        return self._in_dtype.name

    def _input(self, image: np.ndarray, width: int, height: int) -> np.ndarray:
        h, w = image.shape[:2]
        x = np.zeros((1, height, width, 3), self._in_dtype)
        x[0, :h, :w] = quantize(image, self._in_dtype, self._in_q)  # a float model takes the pixels as they are
        return x

    def _resize(self, width: int, height: int) -> None:
        if (width, height) == self._size:
            return
        if not self._resizable:
            raise ValueError(f"{self.model_path.name} takes {self._size[0]}x{self._size[1]} only; "
                             f"got an image padded to {width}x{height}")
        self._tfl.resize_tensor_input(self._in_index, [1, height, width, 3])
        self._tfl.allocate_tensors()
        self._size = (width, height)

    def _value(self, name: str) -> np.ndarray:
        index, q, dtype = self._outputs[name]
        return dequantize(self._tfl.get_tensor(index), dtype, q)

    def run(self, image: np.ndarray) -> np.ndarray:
        """Faces of a BGR uint8 image at its own size: (N, 15) rows, best score first."""
        h, w = image.shape[:2]
        pw, ph = padded_size(w, h)
        if not self._resizable and w <= self._size[0] and h <= self._size[1]:
            pw, ph = self._size  # a fixed-size model: pad up to its size
        x = self._input(image, pw, ph)
        with self._lock:
            self._resize(pw, ph)
            self._tfl.set_tensor(self._in_index, x)
            self._tfl.invoke()
            outputs = {n: self._value(n) for n in OUTPUTS}
        faces = decode(outputs, pw, ph, self.score_threshold)
        if len(faces) <= 1:  # as OpenCV: one candidate is returned without suppression
            return faces
        return nms(faces, self.score_threshold, self.nms_threshold, self.top_k)
