"""Reading the formats people enrol from, and a clear one-line error for everything else."""

from __future__ import annotations

import os
import resource
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_verify.errors import ImageError
from edge_verify.imageio import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    decode_image,
    decoder_messages,
    gif_first_frame,
    image_size,
    read_file_bytes,
    read_image,
)

from .conftest import REPO, YALEB, lfw_photo


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.imread(str(lfw_photo("Tony_Blair", 18)))


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp", ".pgm", ".ppm"])
def test_reads_common_formats(tmp_path: Path, photo: np.ndarray, ext: str) -> None:
    path = tmp_path / f"face{ext}"
    img = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY) if ext == ".pgm" else photo
    assert cv2.imwrite(str(path), img)
    out = read_image(path)
    assert out.shape == (150, 150, 3) and out.dtype == np.uint8
    assert image_size(path.read_bytes())[1] == (150, 150)


def test_reads_first_frame_of_gif(tmp_path: Path, photo: np.ndarray) -> None:
    path = tmp_path / "face.gif"
    ok = cv2.imwritemulti(str(path), [photo, photo[::-1].copy()]) if hasattr(cv2, "imwritemulti") else False
    if not ok or not path.exists():
        pytest.skip("this OpenCV cannot write GIF to make the fixture")
    out = read_image(path)
    assert out.shape == (150, 150, 3)


