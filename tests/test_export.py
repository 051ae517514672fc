"""converter.export / converter.quantize: full-integer int8 TFLite, the PReLU rewrite, the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from converter.export import ExportError, check_int8, convert, export  # noqa: E402
from converter.layers import L2Normalize, PixelNormalize  # noqa: E402
from converter.quantize import delegate_partitions, inspect_tflite, rewrite_prelu  # noqa: E402

from .conftest import LFW, SFACE_ONNX, SHARED_MODELS  # noqa: E402

MANIFEST_KEYS = {"schema", "name", "file", "sha256", "dtype", "size_bytes", "input", "output", "metric", "tau",
                 "tau_far", "tau_source", "validation", "calibration", "provenance", "training", "created", "tools"}


def _prelu(x: Any, alpha: np.ndarray, name: str) -> Any:
    layer = keras.layers.PReLU(shared_axes=[1, 2], name=name)
    y = layer(x)
    layer.set_weights([alpha.reshape(1, 1, -1).astype(np.float32)])
    return y


def _tiny_model(rng: np.random.Generator) -> Any:
    """A small encoder with the contract's input/output, PReLUs with slopes < 0, in (0, 1) and > 1."""
    inp = keras.Input((112, 112, 3), batch_size=1)
    x = PixelNormalize()(inp)
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same")(x)
    x = _prelu(x, np.array([-0.3, 0.2, 1.4, 0.5, 2.0, 0.0, 0.9, 1.2]), "prelu_a")  # slopes > 1 -> next conv
    x = keras.layers.ZeroPadding2D(1)(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2)(x)
    x = _prelu(x, rng.uniform(-0.5, 1.5, 8), "prelu_b")  # feeds Flatten: sign needs its own 1x1 conv
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32)(x)
    return keras.Model(inp, L2Normalize()(x))


def test_prelu_rewrite_is_exact_in_float() -> None:
    rng = np.random.default_rng(1)
    model = _tiny_model(rng)
    new, count = rewrite_prelu(model)
    assert count == 2
    assert not any(isinstance(layer, keras.layers.PReLU) for layer in new.layers)
    x = rng.uniform(0, 255, (1, 112, 112, 3)).astype(np.float32)
    a, b = keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(new(x))
    assert np.abs(a - b).max() < 1e-5


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A handful of real LFW photos, linked into a folder for --calib."""
    d = tmp_path_factory.mktemp("calib")
    for p in sorted((LFW / "images").glob("*.jpg"))[:2000:100]:
        (d / p.name).symlink_to(p)
    return d


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory, calib_dir: Path) -> Any:
    d = tmp_path_factory.mktemp("tiny")
    src = d / "tiny.keras"
    _tiny_model(np.random.default_rng(2)).save(src)
    (d / "tiny.train.json").write_text(json.dumps({"epochs": 1, "lfw_folds_used": [1]}))
    return export(src, d / "tiny_int8.tflite", int8=True, calib_dir=calib_dir, bench=False)


def test_tiny_int8_export_has_no_float_tensor(tiny_export: Any) -> None:
    content = tiny_export.path.read_bytes()
    rep = inspect_tflite(content)
    assert rep.float_tensors == []
    assert rep.input_dtype == "int8" and rep.output_dtype == "int8"
    assert rep.input_shape == [1, 112, 112, 3] and rep.output_shape == [1, 32]
    assert "PRELU" not in rep.op_counts
    assert rep.output_quant == (pytest.approx(1 / 128), 0)
    parts, _ = delegate_partitions(str(tiny_export.path))
    assert parts == 1


def test_tiny_manifest_matches_the_file(tiny_export: Any) -> None:
    path = tiny_export.path
    m = json.loads(path.with_suffix(".json").read_text())
    assert set(m) >= MANIFEST_KEYS
    assert m["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m["size_bytes"] == path.stat().st_size and m["file"] == path.name
    assert m["dtype"] == "int8" and m["name"] == "tiny-int8"
    assert m["input"]["color_order"] == "BGR" and m["input"]["shape"] == [1, 112, 112, 3]
    assert m["input"]["quantization"]["scale"] > 0
    assert m["output"]["embedding_size"] == 32 and m["output"]["l2_normalized"] is True
    assert m["metric"] == "squared_l2" and m["tau"] == 1.38 and m["tau_source"] == "provisional"
    assert m["calibration"]["faces"] >= 15
    assert m["training"] == {"epochs": 1, "lfw_folds_used": [1]}
    assert m["validation"]["faces"] > 100 and m["validation"]["float_size_bytes"] > m["size_bytes"]
    assert m["validation"]["cosine_mean"] > 0.9
    for key in ("source", "source_sha256", "license", "authors", "training_data", "lfw_folds_used"):
        assert key in m["provenance"]


def test_float_flatbuffer_is_refused_by_the_int8_check() -> None:
    content = convert(_tiny_model(np.random.default_rng(3)), None)
    with pytest.raises(ExportError, match=r"float tensor"):
        check_int8(content)


def test_cli_refuses_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from converter.export import main

    assert main(["--int8", str(tmp_path / "nope.keras")]) == 1
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_sface_int8_export(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The real SFace: imported, exported int8 (a smaller calibration set than the bundled model's, for time)."""
    from converter.import_onnx import import_onnx

    d = tmp_path_factory.mktemp("sface")
    import_onnx(SFACE_ONNX, d / "sface.keras")
    res = export(d / "sface.keras", d / "sface_int8.tflite", int8=True, bench=False,
                 lfw_calib=100)
    m = res.manifest
    assert m["provenance"]["source_sha256"] == hashlib.sha256(SFACE_ONNX.read_bytes()).hexdigest()
    assert m["provenance"]["license"] == "Apache-2.0" and m["provenance"]["lfw_folds_used"] == [1]
    assert m["input"]["quantization"] == {"scale": 1.0, "zero_point": -128}
    assert m["output"]["embedding_size"] == 128
    assert m["validation"]["cosine_mean"] >= 0.95
    assert res.report["xnnpack"]["partitions"] == 1
    assert inspect_tflite(res.path.read_bytes()).float_tensors == []


