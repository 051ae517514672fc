"""converter.evaluate on real LFW / Extended Yale B images and the real models."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter import evaluate as ev
from converter import lfw, metrics
from converter.faces import pick_subject

from .conftest import LFW, REPO, SFACE_ONNX
from .conftest import YALEB as YALE

MODEL = REPO / "edge_verify" / "models" / "sface_int8.tflite"

needs_lfw = pytest.mark.skipif(not (LFW / "pairs.txt").is_file(), reason="LFW not found in shared/data")
needs_model = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL.name} not built yet")
# the ROC plot is converter tooling (the `convert` extra), absent from a runtime-only install such as the
# emulated aarch64 one of `make arm-check`
from tests.conftest import needs_matplotlib  # noqa: E402


def mini_lfw(root: Path, per_fold: int = 6, folds: int = 2) -> Path:
    """An LFW-shaped data set: the first ``per_fold`` same and different pairs of the first folds."""
    lines = (LFW / "pairs.txt").read_text().splitlines()[1:]
    out = [f"{folds}\t{per_fold}"]
    for f in range(folds):
        block = lines[f * 600 : (f + 1) * 600]
        out += block[:per_fold] + block[300 : 300 + per_fold]
    (root / "images").mkdir(parents=True)
    (root / "pairs.txt").write_text("\n".join(out) + "\n")
    names: set[str] = set()
    for row in out[1:]:
        w = row.split()
        refs = [(w[0], w[1]), (w[0], w[2])] if len(w) == 3 else [(w[0], w[1]), (w[2], w[3])]
        for name, number in refs:
            names.add(lfw.image_path(Path(), name, int(number)).name)
    for name in names:
        (root / "images" / name).symlink_to(LFW / "images" / name)
    return root


@needs_lfw
def test_lfw_pairs_protocol() -> None:
    pairs = ev.read_lfw_pairs(LFW)
    assert len(pairs) == 6000
    assert int(pairs.same.sum()) == 3000
    assert np.bincount(pairs.folds).tolist() == [0] + [600] * 10
    assert len(pairs.paths) == 7701
    # the first line after the header is 'Abel_Pacheco 1 4'
    assert pairs.paths[pairs.first[0]].name == "Abel_Pacheco_0001.jpg"
    assert pairs.paths[pairs.second[0]].name == "Abel_Pacheco_0004.jpg"
    part = ev.read_lfw_pairs(LFW, [6, 7, 8, 9, 10])
    assert len(part) == 3000 and set(part.folds.tolist()) == {6, 7, 8, 9, 10}
    # no person appears in two folds
    fold_of: dict[str, set[int]] = {}
    for a, b, f in zip(pairs.first, pairs.second, pairs.folds, strict=True):
        for i in (a, b):
            fold_of.setdefault(pairs.persons[i], set()).add(int(f))
    assert all(len(v) == 1 for v in fold_of.values())


def test_folds_option() -> None:
    assert ev.folds_arg("6-10") == [6, 7, 8, 9, 10]
    assert ev.folds_arg("1,3,5-6") == [1, 3, 5, 6]
    for bad in ("0", "5-3", "a", "1-"):
        with pytest.raises(argparse.ArgumentTypeError, match="fold"):
            ev.folds_arg(bad)


@needs_lfw
def test_bad_pairs_files(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "pairs.txt").write_text("1\t1\nA 1 2\n")
    with pytest.raises(ev.EvaluateError, match="expected 1 x 2 x 1 pairs"):
        ev.read_lfw_pairs(tmp_path)
    (tmp_path / "pairs.txt").write_text("1\t1\nA 1 2\nB 1 C\n")
    with pytest.raises(ev.EvaluateError, match=r"pairs.txt:3: expected 'name1 i name2 j'"):
        ev.read_lfw_pairs(tmp_path)
    (tmp_path / "pairs.txt").write_text("1\t1\nA 1 2\nB 1 C 2\n")
    with pytest.raises(ev.EvaluateError, match=r"4 images named .* are missing"):
        ev.read_lfw_pairs(tmp_path)
    with pytest.raises(ev.EvaluateError, match="no fold 2"):
        mini = mini_lfw(tmp_path / "mini", per_fold=2, folds=1)
        ev.read_lfw_pairs(mini, [2])


def test_people_pairs_are_complete_and_person_disjoint() -> None:
    persons = ["a"] * 3 + ["b"] * 2 + ["c"] * 2 + ["d"] * 1
    paths = [Path(f"{p}{i}.pgm") for i, p in enumerate(persons)]
    pairs = ev.people_pairs(paths, persons, k=2, seed=3)
    assert int(pairs.same.sum()) == 3 + 1 + 1  # C(3,2) + C(2,2) + C(2,2)
    assert len(pairs) == 8 * 7 // 2
    who = np.array(persons)
    assert np.all((who[pairs.first] == who[pairs.second]) == pairs.same)
    fold_of = metrics.person_folds(persons, 2, seed=3)
    for f, a, b in zip(pairs.folds, pairs.first, pairs.second, strict=True):
        if f:  # a pair in fold f has both people in that fold
            assert fold_of[persons[a]] + 1 == fold_of[persons[b]] + 1 == f
        else:
            assert fold_of[persons[a]] != fold_of[persons[b]]
    assert np.all(pairs.folds[pairs.same] > 0)
    sampled = ev.people_pairs(paths, persons, k=2, impostors=10, seed=3)
    assert int((~sampled.same).sum()) == 10 and int(sampled.same.sum()) == 5


@needs_lfw
def test_several_faces_takes_the_one_nearest_the_centre() -> None:
    from edge_verify.align import align_face
    from edge_verify.detect import FaceDetector
    from edge_verify.imageio import read_image

    a = read_image(LFW / "images" / "Abel_Pacheco_0001.jpg")
    b = read_image(LFW / "images" / "Akhmed_Zakayev_0001.jpg")
    canvas = np.full((300, 600, 3), 120, np.uint8)
    canvas[75:225, 20:170] = a  # off centre
    canvas[75:225, 225:375] = b  # centred
    det = FaceDetector()
    faces = det.detect(canvas)
    assert len(faces) >= 2
    chosen = pick_subject(faces, canvas.shape)
    x, _, w, _ = chosen.bbox
    assert 225 < x + w / 2 < 375
    pipe = ev.ProductPipeline(lambda crops: np.zeros((len(crops), 4), np.float32), "dummy", det)
    crop, how = pipe.crop(canvas)
    assert how == "several_faces"
    assert crop is not None and np.array_equal(crop, align_face(canvas, chosen.landmarks))


def test_no_face_falls_back_to_the_centre_or_is_skipped() -> None:
    from edge_verify.detect import FaceDetector

    blank = np.full((150, 150, 3), 90, np.uint8)
    calls: list[int] = []

    def embed(crops: np.ndarray) -> np.ndarray:
        calls.append(len(crops))
        return np.ones((len(crops), 4), np.float32)

    det = FaceDetector()
    v, how = ev.ProductPipeline(embed, "t", det, no_face="centre").represent([blank, blank])
    assert how == ["no_face", "no_face"] and np.allclose(v, 0.5)
    v, how = ev.ProductPipeline(embed, "t", det, no_face="skip").represent([blank])
    assert how == ["no_face"] and v.shape == (1, 0)
    assert calls == [2]


@needs_lfw
@needs_matplotlib
@pytest.mark.skipif(not SFACE_ONNX.is_file(), reason="OpenCV SFace model not in shared/models")
def test_evaluate_with_opencv_sface_encoder(tmp_path: Path) -> None:
    """The evaluation maths end to end on real faces, with OpenCV's SFace as the encoder."""
    rec = cv2.FaceRecognizerSF.create(str(SFACE_ONNX), "")
    pipe = ev.ProductPipeline(lambda crops: np.stack([rec.feature(c).ravel() for c in crops]), "opencv-sface")
    pairs = ev.read_lfw_pairs(mini_lfw(tmp_path / "lfw", per_fold=8))
    report, d = ev.evaluate(pipe, pairs, 1e-2, progress=False)
    assert report["pairs"] == {"genuine": 16, "impostor": 16, "left_out": 0}
    assert report["accuracy"]["mean"] >= 0.9 and len(report["accuracy"]["per_fold"]) == 2
    assert report["auc"] > 0.95
    assert 0.8 < report["best_threshold"]["tau"] < 1.8
    assert report["detection"]["images"] == len(pairs.paths)
    assert np.all((d >= 0) & (d <= 4))
    ev.plot_roc(d, pairs.same, tmp_path / "roc.png", "test")
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"


