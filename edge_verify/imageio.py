"""Read the image formats people enrol from, with a clear reason when that fails.

JPEG, PNG, BMP, PGM/PPM, WebP and GIF (first frame) are decoded by OpenCV. The header is read first,
so that an image too large to decode safely is refused before any memory is spent on it, and a
truncated JPEG or PNG (which OpenCV would half-decode with a warning) is refused too.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".gif"})
MIN_SIDE = 16
MAX_PIXELS = 50_000_000  # 50 MP: larger than any camera people enrol from; 20000x20000 is refused


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    fields: list[bytes] = []
    for line in data[:1024].split(b"\n"):
        line = line.split(b"#", 1)[0]
        fields.extend(line.split())
        if len(fields) >= 3:
            try:
                return int(fields[1]), int(fields[2])
            except ValueError:
                return None
    return None


def image_size(data: bytes) -> tuple[str, tuple[int, int] | None]:
    """The format name and (width, height) read from an image's header, without decoding it."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return "png", struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        return "jpeg", _jpeg_size(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return "gif", struct.unpack("<HH", data[6:10])
    if data.startswith(b"BM") and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return "bmp", (abs(w), abs(h))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            w = int.from_bytes(data[24:27], "little") + 1
            h = int.from_bytes(data[27:30], "little") + 1
            return "webp", (w, h)
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return "webp", ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return "webp", (w & 0x3FFF, h & 0x3FFF)
        return "webp", None
    if data[:2] in (b"P2", b"P3", b"P5", b"P6"):
        return "pnm", _pnm_size(data)
    return "unknown", None


def _truncated(fmt: str, data: bytes) -> bool:
    if fmt == "jpeg":
        return b"\xff\xd9" not in data[-1024:]
    if fmt == "png":
        return b"IEND" not in data[-64:]
    return False


def _decode_gif(data: bytes) -> np.ndarray | None:
    ok, frames = cv2.imdecodemulti(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return frames[0] if ok and frames else None


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode image bytes to an (H, W, 3) uint8 BGR array, or raise ImageError saying why."""
    if not data:
        raise ImageError(f"{name}: file is empty")
    fmt, size = image_size(data)
    if fmt == "unknown":
        raise ImageError(f"{name}: not an image (JPEG, PNG, BMP, PGM, WebP or GIF)")
    if size is None:
        raise ImageError(f"{name}: {fmt.upper()} header is damaged or truncated")
    w, h = size
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name}: image is {w}x{h} pixels, too small for a face (min {MIN_SIDE} px a side)")
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name}: image is {w}x{h} pixels, larger than the {MAX_PIXELS // 1_000_000} MP limit")
    if _truncated(fmt, data):
        raise ImageError(f"{name}: {fmt.upper()} file is truncated")
    buf = np.frombuffer(data, np.uint8)
    image = _decode_gif(data) if fmt == "gif" else cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{name}: {fmt.upper()} data could not be decoded (damaged file?)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR, or raise ImageError with the reason."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{p}: is a directory, not an image") from None
    except OSError as exc:
        raise ImageError(f"{p}: cannot read: {exc.strerror or exc}") from None
    return decode_image(data, str(p))
