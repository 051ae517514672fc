"""Liveness (presentation-attack detection) with the bundled int8 models on real NUAA webcam frames:
live faces pass, printed-photo attacks and faces too small to judge do not; FaceVerifier and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_verify.errors import ModelError, PresentationAttackError
from edge_verify.liveness import (
    LIVENESS_DIR,
    LIVENESS_MANIFEST,
    LivenessChecker,
    LivenessSettings,
    crop_box,
    liveness_crop,
    read_manifest,
)
from edge_verify.models import MODEL_DIR, sha256_file

from .conftest import NUAA, REPO

LIVE = [NUAA / "live" / "0002" / "0002_01_00_01_136.jpg", NUAA / "live" / "0002" / "0002_01_00_01_217.jpg"]
ATTACK = [NUAA / "photo_attack" / "0005" / "0005_00_00_01_145.jpg",
          NUAA / "photo_attack" / "0005" / "0005_00_00_01_256.jpg"]


@pytest.fixture(scope="module")
def checker() -> LivenessChecker:
    for p in LIVE + ATTACK:
        if not p.is_file():
            pytest.fail(f"shared data missing: {p} (set EDGE_VERIFY_SHARED)")
    return LivenessChecker(num_threads=1)


@pytest.fixture(scope="module")
def detector() -> Any:
    from edge_verify.detect import FaceDetector

    return FaceDetector()


def _frame(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_crop_box_enlarges_about_the_centre_and_stays_inside() -> None:
    assert crop_box(640, 480, (300, 200, 40, 40), 2.0) == (280, 180, 360, 260)
    # near the left/top edges the box is shifted inside, keeping its size
    left, top, right, bottom = crop_box(640, 480, (0, 0, 40, 40), 2.7)
    assert (left, top) == (0, 0) and right - left == 108 and bottom - top == 108
    # a scale the image cannot hold shrinks to the image (height limits here)
    left, top, right, bottom = crop_box(640, 480, (300, 200, 200, 200), 4.0)
    assert top == 0 and bottom == 479 and right - left == 479
    with pytest.raises(ValueError, match="empty face box"):
        crop_box(640, 480, (1, 1, 0, 10), 2.7)


def test_liveness_crop_is_the_models_input() -> None:
    img = np.zeros((480, 640, 3), np.uint8)
    img[180:260, 280:360] = 200
    crop = liveness_crop(img, (300, 200, 40, 40), 2.0)
    assert crop.shape == (80, 80, 3) and crop.dtype == np.uint8
    assert crop.mean() > 190  # the 2x box is exactly the bright square


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        LivenessSettings(threshold=1.5)
    with pytest.raises(ValueError, match="min_face_px"):
        LivenessSettings(min_face_px=-1)


def test_live_faces_pass_and_printed_photos_do_not(checker: LivenessChecker, detector: Any) -> None:
    for path, expect in [(p, True) for p in LIVE] + [(p, False) for p in ATTACK]:
        img = _frame(path)
        face = detector.detect(img)[0]
        res = checker.check(img, face)
        assert res.live is expect, (path.name, res)
        assert 0.0 <= res.score <= 1.0 and res.threshold == checker.threshold
        if expect:
            assert res.reason is None and res.score >= checker.threshold and not res.attack
            assert res.to_dict() == {"score": round(res.score, 4), "live": True}
        else:
            assert res.reason and "presentation attack" in res.reason
            assert res.attack and not res.too_small and res.to_dict()["reason"] == res.reason
    assert len(checker.models) == 2 and sorted(m.crop_scale for m in checker.models) == [2.7, 4.0]


def test_a_face_too_small_is_never_live(checker: LivenessChecker, detector: Any) -> None:
    img = _frame(LIVE[0])
    size = detector.detect(img)[0].size
    factor = 0.8 * checker.min_face_px / size
    small = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    face = detector.detect(small)[0]
    assert face.size < checker.min_face_px
    res = checker.check(small, face)
    assert not res.live and res.too_small and not res.attack and "too small" in (res.reason or "")
    lenient = LivenessChecker(LivenessSettings(min_face_px=0, threshold=0.0), num_threads=1)
    assert lenient.check(small, face).live and lenient.threshold == 0.0


def test_bundled_manifests_match_their_files() -> None:
    ens = read_manifest()
    assert 0.0 < ens["threshold"] < 1.0 and ens["min_face_px"] >= 32
    assert ens["threshold_source"] != "provisional" and ens["min_face_source"] != "provisional"
    for name in ens["models"]:
        m = json.loads((LIVENESS_DIR / name).read_text())
        assert m["kind"] == "liveness" and m["dtype"] == "int8"
        assert sha256_file(LIVENESS_DIR / m["file"]) == m["sha256"]
        assert m["input"]["crop"]["scale"] in (2.7, 4.0) and m["output"]["live_index"] == 1
        assert m["provenance"]["license"] == "Apache-2.0" and len(m["provenance"]["source_sha256"]) == 64
    notice = (MODEL_DIR / "NOTICE").read_text()
    assert "MiniFASNet" in notice and "Silent-Face-Anti-Spoofing" in notice


def test_a_damaged_liveness_model_is_refused(tmp_path: Path) -> None:
    for p in LIVENESS_DIR.iterdir():
        shutil.copy(p, tmp_path / p.name)
    ens = read_manifest()
    first = json.loads((tmp_path / ens["models"][0]).read_text())["file"]
    data = bytearray((tmp_path / first).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / first).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its manifest"):
        LivenessChecker(manifest=tmp_path / LIVENESS_MANIFEST.name)
    with pytest.raises(ModelError, match="not found"):
        LivenessChecker(manifest=tmp_path / "nope.json")


# -- through FaceVerifier and the CLI ----------------------------------------------------------------


@pytest.fixture()
def fv_live(verifier_factory: Any, state_dir: Path, checker: LivenessChecker) -> Any:
    return verifier_factory(state_dir, liveness=checker)


def test_process_scores_every_encoded_face(fv_live: Any, verifier_factory: Any, state_dir: Path) -> None:
    res = fv_live.process(str(LIVE[0]))
    assert res.faces and all(f.liveness is not None for f in res.faces if f.embedding is not None)
    assert "liveness" in res.timings_ms
    d = res.faces[0].to_dict()
    assert d["liveness"]["live"] is True and 0 < d["liveness"]["score"] <= 1
    off = verifier_factory(state_dir).process(str(LIVE[0]))
    assert off.faces[0].liveness is None and off.faces[0].to_dict()["liveness"] is None
    assert "liveness" not in off.timings_ms


def test_verify_refuses_an_attack_before_matching(fv_live: Any) -> None:
    fv_live.enroll("p5", [str(LIVE[0])])  # enrolment does not require liveness (one photo is enough)
    with pytest.raises(PresentationAttackError, match="presentation attack suspected") as err:
        fv_live.verify("p5", str(ATTACK[0]))
    assert err.value.exit_code == 1 and err.value.liveness is not None and not err.value.liveness.live
    with pytest.raises(PresentationAttackError):
        fv_live.identify(str(ATTACK[1]))


def _ev(*args: str | Path, state: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edge_verify", *map(str, args), "--state-dir", str(state)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)


def test_cli_verify_identify_embed_on_live_and_attack(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert _ev("enroll", "p2", LIVE[0], state=state).returncode == 0
    ok = _ev("verify", "--claim", "p2", LIVE[1], state=state)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = _ev("verify", "--claim", "p2", ATTACK[0], state=state)
    assert bad.returncode == 1 and bad.stderr == ""
    lines = bad.stdout.strip().splitlines()
    assert len(lines) == 1 and "presentation attack suspected" in lines[0] and ATTACK[0].name in lines[0]
    p = _ev("identify", "--json", LIVE[1], ATTACK[1], state=state)
    assert p.returncode == 1
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert rows[0]["person"] == "p2" and rows[1]["accepted"] is False
    assert rows[1]["liveness"]["live"] is False and "presentation attack" in rows[1]["reason"]
    assert rows[1]["tau"] == rows[0]["tau"]  # the tau the level decides with, an attack or not
    claims = [json.loads(_ev("verify", "--json", "--claim", "p2", img, state=state).stdout)
              for img in (LIVE[1], ATTACK[0])]
    assert claims[1]["accepted"] is False and claims[1]["tau"] == claims[0]["tau"]
    p = _ev("embed", LIVE[1], ATTACK[1], state=state)
    faces = [json.loads(line)["faces"][0] for line in p.stdout.splitlines()]
    assert [f["liveness"]["live"] for f in faces] == [True, False]
    p = _ev("verify", "--claim", "p2", ATTACK[0], "--no-liveness", state=state)
    assert p.returncode in (0, 1) and "presentation attack" not in p.stdout
    p = _ev("verify", "--claim", "p2", LIVE[1], "--liveness-threshold", "2", state=state)
    assert p.returncode == 2 and p.stderr.startswith("edge-verify: error:") and "threshold" in p.stderr
