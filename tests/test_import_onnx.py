"""converter.import_onnx: ONNX (NCHW) -> Keras (NHWC) equals onnxruntime, on real faces and tiny graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from converter.import_onnx import OnnxImportError, import_onnx, main, onnxruntime_session  # noqa: E402

from .conftest import LFW, NUAA, SFACE_ONNX, SHARED_MODELS  # noqa: E402


def _run_ort(path: Path, x_nchw: np.ndarray) -> np.ndarray:
    sess = onnxruntime_session(path)
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x_nchw.astype(np.float32)})[0])


def _np(t: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(t))


def _l2(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _tiny_encoder(path: Path, rng: np.random.Generator) -> None:
    """Sub/Mul input normalisation, conv, grouped conv, stride-2 depthwise conv (pads 1), BN, PRelu,
    int8 weights behind DequantizeLinear + Reshape, Flatten, Dropout, Gemm and a final BN."""

    def init(name: str, a: np.ndarray) -> TensorProto:
        return numpy_helper.from_array(np.asarray(a), name)

    c1, c2 = 8, 8
    inits = [
        init("mean", np.array([127.5], np.float32)), init("scale", np.array([0.0078125], np.float32)),
        init("w1", rng.normal(0, 0.3, (c1, 3, 3, 3)).astype(np.float32)),
        init("wg_q", rng.integers(-127, 127, (c2, 4 * 3 * 3)).astype(np.int8)),
        init("wg_s", np.full((c2, 1), 0.01, np.float32)),
        init("wg_z", np.zeros((c2, 1), np.int8)),
        init("wg_shape", np.array([c2, 4, 3, 3], np.int64)),
        init("wd", rng.normal(0, 0.3, (c2, 1, 3, 3)).astype(np.float32)),
        init("slope", rng.uniform(-0.5, 1.5, (c2, 1, 1)).astype(np.float32)),
        init("fc_w", rng.normal(0, 0.1, (16, c2 * 4 * 4)).astype(np.float32)),
        init("fc_b", rng.normal(0, 0.1, (16,)).astype(np.float32)),
        init("ratio", np.array(0.4, np.float32)),
    ]
    for n, c in (("bn1", c1), ("bn2", c2), ("bn3", c2), ("bn4", 16)):
        inits += [init(f"{n}_g", rng.uniform(0.5, 1.5, c).astype(np.float32)),
                  init(f"{n}_b", rng.normal(0, 0.2, c).astype(np.float32)),
                  init(f"{n}_m", rng.normal(0, 0.2, c).astype(np.float32)),
                  init(f"{n}_v", rng.uniform(0.5, 1.5, c).astype(np.float32))]

    def bn(name: str, x: str, eps: float) -> Any:
        return helper.make_node("BatchNormalization", [x, f"{name}_g", f"{name}_b", f"{name}_m", f"{name}_v"],
                                [name], epsilon=eps)

    nodes = [
        helper.make_node("Sub", ["data", "mean"], ["sub"]),
        helper.make_node("Mul", ["sub", "scale"], ["norm"]),
        helper.make_node("Conv", ["norm", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        bn("bn1", "c1", 1e-3),
        helper.make_node("DequantizeLinear", ["wg_q", "wg_s", "wg_z"], ["wg_dq"], axis=1, block_size=36),
        helper.make_node("Reshape", ["wg_dq", "wg_shape"], ["wg"]),
        helper.make_node("Conv", ["bn1", "wg"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2),
        bn("bn2", "c2", 1e-3),
        helper.make_node("PRelu", ["bn2", "slope"], ["p2"]),
        helper.make_node("Conv", ["p2", "wd"], ["c3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2],
                         group=c2),
        bn("bn3", "c3", 2e-5),
        helper.make_node("Dropout", ["bn3", "ratio"], ["drop"]),
        helper.make_node("Flatten", ["drop"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], transB=1),
        bn("bn4", "fc", 2e-5),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16]),
                        helper.make_tensor_value_info("unused", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("bn4", TensorProto.FLOAT, [1, 16])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.save(model, str(path))


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_tiny_graph_matches_onnxruntime(tmp_path: Path, order: str) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "tiny.onnx"
    _tiny_encoder(src, rng)
    model = import_onnx(src, tmp_path / "tiny.keras", input_order=order)
    assert (tmp_path / "tiny.provenance.json").is_file()
    x = rng.uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)  # NHWC, BGR as the Keras model takes
    onnx_in = x[..., ::-1] if order == "RGB" else x  # the ONNX graph takes its own order
    expect = _l2(np.concatenate([_run_ort(src, onnx_in[i:i + 1].transpose(0, 3, 1, 2)) for i in range(4)]))
    got = np.concatenate([_np(model(x[i:i + 1])) for i in range(4)])
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.abs(got - expect).max() < 1e-4


def test_unsupported_op_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    src = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(src))
    with pytest.raises(OnnxImportError, match=r"unsupported ONNX op.*Softmax"):
        import_onnx(src)
    assert main([str(src), str(tmp_path / "bad.keras")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Softmax" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad.keras").exists()


@pytest.fixture(scope="module")
def sface_keras(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not SFACE_ONNX.is_file():
        pytest.fail(f"shared model missing: {SFACE_ONNX}")
    return import_onnx(SFACE_ONNX, tmp_path_factory.mktemp("sface") / "sface.keras")


@pytest.mark.slow
def test_sface_import_matches_onnxruntime_on_lfw_faces(sface_keras: Any) -> None:
    """Aligned LFW faces (BGR) -> Keras; the same crops as RGB NCHW -> onnxruntime; cosine >= 0.999."""
    from converter.faces import aligned_crops

    paths = sorted((LFW / "images").glob("*.jpg"))[::400]
    crops, _ = aligned_crops(paths)
    assert len(crops) >= 15
    got = np.concatenate([_np(sface_keras(crops[i:i + 1].astype(np.float32))) for i in range(len(crops))])
    rgb = crops[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
    expect = _l2(np.concatenate([_run_ort(SFACE_ONNX, rgb[i:i + 1]) for i in range(len(crops))]))
    cos = (got * expect).sum(axis=1)
    assert cos.min() >= 0.999, f"min cosine {cos.min():.5f}"
    assert sface_keras.input_shape == (1, 112, 112, 3)
    assert sface_keras.output_shape == (1, 128)
    # different people stay apart: the encoder is not degenerate
    assert (got @ got.T)[np.triu_indices(len(got), 1)].mean() < 0.5


def _tiny_detector(path: Path, rng: np.random.Generator) -> None:
    """YuNet's op set: Conv (stride 2), Relu, MaxPool, a 1x1 Conv, Resize x2 (nearest, asymmetric,
    floor), Add, then two heads through Transpose (NCHW -> NHWC) and Reshape [1, -1, C], one with a
    Sigmoid. Two outputs."""

    def init(name: str, a: np.ndarray) -> TensorProto:
        return numpy_helper.from_array(np.asarray(a), name)

    inits = [
        init("w1", rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)),
        init("b1", rng.normal(0, 0.1, (4,)).astype(np.float32)),
        init("w2", rng.normal(0, 0.3, (4, 4, 1, 1)).astype(np.float32)),
        init("w3", rng.normal(0, 0.3, (1, 4, 1, 1)).astype(np.float32)),
        init("w4", rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32)),
        init("roi", np.zeros(0, np.float32)),
        init("scales", np.array([1, 1, 2, 2], np.float32)),
        init("shape1", np.array([1, -1, 1], np.int64)),
        init("shape4", np.array([1, -1, 4], np.int64)),
    ]
    nodes = [
        helper.make_node("Conv", ["data", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], kernel_shape=[1, 1]),
        helper.make_node("Resize", ["c2", "roi", "scales"], ["up"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Add", ["r1", "up"], ["sum"]),
        helper.make_node("Conv", ["sum", "w3"], ["h1"], kernel_shape=[1, 1]),
        helper.make_node("Transpose", ["h1"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t1", "shape1"], ["f1"]),
        helper.make_node("Sigmoid", ["f1"], ["cls"]),
        helper.make_node("Conv", ["sum", "w4"], ["h2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["h2"], ["t2"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t2", "shape4"], ["bbox"]),
    ]
    graph = helper.make_graph(
        nodes, "tinydet", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("cls", TensorProto.FLOAT, [1, 256, 1]),
         helper.make_tensor_value_info("bbox", TensorProto.FLOAT, [1, 256, 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.save(model, str(path))


def test_tiny_detector_graph_matches_onnxruntime(tmp_path: Path) -> None:
    """Raw head outputs by name, equal to onnxruntime; with a resizable input the same model takes
    other sizes (each output has one row per stride-2 position)."""
    rng = np.random.default_rng(1)
    src = tmp_path / "tinydet.onnx"
    _tiny_detector(src, rng)
    sess = onnxruntime_session(src)
    x = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    expect = dict(zip(["cls", "bbox"], sess.run(["cls", "bbox"], {"data": x.transpose(0, 3, 1, 2)}), strict=True))
    for size in ((32, 32), (None, None)):
        model = import_onnx(src, input_order="BGR", input_size=size, head="raw")
        got = model(x)
        for name in ("cls", "bbox"):
            assert np.abs(_np(got[name]) - expect[name]).max() < 1e-4, (size, name)
    other = model(rng.uniform(0, 255, (1, 64, 96, 3)).astype(np.float32))
    assert _np(other["bbox"]).shape == (1, 32 * 48, 4)


def test_a_transpose_other_than_nchw_to_nhwc_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1, 3, 2])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    src = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(src))
    with pytest.raises(OnnxImportError, match=r"Transpose .*only NCHW -> NHWC"):
        import_onnx(src, head="raw")


@pytest.mark.slow
def test_yunet_import_matches_opencv_dnn(tmp_path: Path) -> None:
    """OpenCV Zoo's YuNet, imported with a resizable input: its twelve outputs equal OpenCV DNN's on a
    real photo at 320x192 (the daemon's padded lores frame), and the fp32 export keeps XNNPACK whole."""
    import cv2

    from converter.export import convert
    from converter.quantize import delegate_partitions

    from .conftest import SHARED_MODELS, lfw_photo

    src = SHARED_MODELS / "face_detection_yunet_2023mar_int8bq.onnx"
    model = import_onnx(src, input_order="BGR", input_size=(None, None), head="raw")
    x = np.zeros((192, 320, 3), np.float32)
    x[20:170, 100:250] = cv2.imread(str(lfw_photo("Tony_Blair", 32)))
    net = cv2.dnn.readNet(str(src))
    names = [f"{h}_{s}" for h in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    net.setInput(cv2.dnn.blobFromImage(x))
    expect = dict(zip(names, net.forward(names), strict=True))
    got = model(x[None])
    for n in names:
        assert np.abs(_np(got[n]) - expect[n]).max() < 1e-3, n
    assert float(_np(got["cls_16"]).max()) > 0.5  # the face is there
    tfl = tmp_path / "yunet.tflite"
    tfl.write_bytes(convert(model, None))
    assert delegate_partitions(str(tfl))[0] == 1


def _tiny_classifier(path: Path, rng: np.random.Generator) -> None:
    """MiniFASNet's extra ops: a stride-2 conv (pads 1) and PRelu, squeeze-excitation (GlobalAveragePool,
    1x1 convs, Relu, Sigmoid, a broadcast Mul of two tensors), Flatten, MatMul, BatchNormalization on the
    2-D output of a MatMul (BN1d), a second MatMul to 3 logits."""

    def init(name: str, a: np.ndarray) -> TensorProto:
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    c = 8
    inits = [init("w1", rng.normal(0, 0.05, (c, 3, 3, 3))), init("b1", rng.normal(0, 0.1, c)),
             init("slope", rng.uniform(-0.5, 1.5, (c, 1, 1))),
             init("se1", rng.normal(0, 0.3, (4, c, 1, 1))), init("se1b", rng.normal(0, 0.1, 4)),
             init("se2", rng.normal(0, 0.3, (c, 4, 1, 1))), init("se2b", rng.normal(0, 0.1, c)),
             init("fc1", rng.normal(0, 0.05, (c * 8 * 8, 16))), init("fc2", rng.normal(0, 0.3, (16, 3))),
             init("g", rng.uniform(0.5, 1.5, 16)), init("be", rng.normal(0, 0.2, 16)),
             init("mu", rng.normal(0, 0.2, 16)), init("var", rng.uniform(0.5, 1.5, 16))]
    nodes = [
        helper.make_node("Conv", ["data", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("PRelu", ["c1", "slope"], ["p1"]),
        helper.make_node("GlobalAveragePool", ["p1"], ["pool"]),
        helper.make_node("Conv", ["pool", "se1", "se1b"], ["s1"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["s1"], ["r1"]),
        helper.make_node("Conv", ["r1", "se2", "se2b"], ["s2"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["s2"], ["gate"]),
        helper.make_node("Mul", ["p1", "gate"], ["se"]),
        helper.make_node("Flatten", ["se"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc1"], ["m1"]),
        helper.make_node("BatchNormalization", ["m1", "g", "be", "mu", "var"], ["bn"], epsilon=1e-5),
        helper.make_node("MatMul", ["bn", "fc2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_cls", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_tiny_classifier_with_squeeze_excitation_matches_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    src = tmp_path / "cls.onnx"
    _tiny_classifier(src, rng)
    model = import_onnx(src, input_order="BGR", head="raw")
    assert not any(type(layer).__name__ == "L2Normalize" for layer in model.layers)
    x = rng.uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    expect = np.concatenate([_run_ort(src, x[i:i + 1].transpose(0, 3, 1, 2)) for i in range(3)])
    got = np.concatenate([_np(model(x[i:i + 1])["logits"]) for i in range(3)])  # raw: outputs by ONNX name
    assert got.shape == (3, 3)
    assert np.abs(got - expect).max() < 1e-4 * max(1.0, float(np.abs(expect).max()))
    # an encoder head on the same graph would L2-normalise the logits: the option matters
    l2 = import_onnx(src, input_order="BGR", head="l2")
    assert np.allclose(np.linalg.norm(_np(l2(x[:1])), axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "scale"), [("MiniFASNetV2", 2.7), ("MiniFASNetV1SE", 4.0)])
def test_minifasnet_import_matches_onnxruntime_on_nuaa_faces(name: str, scale: float) -> None:
    """Both liveness models, their options known by sha256 (BGR, raw logits): Keras = onnxruntime on real crops."""
    from edge_verify.detect import FaceDetector
    from edge_verify.imageio import read_image
    from edge_verify.liveness import liveness_crop

    src = SHARED_MODELS / "minifasnet" / f"{name}.onnx"
    model = import_onnx(src)  # BGR and raw (by the file's sha256): one output, "output"
    det = FaceDetector()
    frames = [*sorted((NUAA / "live").rglob("*.jpg"))[::60], *sorted((NUAA / "photo_attack").rglob("*.jpg"))[::60]]
    crops = []
    for p in frames:
        img = read_image(p)
        crops.append(liveness_crop(img, det.detect(img)[0].bbox, scale))
    x = np.stack(crops).astype(np.float32)
    got = np.concatenate([_np(model(x[i:i + 1])["output"]) for i in range(len(x))])
    expect = np.concatenate([_run_ort(src, x[i:i + 1].transpose(0, 3, 1, 2)) for i in range(len(x))])
    assert got.shape == (len(frames), 3)
    assert np.abs(got - expect).max() < 1e-3
