"""Read the image formats people enrol from, with a clear reason when that fails.

JPEG, PNG, BMP, PGM/PPM, WebP and GIF (first frame) are decoded by OpenCV. Only regular files are
read (a named pipe or a link to ``/dev/zero`` is refused without reading), and at most
``MAX_FILE_BYTES``. The header is read first, so that an image too large to decode safely is refused
before any memory is spent on it, and a truncated JPEG or PNG is refused too. Of a GIF only the first
frame reaches the decoder. What the C decoders print (libjpeg's "Corrupt JPEG data", libpng's
warnings, OpenCV's ``[ WARN ]``/``[ERROR]`` lines) is captured instead of reaching stderr; a JPEG that
libjpeg reports as corrupt (it fills the missing part with grey) is refused.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".gif"})
MIN_SIDE = 16
MAX_PIXELS = 50_000_000  # 50 MP: larger than any camera people enrol from; 20000x20000 is refused
MAX_FILE_BYTES = 4 * MAX_PIXELS + (1 << 20)  # a 50 MP uncompressed 32-bit BMP, plus headers: ~201 MB

if "OPENCV_LOG_LEVEL" not in os.environ:  # OpenCV's own [ WARN ] lines break the one-line rule
    _cv_logging = getattr(getattr(cv2, "utils", None), "logging", None)  # not in every opencv build
    if _cv_logging is not None:
        _cv_logging.setLogLevel(_cv_logging.LOG_LEVEL_SILENT)
    else:  # read by OpenCV when its logger first starts, which is later than this import
        os.environ["OPENCV_LOG_LEVEL"] = "SILENT"


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


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while data[pos]:
        pos += 1 + data[pos]
    return pos + 1


def gif_first_frame(data: bytes) -> tuple[bytes, int, tuple[int, int]]:
    """A GIF cut after its first image (the trailer re-added), the number of images of the whole file,
    and the canvas the first image needs (screen and image descriptor together), without decoding.

    Raises IndexError when the block structure runs past the end (truncated) and ValueError when it
    is damaged."""
    width, height, packed = struct.unpack("<HHB", data[6:11])
    pos = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    frames, end = 0, 0
    canvas = (width, height)
    while True:
        block = data[pos]
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image: descriptor, local colour table, LZW code size, sub-blocks
            left, top, w, h, flags = struct.unpack("<HHHHB", data[pos + 1 : pos + 10])
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            pos = _skip_sub_blocks(data, pos + 1)
            frames += 1
            if frames == 1:
                end = pos
                canvas = (max(width, left + w), max(height, top + h))
        elif block == 0x3B:  # trailer
            break
        else:
            raise ValueError(f"unknown GIF block 0x{block:02x}")
    if not frames:
        raise ValueError("no image in the GIF")
    return data[:end] + b";", frames, canvas


# -- what the C decoders print -------------------------------------------------------------------------

_capture_lock = threading.Lock()
_sink: tuple[int, int] | None = None  # (pid, fd): a forked child makes its own
_OUR_LINES = re.compile(r"^(<\d>|\d{4}-\d\d-\d\d[ T]|edge-verify: |Traceback |  File )")
_CORRUPT = re.compile(r"corrupt|premature end|huffman|invalid sos|inconsistent progression|must resync|"
                      r"found marker|bogus", re.IGNORECASE)
_OPENCV_REASON = re.compile(r"error: \(-?\d+:[^)]*\) (.*?)(?: in function .*)?$")


def _capture_sink() -> int | None:
    global _sink
    if _sink is None or _sink[0] != os.getpid():
        try:
            fd = os.memfd_create("edge-verify-decoder", os.MFD_CLOEXEC)
        except (AttributeError, OSError):
            import tempfile

            try:
                with tempfile.TemporaryFile() as f:
                    fd = os.dup(f.fileno())
            except OSError:
                return None
        _sink = (os.getpid(), fd)
    return _sink[1]


@contextmanager
def decoder_messages() -> Iterator[list[str]]:
    """Collect what C libraries print on file descriptor 2 while the block runs (one decode), instead
    of letting it reach stderr. Lines of our own logging (another thread) are passed on to stderr."""
    messages: list[str] = []
    with _capture_lock:
        sink = _capture_sink()
        try:
            saved = os.dup(2) if sink is not None else -1
        except OSError:  # no stderr at all
            saved = -1
        if saved < 0 or sink is None:
            yield messages
            return
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        os.lseek(sink, 0, os.SEEK_SET)
        os.ftruncate(sink, 0)
        os.dup2(sink, 2)
        try:
            yield messages
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            size = os.lseek(sink, 0, os.SEEK_END)
            os.lseek(sink, 0, os.SEEK_SET)
            text = os.read(sink, min(size, 1 << 16)).decode("utf-8", "replace")
            ours = [line for line in text.splitlines() if _OUR_LINES.match(line)]
            if ours:
                os.write(2, ("\n".join(ours) + "\n").encode())
            messages.extend(line.strip() for line in text.splitlines() if line.strip() and line not in ours)


def _reason(line: str) -> str:
    found = _OPENCV_REASON.search(line)
    text = found.group(1) if found else line
    for prefix in ("libpng error: ", "libpng warning: "):
        text = text.removeprefix(prefix)
    return text.strip().rstrip(".")


def _decode(data: bytes, fmt: str, name: str) -> np.ndarray:
    buf = np.frombuffer(data, np.uint8)
    with decoder_messages() as messages:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    for line in messages:
        log.debug("%s: decoder: %s", name, line)
    if image is None:
        detail = f" ({_reason(messages[-1])})" if messages else ""
        raise ImageError(f"{name}: {fmt.upper()} data could not be decoded{detail}: the file is damaged")
    corrupt = [m for m in messages if _CORRUPT.search(m)]
    if corrupt:
        raise ImageError(f"{name}: {fmt.upper()} data is corrupt ({_reason(corrupt[0])}); the decoder would "
                         "fill the missing part with grey: use an undamaged photo")
    return image


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode image bytes to an (H, W, 3) uint8 BGR array, or raise ImageError saying why."""
    if not data:
        raise ImageError(f"{name}: file is empty")
    fmt, size = image_size(data)
    if fmt == "unknown":
        raise ImageError(f"{name}: not an image (JPEG, PNG, BMP, PGM, WebP or GIF)")
    if size is None:
        raise ImageError(f"{name}: {fmt.upper()} header is damaged or truncated")
    if fmt == "gif":  # only the first frame is decoded: pixels x frames decoded = the first frame's canvas
        try:
            data, _, size = gif_first_frame(data)
        except (IndexError, struct.error):
            raise ImageError(f"{name}: GIF file is truncated") from None
        except ValueError as exc:
            raise ImageError(f"{name}: GIF data is damaged ({exc})") from None
    w, h = size
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name}: image is {w}x{h} pixels, too small for a face (min {MIN_SIDE} px a side)")
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name}: image is {w}x{h} pixels, larger than the {MAX_PIXELS // 1_000_000} MP limit")
    if _truncated(fmt, data):
        raise ImageError(f"{name}: {fmt.upper()} file is truncated")
    image = _decode(data, fmt, name)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


# -- files ---------------------------------------------------------------------------------------------

_NOT_REGULAR = ((stat.S_ISDIR, "is a directory, not an image"), (stat.S_ISFIFO, "is a named pipe (FIFO)"),
                (stat.S_ISCHR, "is a character device"), (stat.S_ISBLK, "is a block device"),
                (stat.S_ISSOCK, "is a socket"))


def _check_regular(p: Path, st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    what = next((text for test, text in _NOT_REGULAR if test(st.st_mode)), "is not a regular file")
    if what.startswith("is a directory"):
        raise ImageError(f"{p}: {what}")
    target = f" ({os.path.realpath(p)})" if p.is_symlink() else ""
    raise ImageError(f"{p}: {what}{target}, not an image file: only regular files are read")


def read_file_bytes(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, at most ``limit``, or ImageError with a one-line reason.

    Never blocks and never reads without end: the path is checked before it is opened, then opened
    non-blocking and checked again (``fstat``), so a FIFO, a device (a link to ``/dev/zero``) or a
    socket is refused without reading, and a file larger than ``limit`` is refused."""
    p = Path(path)
    try:
        _check_regular(p, os.stat(p))
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError(f"{p}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        _check_regular(p, st)
        too_big = ImageError(f"{p}: file is larger than the {limit // 1_000_000} MB limit for an image")
        if st.st_size > limit:
            raise too_big
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise too_big
        return b"".join(chunks)
    except OSError as exc:
        raise ImageError(f"{p}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR, or raise ImageError with the reason."""
    return decode_image(read_file_bytes(path), str(Path(path)))
