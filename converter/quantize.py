"""Graph rewrites before TFLite conversion, and checks of the converted flatbuffer.

- ``rewrite_prelu``: XNNPACK (ai-edge-litert 2.3) does not delegate int8 PRELU, which splits the
  int8 model into many delegate partitions. Each ``PReLU`` becomes
  ``a*x + relu((1-a)*x)``: two 1x1 depthwise convs (the second with a fused ReLU) and an ADD, exact
  in float. For channels with ``a > 1`` (where ``1-a < 0``) the identity
  ``PReLU(x) = s * (s*a*x + relu(|1-a|*x))`` with ``s = -1`` is used, and the sign ``s`` is folded
  into the next conv / depthwise conv's input-channel weights (a third 1x1 depthwise conv with
  weights ``s`` when the next layer cannot absorb it).
- ``activation_ranges``: replaces the calibrator's activation ranges (min/max over all faces,
  which one unusual face widens) by robust per-face statistics before the int8 quantizer runs.
- ``inspect_tflite``: op list, tensor dtypes and input/output quantization of a flatbuffer.
- ``delegate_partitions`` / ``benchmark``: XNNPACK partition count and ms per face (``edge_verify.embed``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converter.errors import ConverterError

log = logging.getLogger(__name__)


class QuantizeError(ConverterError):
    """One-line failure of a rewrite or a check."""


def _dw(channels: int, weights: np.ndarray, name: str, relu: bool = False) -> Any:
    import keras

    layer = keras.layers.DepthwiseConv2D(1, use_bias=False, activation="relu" if relu else None, name=name)
    layer.build((None, None, None, channels))
    layer.set_weights([weights.reshape(1, 1, channels, 1).astype(np.float32)])
    return layer


def _signed_copy(layer: Any, sign: np.ndarray) -> tuple[Any, list[np.ndarray]] | None:
    """A copy of a conv layer whose input channel ``c`` is multiplied by ``sign[c]``; None if impossible."""
    import keras

    if type(layer) is keras.layers.DepthwiseConv2D or (type(layer) is keras.layers.Conv2D and layer.groups == 1):
        w = layer.get_weights()
        k = w[0] * sign.reshape(1, 1, -1, 1)
    else:
        return None
    cfg = layer.get_config()
    cfg["name"] = layer.name + "_signed"
    new = type(layer).from_config(cfg)
    return new, [k, *w[1:]]


def rewrite_prelu(model: Any) -> tuple[Any, int]:
    """A copy of ``model`` with every shared-axes-[1,2] PReLU rewritten; returns (model, count)."""
    import keras

    pending: dict[int, np.ndarray] = {}  # id(KerasTensor) -> per-channel sign still owed
    count = 0

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        x: Any = args[0] if args else None
        sign = pending.get(id(x)) if x is not None and not isinstance(x, (list, tuple)) else None
        if isinstance(layer, keras.layers.PReLU):
            if sign is not None:
                x = _dw(int(x.shape[-1]), sign, layer.name + "_sign")(x)
            alpha = layer.get_weights()[0]
            c = int(x.shape[-1])
            if len(x.shape) != 4 or alpha.size != c:
                raise QuantizeError(f"PReLU {layer.name!r}: only per-channel PReLU on NHWC maps is rewritten")
            a = alpha.reshape(c).astype(np.float64)
            s = np.where(a > 1.0, -1.0, 1.0)
            lin = _dw(c, s * a, layer.name + "_lin")(x)
            pos = _dw(c, np.abs(1.0 - a), layer.name + "_pos", relu=True)(x)
            y = keras.layers.Add(name=layer.name + "_add")([lin, pos])
            count += 1
            if (s < 0).any():
                pending[id(y)] = s
            return y
        if sign is not None:
            if isinstance(layer, keras.layers.ZeroPadding2D):
                y = layer(x, *args[1:], **kwargs)
                pending[id(y)] = sign
                return y
            signed = _signed_copy(layer, sign)
            if signed is not None:
                new, weights = signed
                y = new(x, *args[1:], **kwargs)
                new.set_weights(weights)
                return y
            x = _dw(int(x.shape[-1]), sign, layer.name + "_presign")(x)
            return layer(x, *args[1:], **kwargs)
        return layer(*args, **kwargs)

    new = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    if pending and any(id(t) in pending for t in new.outputs):
        raise QuantizeError("a PReLU with slopes > 1 feeds the model output directly; cannot fold its sign")
    return new, count


@dataclass
class TfliteReport:
    ops: list[str]
    float_tensors: list[str]
    input_dtype: str
    output_dtype: str
    input_shape: list[int]
    output_shape: list[int]
    input_quant: tuple[float, int]
    output_quant: tuple[float, int]
    op_counts: dict[str, int] = field(default_factory=dict)


def inspect_tflite(content: bytes) -> TfliteReport:
    """Ops, float tensors and in/out quantization of a TFLite flatbuffer (no delegate applied)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=content,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = [str(o["op_name"]) for o in interp._get_ops_details()]
    floats = [f"{t['name']} ({np.dtype(t['dtype']).name})" for t in interp.get_tensor_details()
              if np.dtype(t["dtype"]).kind == "f"]
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    counts: dict[str, int] = {}
    for o in ops:
        counts[o] = counts.get(o, 0) + 1
    return TfliteReport(
        ops=ops, float_tensors=floats,
        input_dtype=np.dtype(inp["dtype"]).name, output_dtype=np.dtype(out["dtype"]).name,
        input_shape=[int(d) for d in inp["shape"]], output_shape=[int(d) for d in out["shape"]],
        input_quant=(float(inp["quantization"][0]), int(inp["quantization"][1])),
        output_quant=(float(out["quantization"][0]), int(out["quantization"][1])),
        op_counts=counts,
    )


