"""A tiny encoder trains for a few steps on real faces: the loss falls, the encodings spread, and a
run stopped after one epoch resumes where it stopped. Full training runs are not in CI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from converter.train import main

from .test_data import people_tree

PEOPLE = (
    "Tony_Blair",
    "Silvio_Berlusconi",
    "Jean_Chretien",
    "Wen_Jiabao",
    "Hans_Blix",
    "David_Beckham",
    "Arnold_Schwarzenegger",
    "Tiger_Woods",
)


@pytest.mark.slow
def test_tiny_model_learns_and_resumes(tmp_path: Path) -> None:
    data = people_tree(tmp_path / "people", PEOPLE, 6)
    out = tmp_path / "tiny.keras"
    common = [
        "--data",
        str(data),
        "--arch",
        "tiny",
        "--P",
        "4",
        "--K",
        "4",
        "--steps",
        "12",
        "--lr",
        "1e-3",
        # the tiny net cannot learn augmented faces in 36 steps (measured: the probe loss wanders around
        # its start on 3 seeds); unaugmented, it fits the 48 faces on every seed, which is what this
        # test is about: the loss, mining, optimiser and resume machinery learn
        "--no-augment",
        "--warmup",
        "0",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--quiet",
        "--seed",
        "1",
    ]
    assert main([*common, "--epochs", "1"]) == 0
    first = json.loads(out.with_name("tiny.train.json").read_text())
    assert first["steps_done"] == 12
    assert Path(str(out) + ".ckpt.npz").is_file()

    assert main([*common, "--epochs", "3", "--resume"]) == 0
    record = json.loads(out.with_name("tiny.train.json").read_text())
    assert record["steps_done"] == 36 and record["epochs_done"] == 3
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    before, after = record["final"]["probe_before"], record["final"]
    # the batch-hard loss of the probe faces (inference mode) falls, and the encodings are spread out
    assert after["probe_loss"] < 0.5 * before["probe_loss"]
    assert after["probe_mean_distance"] > 0.3
    assert after["probe_dim_std"] > 0.02
    assert record["hyper"]["P"] == 4 and record["data"]["people"] == len(PEOPLE)

    import keras

    from converter.layers import L2Normalize  # noqa: F401  (registered: the file reloads without help)

    model = keras.saving.load_model(out, compile=False)
    emb = np.asarray(model(np.full((2, 112, 112, 3), 128.0, np.float32), training=False))
    assert emb.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_bad_data_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "x.keras")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "no person folders" in err[-1]
    shutil.rmtree(tmp_path / "empty")