def test_grey_pgm_becomes_three_channels() -> None:
    yale = sorted((YALEB / "yaleB12").glob("*.pgm"))
    if not yale:
        pytest.skip("extended_yaleb not present")
    assert read_image(yale[0]).shape[2] == 3


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("hello, I am text"), "not an image"),
        (lambda p: p.write_bytes(lfw_photo("Tony_Blair", 18).read_bytes()[:3000]), "truncated"),
        (lambda p: p.mkdir(), "directory"),
    ],
)
def test_bad_files_give_a_one_line_reason(tmp_path: Path, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_tiny_and_huge_images_are_refused(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ImageError, match="1x1 pixels, too small"):
        read_image(tiny)
    # a 20000x20000 PNG header: refused from its header, before any decoding
    small = cv2.imencode(".png", np.zeros((20, 20), np.uint8))[1].tobytes()
    huge = small[:16] + (20000).to_bytes(4, "big") * 2 + small[24:]
    with pytest.raises(ImageError, match="20000x20000 pixels, larger than"):
        decode_image(huge, "huge.png")


# -- hostile files: FIFOs, devices, bombs (each run in a child with a memory limit and a timeout, so that a
# regression fails instead of hanging the suite or filling the machine's memory) -----------------------

def run_limited(code: str, *args: str, timeout: float = 60,
                address_space: int = 2 << 30) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python limited to ``address_space`` bytes of memory and ``timeout`` s."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, preexec_fn=limit)


READ = (
    "import sys\n"
    "from edge_verify.errors import ImageError\n"
    "from edge_verify.imageio import read_image\n"
    "try:\n"
    "    read_image(sys.argv[1])\n"
    "except ImageError as e:\n"
    "    print(e)\n"
)


@pytest.mark.parametrize("kind", ["fifo", "fifo-with-writer", "dev-zero-link", "socket"])
def test_pipes_and_devices_are_refused_without_reading(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "face.jpg"
    writer = None
    if kind.startswith("fifo"):
        os.mkfifo(path)
        if kind == "fifo-with-writer":  # a writer that never closes: a blocking read would never end
            writer = os.open(path, os.O_RDWR | os.O_NONBLOCK)
            os.write(writer, lfw_photo("Tony_Blair", 18).read_bytes()[:4096])
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    else:
        path.symlink_to("/dev/zero")
    try:
        p = run_limited(READ, str(path), timeout=30)
    finally:
        if writer is not None:
            os.close(writer)
    assert p.returncode == 0 and p.stderr == "", p.stderr[-2000:]
    expected = {"fifo": "named pipe", "fifo-with-writer": "named pipe", "socket": "socket",
                "dev-zero-link": "character device (/dev/zero)"}[kind]
    assert expected in p.stdout and "not an image file" in p.stdout
    assert len(p.stdout.strip().splitlines()) == 1


def test_file_size_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff\xd8" + b"\0" * 4096)
    assert read_file_bytes(path, limit=5000) == path.read_bytes()
    with pytest.raises(ImageError, match="larger than the 0 MB limit"):
        read_file_bytes(path, limit=4000)
    assert MAX_FILE_BYTES >= 4 * MAX_PIXELS  # a 50 MP uncompressed BMP fits


def gif_bomb(width: int, height: int, frames: int) -> bytes:
    """A tiny GIF whose every frame is a 1x1 image on a width x height canvas (a decompression bomb:
    a decoder that renders every frame allocates frames x width x height pixels)."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff")
    for _ in range(frames):
        out += b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # graphic control extension: 10 ms
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)  # a 1x1 image at (0, 0)
        out += b"\x02\x02\x44\x01\x00"  # LZW: clear, pixel 0, end
    return bytes(out + b"\x3b")


def test_gif_first_frame_is_cut_without_decoding() -> None:
    bomb = gif_bomb(7000, 7000, 40)
    assert len(bomb) < 1000
    first, frames, canvas = gif_first_frame(bomb)
    assert frames == 40 and canvas == (7000, 7000)
    assert gif_first_frame(first)[1] == 1
    with pytest.raises(ImageError, match="GIF file is truncated"):
        decode_image(bomb[:40], "cut.gif")


def test_gif_bomb_decodes_only_its_first_frame(tmp_path: Path) -> None:
    """3000x3000 x 40 frames: decoding every frame takes ~2 GB; the first frame alone, ~100 MB."""
    path = tmp_path / "bomb.gif"
    path.write_bytes(gif_bomb(3000, 3000, 40))
    code = (
        "import resource, sys\n"
        "from edge_verify.imageio import read_image\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "image = read_image(sys.argv[1])\n"
        "print(image.shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    p = run_limited(code, str(path), timeout=120, address_space=4 << 30)
    assert p.returncode == 0, p.stderr[-2000:]
    shape, grown_mib = p.stdout.rsplit(")", 1)
    assert shape == "(3000, 3000, 3"
    assert int(grown_mib) < 600, f"decoding grew the process by {grown_mib} MiB"


# -- what the C decoders print ---------------------------------------------------------------------------

def png_with_chunk(image: np.ndarray, chunk_type: bytes, payload: bytes) -> bytes:
    png = cv2.imencode(".png", image)[1].tobytes()
    crc = zlib.crc32(chunk_type + payload) & 0xFFFFFFFF
    chunk = struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", crc)
    return png[:33] + chunk + png[33:]  # after IHDR


def test_decoder_warnings_do_not_reach_stderr(photo: np.ndarray, capfd: pytest.CaptureFixture[str]) -> None:
    noisy = png_with_chunk(photo, b"iCCP", b"bogus\0\0" + zlib.compress(b"x" * 200))  # libpng: iCCP too short
    assert decode_image(noisy, "noisy.png").shape == (150, 150, 3)
    bmp = cv2.imencode(".bmp", photo)[1].tobytes()
    with pytest.raises(ImageError, match=r"cut\.bmp: BMP data could not be decoded"):
        decode_image(bmp[: len(bmp) // 2], "cut.bmp")  # OpenCV: [ERROR] ... Unexpected end of input stream
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_with_end_marker_is_refused(photo: np.ndarray, progressive: bool,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """Cut in half, then FFD9 re-appended: libjpeg fills the missing half with grey and only warns."""
    jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes()
    with pytest.raises(ImageError, match=r"half.jpg: JPEG data is corrupt \(.*premature end"):
        decode_image(jpeg[: len(jpeg) // 2] + b"\xff\xd9", "half.jpg")
    assert capfd.readouterr().err == ""
    assert decode_image(jpeg, "whole.jpg").shape == (150, 150, 3)  # the whole file still decodes


def test_other_threads_logging_survives_the_capture(photo: np.ndarray, capfd: pytest.CaptureFixture[str]) -> None:
    with decoder_messages() as messages:
        os.write(2, b"2026-01-01 00:00:00 INFO edge_verify.daemon: still here\nlibpng warning: noise\n")
    assert messages == ["libpng warning: noise"]
    assert capfd.readouterr().err == "2026-01-01 00:00:00 INFO edge_verify.daemon: still here\n"
