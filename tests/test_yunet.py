"""YuNet on LiteRT (edge_verify.yunet) against cv2.FaceDetectorYN on real photos; the backend switch
and the fallback to OpenCV when the LiteRT model is missing or damaged."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.scenes import iou
from edge_verify import models
from edge_verify.detect import Face, FaceDetector
from edge_verify.errors import ModelError
from edge_verify.imageio import read_image
from edge_verify.yunet import decode, nms, padded_size

from .conftest import LFW, lfw_photo


@pytest.fixture(scope="module")
def litert() -> FaceDetector:
    return FaceDetector(backend="litert", num_threads=1)


@pytest.fixture(scope="module")
def opencv() -> FaceDetector:
    return FaceDetector(backend="opencv")


def assert_same_faces(got: list[Face], ref: list[Face]) -> None:
    """One-to-one in the same order (largest first): boxes, scores and each of the 5 landmarks."""
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert iou(g.bbox, r.bbox) > 0.99
        assert abs(g.score - r.score) < 1e-3
        # the same point in the same slot: right eye, left eye, nose, right and left mouth corner
        assert np.abs(g.landmarks - r.landmarks).max() < 0.02 * r.bbox[2]


def lfw_spread(n: int) -> list[Path]:
    paths = sorted((LFW / "images").glob("*.jpg"))
    if not paths:
        pytest.fail(f"shared data missing: {LFW}")
    return paths[:: len(paths) // n][:n]


def test_litert_finds_the_same_faces_as_opencv_on_lfw(litert: FaceDetector, opencv: FaceDetector) -> None:
    for p in lfw_spread(24):
        img = read_image(p)
        got, ref = litert.detect(img), opencv.detect(img)
        assert ref, p.name
        assert_same_faces(got, ref)
        eyes = got[0].landmarks
        assert eyes[0, 0] < eyes[1, 0]  # the subject's right eye is on the viewer's left


def test_litert_matches_opencv_on_a_multi_face_scene(litert: FaceDetector, opencv: FaceDetector) -> None:
    """Six LFW faces of several sizes on one 640x480 frame, and a real group photo of LFW."""
    rng = np.random.default_rng(3)
    frame = np.clip(110 + rng.integers(-12, 13, (480, 640, 3)), 0, 255).astype(np.uint8)
    people = [("Tony_Blair", 32), ("Jennifer_Aniston", 1), ("David_Beckham", 1), ("Serena_Williams", 1),
              ("Hans_Blix", 7), ("Wen_Jiabao", 1)]
    for k, ((name, n), side) in enumerate(zip(people, (200, 160, 130, 110, 90, 70), strict=True)):
        photo = cv2.resize(read_image(lfw_photo(name, n)), (side, side), interpolation=cv2.INTER_AREA)
        x, y = 10 + (k % 3) * 210, 10 + (k // 3) * 240
        frame[y:y + side, x:x + side] = photo
    ref = opencv.detect(frame)
    assert len(ref) == 6
    assert_same_faces(litert.detect(frame), ref)
    for d in (litert, opencv):  # the same frame at the daemon's 320 px
        d.max_side = 320
    try:
        assert_same_faces(litert.detect(frame), opencv.detect(frame))
    finally:
        litert.max_side = opencv.max_side = 640
    group = read_image(lfw_photo("Goldie_Hawn", 2))  # an LFW photo with three people
    ref = opencv.detect(group)
    assert len(ref) == 3
    assert_same_faces(litert.detect(group), ref)


def test_images_of_several_sizes_in_turn(litert: FaceDetector, opencv: FaceDetector) -> None:
    """The interpreter is resized to each padded size (16:9, 4:3, square, portrait) and back."""
    photo = read_image(lfw_photo("Tony_Blair", 32))
    for w, h in ((320, 180), (150, 150), (640, 480), (200, 300), (320, 180)):
        img = np.zeros((h, w, 3), np.uint8)
        s = min(w, h, 150)
        img[:s, :s] = cv2.resize(photo, (s, s))
        assert_same_faces(litert.detect(img), opencv.detect(img))
    assert padded_size(320, 180) == (320, 192) and padded_size(150, 150) == (160, 160)


def test_an_empty_frame_has_no_face(litert: FaceDetector) -> None:
    assert litert.detect(np.zeros((180, 320, 3), np.uint8)) == []


def test_nms_keeps_what_opencv_keeps() -> None:
    """Random overlapping boxes: the same survivors as cv2.dnn.NMSBoxes, best first."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 40
        faces = np.zeros((n, 15), np.float32)
        faces[:, :2] = rng.uniform(0, 100, (n, 2))
        faces[:, 2:4] = rng.uniform(10, 60, (n, 2))
        faces[:, 14] = rng.uniform(0.5, 1.0, n)
        kept = nms(faces, 0.6, 0.3, 50)
        boxes = [tuple(int(v) for v in f[:4]) for f in faces]
        idx = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), 0.6, 0.3, top_k=50)
        assert np.array_equal(kept, faces[np.asarray(idx).reshape(-1)])


