"""All-pairs and open-set evaluation on a tiny real-photo set, through the product (fast smoke tests;
the full LFW runs are benchmarks: docs/EVALUATION.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from converter import allpairs, openset
from converter.encodings import encode_dataset, frame_rng, load_dataset, perturb
from edge_verify.imageio import read_image
from edge_verify.match import OperatingPoints

from .conftest import REPO, lfw_photo, needs_matplotlib

MODEL = REPO / "edge_verify" / "models" / "sface_int8.tflite"

PEOPLE = {"Colin_Powell": (40, 49, 71), "Hans_Blix": (7, 8, 9), "Jennifer_Garner": (1, 3, 4),
          "George_W_Bush": (7, 16, 65)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("people")
    for name, numbers in PEOPLE.items():
        (root / name).mkdir()
        for i in numbers:
            (root / name / f"{i}.jpg").symlink_to(lfw_photo(name, i))
    return root


def test_all_pairs_counts_and_operating_points(tiny: Path, tmp_path: Path) -> None:
    data = load_dataset(tiny)
    assert data.people == sorted(PEOPLE) and len(data.paths) == 12
    cache = tmp_path / "enc.npz"
    enc = encode_dataset(data, cache, progress=False)
    assert enc.found.all() and np.allclose(np.linalg.norm(enc.vectors, axis=1), 1.0, atol=1e-4)
    again = encode_dataset(data, cache, progress=False, reader=lambda p: pytest.fail("cache not used"))
    np.testing.assert_array_equal(again.vectors, enc.vectors)
    person, people = data.person_index()
    pd = allpairs.all_pairs(enc.vectors, person, people)
    assert pd.genuine.size == 4 * 3 and pd.n_impostor == 66 - 12
    assert np.all(np.diff(pd.impostor) >= 0) and pd.genuine.mean() < pd.impostor.mean()
    r = allpairs.report(pd, fmrs=(0.1, 0.02), reps=20, check_taus=[1.3])
    p10, p2 = r["points"]
    assert p10["impostor_pairs_under_tau"] == 5 and p2["impostor_pairs_under_tau"] == 1  # floor(fmr * 54)
    assert p10["tau"] >= p2["tau"] and p10["fnmr"] <= p2["fnmr"]
    lo, hi = p10["fnmr_ci95"]
    assert 0.0 <= lo <= hi <= 1.0
    rows = allpairs.manifest_points(pd, (0.1, 0.02))
    assert [row["fmr"] for row in rows] == [0.1, 0.02] and rows[0]["tau"] >= rows[1]["tau"]


@needs_matplotlib
def test_evaluate_all_pairs_cli_writes_operating_points(tiny: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from converter import evaluate

    model = tmp_path / MODEL.name
    shutil.copy(MODEL, model)
    shutil.copy(MODEL.with_suffix(".json"), model.with_suffix(".json"))
    before = json.loads(model.with_suffix(".json").read_text())
    args = [str(model), "--all-pairs", "--people-dir", str(tiny), "--cache", str(tmp_path / "c.npz"), "--far", "0.1",
            "--bootstrap", "10", "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "det.png"),
            "--update-manifest", "--quiet"]
    assert evaluate.main(args) == 0
    out = capsys.readouterr().out
    assert "12 images (0 left out), 12 genuine and 54 impostor pairs" in out and "wrote tau" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [p["fmr"] for p in report["as_published"]["points"]] == [0.1, 1e-3, 1e-4, 1e-5, 1e-6]
    gated = report["quality_gated"]
    assert gated["images"] + gated["images_left_out"] == 12 and "aliases_merged" not in report
    after = json.loads(model.with_suffix(".json").read_text())
    assert after["tau"] == pytest.approx(report["as_published"]["points"][0]["tau"], abs=1e-6)
    assert after["tau_far"] == 0.1
    assert [p["fmr"] for p in after["operating_points"]] == [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    assert OperatingPoints.from_manifest(after).fmr == (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    changed = {"tau", "tau_far", "tau_source", "operating_points", "operating_points_source"}
    assert {k: v for k, v in after.items() if k not in changed} == {k: v for k, v in before.items() if k not in changed}
    assert (tmp_path / "det.png").read_bytes()[:4] == b"\x89PNG"
    assert evaluate.main([str(model), "--all-pairs", "--flip", "--quiet"]) == 2
    assert "run the product itself" in capsys.readouterr().err


def test_open_set_on_real_photos(tiny: Path) -> None:
    data = load_dataset(tiny)
    enc = encode_dataset(data, None, progress=False)
    pool = openset.pool_of(data, enc)
    res = openset.evaluate_config(pool, size=2, enrol=1, draws=3, seed=0, k=2, n=3, margin=0.0,
                                  fusions=("encoding",), use_mean=False)
    frame = res["rules"]["frame"]
    assert frame["mated_searches"] == 3 * 2 * 2 and frame["non_mated_searches"] == 3 * 2 * 3
    assert [p["fpir"] for p in frame["points"]] == list(openset.FPIRS)
    # these four people are easy: every mated photo names its own person before any stranger names anyone
    assert frame["points"][0]["fnir"] == 0.0
    assert "visit_photos_encoding" in res["rules"]


def test_galleries_are_enrolled_as_the_product_enrols(tiny: Path) -> None:
    """Open-set and door-simulation galleries are made from flip-averaged encodings (what
    ``FaceVerifier.enroll`` stores), and probed with plain ones (what the daemon makes of a frame)."""
    from edge_verify.match import squared_l2

    data = load_dataset(tiny)
    plain = encode_dataset(data, None, progress=False)
    flipped = encode_dataset(data, None, progress=False, flip=True)
    assert float(squared_l2(plain.vectors[0], flipped.vectors[:1])[0]) > 1e-3  # one photo, two encodings
    pool = openset.pool_of(data, plain, enrol=flipped)
    assert pool.templates_from is flipped.vectors and openset.pool_of(data, plain).templates_from is plain.vectors
    draw = openset.draw_gallery(pool, 3, 1, np.random.default_rng(0), use_mean=False)
    for t in draw.templates.vectors:
        nearest_flipped = float(np.nanmin(squared_l2(t, flipped.vectors)))
        assert nearest_flipped < 3e-3 and nearest_flipped < float(np.nanmin(squared_l2(t, plain.vectors)))


def test_fnir_at_fpir() -> None:
    non_mated = np.array([0.5, 0.9, 1.2, np.inf, np.inf, np.inf, np.inf, np.inf, np.inf, np.inf])
    mated = np.array([0.3, 0.6, 1.0, np.inf])
    row = openset.fnir_at_fpir(mated, non_mated, (0.1,))[0]
    assert row["tau"] == 0.9 and row["fnir"] == 0.5 and row["non_mated_under_tau"] == 1


def test_perturbed_frames_are_seeded() -> None:
    image = read_image(lfw_photo("Hans_Blix", 7))
    a, b = perturb(image, frame_rng(0, 1, 2)), perturb(image, frame_rng(0, 1, 2))
    assert a.shape == image.shape and np.array_equal(a, b)
    assert not np.array_equal(a, perturb(image, frame_rng(0, 1, 3)))
