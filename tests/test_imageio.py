"""Reading the formats people enrol from, and a clear one-line error for everything else."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_verify.errors import ImageError
from edge_verify.imageio import decode_image, image_size, read_image

from .conftest import YALEB, lfw_photo


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
