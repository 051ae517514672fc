"""The encoder: aligned face crops in, L2-normalised 128-d encodings out.

Runs a ``.tflite`` model with LiteRT (``ai_edge_litert``), or with the older ``tflite_runtime`` where
that is what is installed (32-bit Raspberry Pi OS). TensorFlow is never imported here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .match import l2_normalize


def load_interpreter_class() -> tuple[Any, str]:
    """The Interpreter class of whichever TFLite runtime is installed, and its module name."""
    forced = os.environ.get("EDGE_VERIFY_INTERPRETER", "")
    candidates = [forced] if forced else ["ai_edge_litert", "tflite_runtime"]
    for name in candidates:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert.interpreter import Interpreter
            elif name == "tflite_runtime":
                from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
            else:
                continue
        except ImportError:
            continue
        return Interpreter, name
    raise ModelError(
        "no TFLite interpreter installed: pip install ai-edge-litert (or tflite-runtime on 32-bit Arm)"
    )


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence the C++ runtime's own stderr lines ("INFO: Created TensorFlow Lite XNNPACK delegate")."""
    if os.environ.get("EDGE_VERIFY_DEBUG_NATIVE"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_interpreter(path: Path, num_threads: int | None, what: str) -> tuple[Any, str, int]:
    """(allocated interpreter, runtime module name, threads) for a ``.tflite`` file; a missing or
    unreadable file is a one-line ModelError naming ``what`` it was meant to be."""
    if not path.is_file():
        raise ModelError(f"{what} model not found: {path}")
    interpreter_cls, runtime = load_interpreter_class()
    threads = num_threads if num_threads and num_threads > 0 else min(4, os.cpu_count() or 1)
    try:
        with _native_stderr_silenced():
            interp = interpreter_cls(model_path=str(path), num_threads=threads)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load {what} {path}: {str(exc).strip().splitlines()[0]}") from None
    return interp, runtime, threads


def quantize(x: np.ndarray, dtype: np.dtype[Any], q: tuple[float, int]) -> np.ndarray:
    """Values as a model input of ``dtype``: ``round(x / scale + zero_point)`` clipped to the integer
    range for a quantized input (``q`` = (scale, zero point)), else the values as they are."""
    x = x.astype(np.float32)
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = q
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, dtype: np.dtype[Any], q: tuple[float, int]) -> np.ndarray:
    """A model output of ``dtype`` as float32: ``(y - zero_point) * scale`` when it is quantized."""
    if dtype.kind == "f":
        return y.astype(np.float32)
    scale, zero = q
    return (y.astype(np.float32) - zero) * scale


class Embedder:
    """One TFLite encoder; ``embed`` is thread-safe (calls are serialised).

    ``flip``: encode each crop and its mirror image and return the mean of the two unit encodings,
    renormalised (horizontal-flip test-time augmentation). It costs a second encoder run per face, so it
    is off by default; ``embed(crop, flip=True)`` asks for it on one call (enrolment, see docs/ENCODERS.md).
    """

    def __init__(self, model_path: str | Path, num_threads: int | None = None, flip: bool = False) -> None:
        path = Path(model_path)
        self._tfl, self.interpreter, self.num_threads = open_interpreter(path, num_threads, "encoder")
        inp = self._tfl.get_input_details()[0]
        out = self._tfl.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype, self._out_dtype = np.dtype(inp["dtype"]), np.dtype(out["dtype"])
        self._in_q = inp["quantization"]
        self._out_q = out["quantization"]
        shape = tuple(int(v) for v in inp["shape"])
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(f"{path.name}: expected an NHWC 3-channel input, got shape {shape}")
        self.input_size = (shape[2], shape[1])  # (w, h)
        self.embedding_size = int(out["shape"][-1])
        self.flip = bool(flip)
        self._lock = threading.Lock()

    @property
    def dtype(self) -> str:
        return self._in_dtype.name

    def run(self, crop: np.ndarray) -> np.ndarray:
        """The model's raw output for one BGR uint8 crop of its input size, dequantised to float32
        (an encoder's unnormalised encoding, a classifier's logits)."""
        if crop.shape[:2] != self.input_size[::-1] or crop.ndim != 3:
            raise ValueError(f"expected a {self.input_size[0]}x{self.input_size[1]} BGR crop, got {crop.shape}")
        x = quantize(crop, self._in_dtype, self._in_q)[None]
        with self._lock:
            self._tfl.set_tensor(self._in_index, x)
            self._tfl.invoke()
            y = self._tfl.get_tensor(self._out_index)[0].copy()
        return dequantize(y, self._out_dtype, self._out_q)

    def embed(self, crop: np.ndarray, flip: bool | None = None) -> np.ndarray:
        """The L2-normalised encoding of one aligned BGR uint8 crop; ``flip`` (default: the embedder's
        setting) averages it with the encoding of the mirrored crop."""
        y = l2_normalize(self.run(crop))
        if self.flip if flip is None else flip:
            y = l2_normalize(y + l2_normalize(self.run(np.ascontiguousarray(crop[:, ::-1]))))
        return y

    def embed_batch(self, crops: list[np.ndarray] | np.ndarray, flip: bool | None = None) -> np.ndarray:
        """Encodings of several crops, (N, D)."""
        if len(crops) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        return np.stack([self.embed(c, flip) for c in crops])