def test_decode_places_boxes_and_landmarks_on_the_anchor_grid() -> None:
    """One confident anchor of stride 16 at column 3, row 2 of a 64x64 input."""
    outs = {}
    for s in (8, 16, 32):
        n = (64 // s) ** 2
        outs |= {f"cls_{s}": np.zeros((1, n, 1)), f"obj_{s}": np.zeros((1, n, 1)),
                 f"bbox_{s}": np.zeros((1, n, 4)), f"kps_{s}": np.zeros((1, n, 10))}
    i = 2 * 4 + 3
    outs["cls_16"][0, i], outs["obj_16"][0, i] = 0.81, 1.0
    outs["bbox_16"][0, i] = [0.5, 0.25, np.log(2.0), 0.0]
    outs["kps_16"][0, i] = [-0.5, 0, 0.5, 0, 0, 0.5, -0.25, 1, 0.25, 1]
    faces = decode(outs, 64, 64, 0.6)
    assert faces.shape == (1, 15)
    x, y, w, h = faces[0, :4]
    assert (x + w / 2, y + h / 2, w, h) == pytest.approx(((3 + 0.5) * 16, (2 + 0.25) * 16, 32, 16))
    assert faces[0, 4:6] == pytest.approx([2.5 * 16, 2 * 16])
    assert faces[0, 14] == pytest.approx(0.9)


def test_backend_switch(litert: FaceDetector, opencv: FaceDetector) -> None:
    assert litert.backend == "litert" and litert.model_path.suffix == ".tflite"
    assert opencv.backend == "opencv" and opencv.model_path.suffix == ".onnx"
    assert FaceDetector().backend == "litert"  # auto: LiteRT when its model loads
    assert FaceDetector(models.MODEL_DIR / models.DETECTOR_FILE).backend == "opencv"  # by the file given
    with pytest.raises(ModelError, match="unknown detector backend 'tpu'"):
        FaceDetector(backend="tpu")  # type: ignore[arg-type]


@pytest.fixture()
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the bundled detector files, standing in for the package's model directory."""
    for name in (models.DETECTOR_FILE, models.DETECTOR_MANIFEST, "yunet.tflite"):
        shutil.copy(models.MODEL_DIR / name, tmp_path / name)
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path)
    return tmp_path


def _fallback(caplog: pytest.LogCaptureFixture, match: str) -> None:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge_verify.detect"):
        det = FaceDetector()
    assert det.backend == "opencv"
    assert det.detect(read_image(lfw_photo("Tony_Blair", 32)))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "using OpenCV" in warnings[0] and match in warnings[0]
    with pytest.raises(ModelError, match=match):
        FaceDetector(backend="litert")


def test_fallback_when_the_litert_model_is_missing(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (model_dir / "yunet.tflite").unlink()
    _fallback(caplog, "model file not found")


def test_fallback_when_the_litert_model_is_damaged(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = model_dir / "yunet.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    _fallback(caplog, "does not match its manifest")


def test_fallback_when_the_litert_model_cannot_load(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Garbage whose sha256 the manifest holds: the interpreter refuses it, in one line."""
    model = model_dir / "yunet.tflite"
    model.write_bytes(b"not a flatbuffer" * 64)
    manifest = json.loads((model_dir / models.DETECTOR_MANIFEST).read_text())
    manifest["sha256"] = models.sha256_file(model)
    (model_dir / models.DETECTOR_MANIFEST).write_text(json.dumps(manifest))
    _fallback(caplog, "cannot load face detector")


def test_an_encoder_manifest_is_not_a_detector() -> None:
    with pytest.raises(ModelError, match="not a face detector manifest"):
        FaceDetector(models.MODEL_DIR / "sface_int8.json", backend="litert")


def test_the_bundled_detector_manifest() -> None:
    m = models.resolve_detector()
    assert m.data["kind"] == "face_detector" and m.data["dtype"] == "float32"
    assert m.data["xnnpack"]["partitions"] == 1
    assert m.data["provenance"]["license"].startswith("MIT")
    assert m.name not in models.bundled_manifests()  # not offered as an encoder
    assert "yunet.tflite" in (models.MODEL_DIR / "NOTICE").read_text()