@pytest.mark.slow
def test_yunet_detector_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Import + fp32 export of YuNet as `make detector` does (a small validation): one XNNPACK piece,
    a face-detector manifest, and the runtime finds the same faces as OpenCV with it."""
    from converter.export import main
    from converter.import_onnx import import_onnx
    from edge_verify.detect import FaceDetector
    from edge_verify.imageio import read_image
    from edge_verify.models import sha256_file

    from .conftest import SHARED_MODELS, lfw_photo

    src = SHARED_MODELS / "face_detection_yunet_2023mar_int8bq.onnx"
    import_onnx(src, tmp_path / "yunet.keras", input_order="BGR", input_size=(None, None), head="raw")
    from converter.export_detector import export_detector

    res = export_detector(tmp_path / "yunet.keras", tmp_path / "yunet.tflite", bench=False,
                          validation_size=(1, 3))
    m = json.loads((tmp_path / "yunet.json").read_text())
    assert m["kind"] == "face_detector" and m["dtype"] == "float32" and m["input"]["shape"] == [1, -1, -1, 3]
    assert m["sha256"] == sha256_file(res.path) and m["xnnpack"]["partitions"] == 1
    assert m["provenance"]["source_sha256"].startswith("49f000ec")
    v = m["validation"]["lfw_folds_2_10"]
    assert v["images"] == 9 and v["matched_iou_0.5"] == v["reference_faces"] and v["iou_min"] > 0.99
    img = read_image(lfw_photo("Goldie_Hawn", 2))
    got = FaceDetector(res.path).detect(img)
    ref = FaceDetector(backend="opencv").detect(img)
    assert len(got) == len(ref) == 3
    assert all(np.allclose(g.bbox, r.bbox, atol=0.05) for g, r in zip(got, ref, strict=True))
    # exported as an encoder by mistake: a one-line error
    assert main([str(tmp_path / "yunet.keras"), "--float", "--out", str(tmp_path / "x.tflite")]) == 2
    err = capsys.readouterr().err.strip()
    assert "12 outputs" in err and "--detector" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_minifasnet_liveness_int8_export(tmp_path_factory: pytest.TempPathFactory) -> None:
    """MiniFASNetV1SE (squeeze-excitation: MEAN, LOGISTIC, MUL) through import_onnx and export --liveness-scale:
    full int8, one XNNPACK partition, a liveness manifest; a small calibration set for time."""
    from converter.export_liveness import export_liveness
    from converter.import_onnx import import_onnx

    src = SHARED_MODELS / "minifasnet" / "MiniFASNetV1SE.onnx"
    d = tmp_path_factory.mktemp("fas")
    import_onnx(src, d / "v1se.keras")
    res = export_liveness(d / "v1se.keras", d / "v1se_int8.tflite", 4.0, calib_photos=24, validation_photos=18,
                          bench=False)
    rep = inspect_tflite(res.path.read_bytes())
    assert rep.float_tensors == [] and rep.input_dtype == "int8" and rep.output_dtype == "int8"
    assert rep.input_shape == [1, 80, 80, 3] and rep.output_shape == [1, 3]
    assert {"MEAN", "LOGISTIC", "MUL"} <= set(rep.op_counts) and "PRELU" not in rep.op_counts
    assert res.report["xnnpack"]["partitions"] == 1
    m = json.loads(res.path.with_suffix(".json").read_text())
    assert m["kind"] == "liveness" and m["input"]["crop"]["scale"] == 4.0 and m["output"]["live_index"] == 1
    assert m["sha256"] == hashlib.sha256(res.path.read_bytes()).hexdigest()
    assert m["provenance"]["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert m["provenance"]["license"] == "Apache-2.0" and m["provenance"]["lfw_folds_used"] == [1]
    assert m["validation"]["logit_corr"] > 0.9 and m["validation"]["attack_crops"] > 0