def delegate_partitions(model_path: str, threads: int = 1) -> tuple[int, int]:
    """(delegate partitions, ops in the model) once the default XNNPACK delegate is applied.

    After ``allocate_tensors`` the interpreter's op list holds the model's ops followed by one
    ``DELEGATE`` node per partition that XNNPACK took.
    """
    from edge_verify.embed import load_interpreter_class

    interpreter_cls, _ = load_interpreter_class()
    interp = interpreter_cls(model_path=model_path, num_threads=threads)
    interp.allocate_tensors()
    names = [str(o["op_name"]) for o in interp._get_ops_details()]
    parts = sum(1 for n in names if n == "DELEGATE")
    return parts, len(names) - parts


def activation_ranges(calibrated: bytes, crops: np.ndarray, mode: str = "mean") -> bytes:
    """Replace the calibrator's per-tensor (min, max) of a calibrate-only flatbuffer.

    ``minmax`` keeps the calibrator's ranges (the extremes over all faces; one unusual face widens a
    range for all). ``mean`` uses the average over faces of each face's own min and max, which keeps
    int8 resolution for typical faces (the moving-average ranges of quantization-aware training).
    ``pNN`` uses the NN-th percentile of the per-face maxima (100 - NN-th of the minima); ``p50``, the
    median, gave the closest int8-to-float encodings for SFace (see the exporter's report). The model
    input keeps the full pixel range [0, 255] so its quantization stays scale 1, zero point -128.
    """
    if mode == "minmax":
        return calibrated
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    sub = model.subgraphs[0]
    idx = [i for i, t in enumerate(sub.tensors)
           if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1]
    interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inp = interp.get_input_details()[0]["index"]
    if tuple(interp.get_input_details()[0]["shape"][1:]) != tuple(crops.shape[1:]):  # a resizable input
        interp.resize_tensor_input(inp, [1, *crops.shape[1:]])
    interp.allocate_tensors()
    lo = np.zeros((len(crops), len(idx)), np.float64)
    hi = np.zeros((len(crops), len(idx)), np.float64)
    for n, crop in enumerate(crops):
        interp.set_tensor(inp, crop.astype(np.float32)[None])
        interp.invoke()
        for j, i in enumerate(idx):
            v = interp.get_tensor(i)
            lo[n, j], hi[n, j] = float(v.min()), float(v.max())
    if mode == "mean":
        new_lo, new_hi = lo.mean(axis=0), hi.mean(axis=0)
    elif mode.startswith("p"):
        q = float(mode[1:])
        new_lo, new_hi = np.percentile(lo, 100 - q, axis=0), np.percentile(hi, q, axis=0)
    else:
        raise QuantizeError(f"unknown range mode {mode!r} (minmax, mean or pNN)")
    inputs = set(sub.inputs)
    for j, i in enumerate(idx):
        qp = sub.tensors[i].quantization
        if i in inputs:
            qp.min, qp.max = [0.0], [255.0]
        else:
            qp.min, qp.max = [min(float(new_lo[j]), 0.0)], [max(float(new_hi[j]), 0.0)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def benchmark(model_path: str, crops: np.ndarray, threads: int, runs: int = 50) -> float:
    """Median ms per face over ``runs`` single-face encodings by the runtime's Embedder (after a warm-up)."""
    from edge_verify.embed import Embedder

    emb = Embedder(model_path, num_threads=threads)
    emb.embed_batch(crops[:3])
    times = []
    for i in range(runs):
        c = crops[i % len(crops)]
        t0 = time.perf_counter()
        emb.embed(c)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)