@needs_lfw
@needs_model
@needs_matplotlib
def test_cli_on_mini_lfw_updates_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / MODEL.name
    shutil.copy(MODEL, model)
    shutil.copy(MODEL.with_suffix(".json"), model.with_suffix(".json"))
    before = json.loads(model.with_suffix(".json").read_text())
    data = mini_lfw(tmp_path / "lfw", per_fold=10)
    args = [
        str(model),
        "--data",
        str(data),
        "--far",
        "0.1",
        "--json",
        str(tmp_path / "r.json"),
        "--plot",
        str(tmp_path / "roc.png"),
        "--update-manifest",
        "--quiet",
    ]
    assert ev.main(args) == 0
    out = capsys.readouterr().out
    assert "2-fold accuracy" in out and "TAR @ FAR 0.001" in out and "EER" in out and "tau @ FAR 0.1" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["pairs"]["genuine"] == 20 and report["accuracy"]["mean"] > 0.85
    after = json.loads(model.with_suffix(".json").read_text())
    assert after["tau"] == pytest.approx(report["tau"]["value"], abs=1e-6) and after["tau_far"] == 0.1
    assert "LFW View 2, folds 1-2" in after["tau_source"]
    assert {k: v for k, v in after.items() if not k.startswith("tau")} == {
        k: v for k, v in before.items() if not k.startswith("tau")
    }
    assert (tmp_path / "roc.png").stat().st_size > 1000


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ev.main([str(tmp_path / "none.tflite"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model not found") and err.count("\n") == 1
    assert ev.main([str(tmp_path / "m.keras"), "--update-manifest"]) == 2
    assert "needs a .tflite" in capsys.readouterr().err


@needs_model
def test_evaluator_does_not_import_tensorflow_for_tflite(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys, converter.evaluate as ev; fn, r = ev.tflite_embedder(ev.Path(sys.argv[1]), 1); "
        "import numpy as np; fn(np.zeros((1, 112, 112, 3), np.uint8)); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(MODEL)], cwd=REPO, check=True)


@pytest.mark.slow
@needs_model
@pytest.mark.skipif(not YALE.is_dir(), reason="Extended Yale B not found in shared/data")
def test_people_dir_mode_on_yale_subset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for person in sorted(YALE.iterdir())[:4]:
        (tmp_path / person.name).mkdir()
        for img in sorted(person.glob("*.pgm"))[:8]:
            (tmp_path / person.name / img.name).symlink_to(img)
    assert (
        ev.main(
            [
                str(MODEL),
                "--people-dir",
                str(tmp_path),
                "--k",
                "2",
                "--json",
                str(tmp_path / "y.json"),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "y.json").read_text())
    assert report["pairs"]["genuine"] == 4 * 28 and report["pairs"]["impostor"] == 6 * 64
    assert report["detection"]["images"] == 32
    assert "person-disjoint" in report["protocol"] and "accuracy" in report
