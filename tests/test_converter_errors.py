"""The converter's seams: one error root (ConverterError) and a frozen TrainConfig instead of argparse
Namespaces in train.py's library functions. No training here (test_train does that, with TensorFlow)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from converter.data import DataError, FaceSet, save_bundle
from converter.errors import ConverterError
from converter.evaluate import EvaluateError
from converter.export import ExportError
from converter.import_onnx import OnnxImportError
from converter.lfw import LfwError
from converter.metrics import MetricsError
from converter.train import TrainConfig, TrainingError, load_data, main, parser, training_indices


def test_one_error_root() -> None:
    layers = pytest.importorskip("converter.layers")  # needs keras
    quantize = pytest.importorskip("converter.quantize")
    classes = [DataError, EvaluateError, ExportError, OnnxImportError, layers.EncoderLoadError, LfwError,
               MetricsError, quantize.QuantizeError, TrainingError]
    assert all(issubclass(c, ConverterError) for c in classes)
    assert not any(issubclass(c, (ValueError, RuntimeError)) for c in classes)  # no unrelated bases
    assert ConverterError("x").exit_code == 2 and TrainingError("x").exit_code == 3


def test_train_config_is_frozen_and_is_the_command_lines_defaults() -> None:
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.P = 3  # type: ignore[misc]
    assert TrainConfig.from_namespace(parser().parse_args([])) == cfg
    got = TrainConfig.from_namespace(parser().parse_args(["--P", "8", "--arch", "tiny", "--no-augment"]))
    assert got == dataclasses.replace(cfg, P=8, arch="tiny", no_augment=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--P", "1"], "--P must be at least 2, not 1"), (["--lr", "nan"], "--lr must be a finite number"),
     (["--lr", "0"], "--lr must be above 0"), (["--warmup", "1"], "--warmup is a fraction of the run"),
     (["--folds", "0-3"], "bad fold list '0-3'"), (["--epochs", "0"], "--epochs must be at least 1")],
)
def test_bad_settings_are_one_line_errors(argv: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.keras")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_library_functions_take_a_train_config(tmp_path: Path) -> None:
    n = 6
    fs = FaceSet(keys=[f"{p}/{i}" for p in "abc" for i in range(2)], person=np.repeat(np.array(list("abc")), 2),
                 source=np.array(["extra"] * n), fold=np.zeros(n, np.int64),
                 crops=np.random.default_rng(0).integers(0, 255, (n, 112, 112, 3), dtype=np.uint8))
    save_bundle(tmp_path / "b.npz", fs)
    cfg = TrainConfig(bundle=str(tmp_path / "b.npz"), data=str(tmp_path / "unused"))
    loaded = load_data(cfg)
    assert loaded.keys == fs.keys
    assert list(training_indices(loaded, cfg, holdout=["c"])) == [0, 1, 2, 3]
