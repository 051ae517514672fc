"""Import an ONNX face encoder or detector (NCHW) into a Keras 3 functional model (NHWC) with its weights.

Usage: ``python -m converter.import_onnx SRC.onnx OUT.keras [--input-order RGB|BGR] [--input-size WxH|any]
[--head l2|raw]``

Supported ops: Conv (plain, grouped, depthwise), BatchNormalization, PRelu, Relu, Add, Flatten,
Dropout, Gemm, the input ``Sub``/``Mul`` normalisation (kept as a ``PixelNormalize`` layer) and
constant weights (``Constant``, ``DequantizeLinear`` incl. blocked int8, ``Reshape``). Anything else
fails with a one-line error naming the op.

What the import does beyond a literal translation (see docs/MODEL-NOTES.md of the shared data):
- initializers that are also listed as graph inputs are not inputs; unused inputs are dropped;
- the source network takes RGB (OpenCV's ``FaceRecognizerSF`` swaps BGR->RGB before it): the first
  conv's input-channel weights are reversed so the Keras model takes **BGR**, our contract;
- asymmetric/stride-2 padding becomes an explicit ``ZeroPadding2D`` + ``valid`` conv;
- BatchNormalization is folded into the conv / dense layer before it, and a BatchNormalization
  that feeds a Flatten -> Gemm is folded forward into the dense weights;
- Flatten of NCHW is emulated by permuting the Gemm weight rows from CHW to HWC order;
- the model ends with ``converter.layers.L2Normalize``; batch size is fixed to 1.

Per-model options (``--input-order``, ``--head``) default to what ``SOURCE_OPTIONS`` knows about the
file (by sha256), else RGB and ``l2``: SFace takes RGB and is an encoder; MiniFASNet takes BGR and ends
in class logits (``raw``).

Classifiers (MiniFASNet): squeeze-excitation (GlobalAveragePool, 1x1 convs, Sigmoid, a broadcast ``Mul``
of two tensors), MatMul with constant weights, and a BatchNormalization after it (BN1d) folded into it.

Detectors (YuNet; ``--head raw --input-size any``): MaxPool, Resize (nearest, integer scale, as
``converter.layers.NearestUpsample``), Transpose NCHW -> NHWC (nothing runs: the Keras layout), a
Reshape ``[1, -1, C]`` after it, Sigmoid; every graph output is kept under its ONNX name and the input
size can be left free.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converter.errors import ConverterError
from edge_verify.models import sha256_file

log = logging.getLogger(__name__)

SUPPORTED_OPS = (
    "Add", "BatchNormalization", "Constant", "Conv", "DequantizeLinear", "Dropout", "Flatten", "Gemm",
    "Identity", "Mul", "PRelu", "Relu", "Reshape", "Sub",
    # detector heads (YuNet): see OnnxImporter._maxpool and the methods after it
    "MaxPool", "Resize", "Sigmoid", "Transpose",
    # classifiers (MiniFASNet): see OnnxImporter._matmul and the methods after it
    "GlobalAveragePool", "MatMul",
)
HEADS = ("l2", "raw")  # what follows the graph's outputs: L2Normalize (encoders), or nothing (all outputs)


class OnnxImportError(ConverterError):
    """One-line import failure (unsupported op, unexpected graph shape)."""


@dataclass
class _Tensor:
    """A Keras tensor plus what the importer still owes it."""

    kt: Any
    # per-channel affine (scale, shift) not yet applied (a BatchNormalization waiting to be folded)
    affine: tuple[np.ndarray, np.ndarray] | None = None
    # pending scalar normalisation of the graph input: (mean, scale) of (x - mean) * scale
    pixel_norm: tuple[float, float] | None = None
    # channels are reversed relative to the ONNX graph (BGR model input vs RGB source)
    reversed_channels: bool = False
    # Flatten pending: the NHWC tensor is flattened as HWC, the ONNX graph expects CHW order
    flattened_from: tuple[int, int, int] | None = None  # (H, W, C)
    # an ONNX Transpose NCHW -> NHWC ran: the ONNX tensor now has the Keras layout, so a Reshape of it
    # is the same reshape on the Keras tensor
    nhwc: bool = False


@dataclass
class _Ctx:
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    tensors: dict[str, _Tensor] = field(default_factory=dict)
    consumers: dict[str, int] = field(default_factory=dict)
    # layers whose output is only consumed once and whose weights can still absorb an affine
    foldable: dict[str, Any] = field(default_factory=dict)


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _dequantize(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    x = q.astype(np.float32)
    s = scale.astype(np.float32)
    z = np.zeros_like(s) if zp is None else zp.astype(np.float32)
    if s.ndim == 0 or s.size == 1:
        return (x - z.reshape(())) * s.reshape(())
    axis = axis % q.ndim
    if block:
        s = np.repeat(s, block, axis=axis)
        z = np.repeat(z, block, axis=axis)
        sl = [slice(None)] * q.ndim
        sl[axis] = slice(0, q.shape[axis])
        s, z = s[tuple(sl)], z[tuple(sl)]
        return (x - z) * s
    shape = [1] * q.ndim
    shape[axis] = -1
    return (x - z.reshape(shape)) * s.reshape(shape)


def _scalar(a: np.ndarray) -> float | None:
    return float(a.reshape(())) if a.size == 1 else None


class OnnxImporter:
    """Translate one ONNX graph; ``build()`` returns the Keras model."""

    def __init__(self, path: str | Path, input_order: str = "RGB", name: str | None = None,
                 input_size: tuple[int | None, int | None] | None = None, head: str = "l2") -> None:
        """``input_size`` (H, W) replaces the graph's spatial input size of a fully convolutional graph
        (a detector); (None, None) makes it resizable. ``head`` is one of ``HEADS``."""
        import onnx

        self.path = Path(path)
        self.model = onnx.load(str(self.path))
        self.input_order = input_order.upper()
        self.name = name or self.path.stem
        if head not in HEADS:
            raise OnnxImportError(f"unknown head {head!r} (choose from {', '.join(HEADS)})")
        self.input_size = input_size
        self.head = head
        self.ctx = _Ctx()
        self._n = 0

    # --- helpers -------------------------------------------------------------------------
    def _layer_name(self, base: str) -> str:
        self._n += 1
        # TensorFlow scope names must not start with "_" (PyTorch exports name tensors "/stage/...")
        clean = "".join(c if c.isalnum() or c == "_" else "_" for c in base).lstrip("_")
        return f"{clean}"[:60] or f"layer_{self._n}"

    def _const(self, name: str) -> np.ndarray:
        if name not in self.ctx.consts:
            raise OnnxImportError(f"expected a constant for {name!r}, got a computed tensor")
        return self.ctx.consts[name]

    def _is_const(self, name: str) -> bool:
        return name in self.ctx.consts

    def _materialize(self, t: _Tensor, name: str) -> Any:
        """Apply pending normalisation / affine so ``t.kt`` is the true value (NHWC)."""
        import keras

        from converter.layers import PixelNormalize

        if t.pixel_norm is not None:
            mean, pscale = t.pixel_norm
            t.kt = PixelNormalize(mean=mean, scale=pscale, name=self._layer_name(name + "_norm"))(t.kt)
            t.pixel_norm = None
        if t.affine is not None:
            scale, shift = t.affine
            c = scale.shape[0]
            dw = keras.layers.DepthwiseConv2D(1, use_bias=True, name=self._layer_name(name + "_affine"))
            out = dw(t.kt)
            dw.set_weights([scale.reshape(1, 1, c, 1).astype(np.float32), shift.astype(np.float32)])
            t.kt = out
            t.affine = None
        return t.kt

    def _get(self, name: str) -> _Tensor:
        if name not in self.ctx.tensors:
            raise OnnxImportError(f"tensor {name!r} is not available (graph not topologically sorted?)")
        return self.ctx.tensors[name]

    # --- ops -----------------------------------------------------------------------------
    def _conv(self, node: Any, a: dict[str, Any]) -> None:
        import keras

        x = self._get(node.input[0])
        w = self._const(node.input[1]).astype(np.float32)  # O, I/g, kH, kW
        b = self._const(node.input[2]).astype(np.float32) if len(node.input) > 2 and node.input[2] else None
        group = int(a.get("group", 1))
        strides = tuple(a.get("strides", [1, 1]))
        dil = tuple(a.get("dilations", [1, 1]))
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise OnnxImportError(f"Conv {node.name!r}: auto_pad is not supported")
        kh, kw = w.shape[2], w.shape[3]
        pads = list(a.get("pads", [0, 0, 0, 0]))  # top, left, bottom, right
        if x.reversed_channels:
            if group != 1:
                raise OnnxImportError(f"Conv {node.name!r}: cannot reverse input channels of a grouped conv")
            w = w[:, ::-1, :, :]
        inp = self._materialize(x, node.output[0])
        out_c, in_per_g = w.shape[0], w.shape[1]
        in_c = in_per_g * group
        if b is None:
            b = np.zeros(out_c, np.float32)
        same_ok = (
            strides == (1, 1) and kh % 2 == 1 and kw % 2 == 1
            and pads == [dil[0] * (kh // 2), dil[1] * (kw // 2), dil[0] * (kh // 2), dil[1] * (kw // 2)]
        )
        padding = "valid"
        if same_ok and any(pads):
            padding = "same"
        elif any(pads):
            inp = keras.layers.ZeroPadding2D(
                ((pads[0], pads[2]), (pads[1], pads[3])), name=self._layer_name(node.output[0] + "_pad")
            )(inp)
        lname = self._layer_name(node.output[0])
        if group == 1:
            layer = keras.layers.Conv2D(out_c, (kh, kw), strides=strides, padding=padding,
                                        dilation_rate=dil, use_bias=True, name=lname)
            out = layer(inp)
            layer.set_weights([w.transpose(2, 3, 1, 0), b])
        elif group == in_c and in_per_g == 1 and out_c % in_c == 0:
            mult = out_c // in_c
            layer = keras.layers.DepthwiseConv2D((kh, kw), strides=strides, padding=padding,
                                                 depth_multiplier=mult, dilation_rate=dil,
                                                 use_bias=True, name=lname)
            out = layer(inp)
            # ONNX out channel o = c * mult + m  ->  Keras kernel (kh, kw, C, mult)
            k = w.reshape(in_c, mult, kh, kw).transpose(2, 3, 0, 1)
            layer.set_weights([k, b])
        else:
            layer = keras.layers.Conv2D(out_c, (kh, kw), strides=strides, padding=padding, groups=group,
                                        dilation_rate=dil, use_bias=True, name=lname)
            out = layer(inp)
            layer.set_weights([w.transpose(2, 3, 1, 0), b])
        self.ctx.tensors[node.output[0]] = _Tensor(out)
        if self.ctx.consumers.get(node.output[0], 0) == 1:
            self.ctx.foldable[node.output[0]] = ("conv", layer)

    def _batchnorm(self, node: Any, a: dict[str, Any]) -> None:
        gamma, beta, mean, var = (self._const(n).astype(np.float64) for n in node.input[1:5])
        eps = float(a.get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        src = node.input[0]
        x = self._get(src)
        if src in self.ctx.foldable and x.affine is None:
            kind, layer = self.ctx.foldable.pop(src)
            w, b = layer.get_weights()
            if kind == "conv" and isinstance(layer, _keras().layers.DepthwiseConv2D):
                w = w * scale.reshape(1, 1, w.shape[2], w.shape[3])
            else:  # Conv2D (H, W, I, O) or Dense (I, O): output channel is the last axis
                w = w * scale
            b = b * scale + shift
            layer.set_weights([w.astype(np.float32), b.astype(np.float32)])
            self.ctx.tensors[node.output[0]] = x
            if self.ctx.consumers.get(node.output[0], 0) == 1:
                self.ctx.foldable[node.output[0]] = (kind, layer)
            return
        # fold forward later (into a Gemm) or materialise as a 1x1 depthwise affine
        if x.affine is not None:
            s0, t0 = x.affine
            scale, shift = s0 * scale, t0 * scale + shift
        nt = _Tensor(x.kt, affine=(scale, shift), pixel_norm=x.pixel_norm,
                     reversed_channels=x.reversed_channels)
        if x.reversed_channels:
            raise OnnxImportError(f"BatchNormalization {node.name!r} on the raw input is not supported")
        self.ctx.tensors[node.output[0]] = nt

    def _prelu(self, node: Any) -> None:
        import keras

        x = self._get(node.input[0])
        slope = self._const(node.input[1]).astype(np.float32)
        inp = self._materialize(x, node.output[0])
        c = int(inp.shape[-1])
        if slope.size == 1:
            alpha = np.full((1, 1, c), float(slope.reshape(())), np.float32)
        elif slope.size == c:
            alpha = slope.reshape(1, 1, c)
        else:
            raise OnnxImportError(f"PRelu {node.name!r}: slope shape {slope.shape} is not per-channel")
        layer = keras.layers.PReLU(shared_axes=[1, 2], name=self._layer_name(node.output[0]))
        out = layer(inp)
        layer.set_weights([alpha])
        self.ctx.tensors[node.output[0]] = _Tensor(out)

    def _relu(self, node: Any) -> None:
        import keras

        x = self._get(node.input[0])
        inp = self._materialize(x, node.output[0])
        self.ctx.tensors[node.output[0]] = _Tensor(keras.layers.ReLU(name=self._layer_name(node.output[0]))(inp))

    def _add(self, node: Any) -> None:
        import keras

        if any(self._is_const(n) for n in node.input):
            raise OnnxImportError(f"Add {node.name!r} with a constant operand is not supported")
        xs = [self._materialize(self._get(n), node.output[0]) for n in node.input]
        self.ctx.tensors[node.output[0]] = _Tensor(keras.layers.Add(name=self._layer_name(node.output[0]))(xs))

    def _sub_mul(self, node: Any) -> None:
        op = node.op_type
        a_name, b_name = node.input[0], node.input[1]
        if self._is_const(a_name) and self._is_const(b_name):
            a, b = self.ctx.consts[a_name], self.ctx.consts[b_name]
            self.ctx.consts[node.output[0]] = a - b if op == "Sub" else a * b
            return
        if op == "Mul" and self._is_const(a_name):
            a_name, b_name = b_name, a_name
        if self._is_const(a_name) or not self._is_const(b_name):
            raise OnnxImportError(f"{op} {node.name!r}: only tensor {op.lower()} scalar constant is supported")
        c = _scalar(self.ctx.consts[b_name])
        if c is None:
            raise OnnxImportError(f"{op} {node.name!r}: only a scalar constant operand is supported")
        x = self._get(a_name)
        if x.affine is not None:
            raise OnnxImportError(f"{op} {node.name!r}: scalar arithmetic after BatchNormalization is not supported")
        mean, scale = x.pixel_norm if x.pixel_norm is not None else (0.0, 1.0)
        # (v - mean) * scale  then  - c  ->  (v - (mean + c / scale)) * scale ;  * c  ->  scale * c
        if op == "Sub":
            mean = mean + c / scale
        else:
            scale = scale * c
        self.ctx.tensors[node.output[0]] = _Tensor(x.kt, pixel_norm=(mean, scale),
                                                   reversed_channels=x.reversed_channels)

    def _flatten(self, node: Any, a: dict[str, Any]) -> None:
        import keras

        if int(a.get("axis", 1)) != 1:
            raise OnnxImportError(f"Flatten {node.name!r}: only axis=1 is supported")
        x = self._get(node.input[0])
        shape = tuple(int(d) for d in x.kt.shape[1:])
        if len(shape) != 3:
            raise OnnxImportError(f"Flatten {node.name!r}: expected a 4-D input, got {x.kt.shape}")
        out = keras.layers.Flatten(name=self._layer_name(node.output[0]))(x.kt)
        self.ctx.tensors[node.output[0]] = _Tensor(out, affine=x.affine, pixel_norm=x.pixel_norm,
                                                   flattened_from=shape)  # type: ignore[arg-type]
        if x.pixel_norm is not None or x.reversed_channels:
            raise OnnxImportError(f"Flatten {node.name!r} directly on the input is not supported")

    def _gemm(self, node: Any, a: dict[str, Any]) -> None:
        w = self._const(node.input[1]).astype(np.float64)
        b = self._const(node.input[2]).astype(np.float64) if len(node.input) > 2 and node.input[2] else None
        if int(a.get("transA", 0)):
            raise OnnxImportError(f"Gemm {node.name!r}: transA=1 is not supported")
        if not int(a.get("transB", 0)):
            w = w.T  # -> (out, in)
        w = w * float(a.get("alpha", 1.0))
        out_n = w.shape[0]
        b = np.zeros(out_n) if b is None else np.broadcast_to(b * float(a.get("beta", 1.0)), (out_n,)).copy()
        self._dense(node, w, b)

    def _dense(self, node: Any, w: np.ndarray, b: np.ndarray) -> None:
        """A Dense layer computing ``x @ w.T + b`` (``w`` is (out, in)) on the node's first input."""
        import keras

        x = self._get(node.input[0])
        out_n = w.shape[0]
        if x.flattened_from is not None:
            h, wd, c = x.flattened_from
            if x.affine is not None:  # y = s*x + t per channel (CHW): fold into the weights
                s, t = x.affine
                w4 = w.reshape(out_n, c, h * wd)
                b = b + (w4 * t.reshape(1, c, 1)).sum(axis=(1, 2))
                w = (w4 * s.reshape(1, c, 1)).reshape(out_n, -1)
            # rows CHW -> HWC so Keras' NHWC Flatten needs no transpose
            w = w.reshape(out_n, c, h, wd).transpose(0, 2, 3, 1).reshape(out_n, -1)
            inp = x.kt
        else:
            inp = self._materialize(x, node.output[0])
            if len(inp.shape) != 2:
                raise OnnxImportError(f"{node.op_type} {node.name!r}: expected a 2-D input, got {inp.shape}")
        layer = keras.layers.Dense(out_n, use_bias=True, name=self._layer_name(node.output[0]))
        out = layer(inp)
        layer.set_weights([w.T.astype(np.float32), b.astype(np.float32)])
        self.ctx.tensors[node.output[0]] = _Tensor(out)
        if self.ctx.consumers.get(node.output[0], 0) == 1:
            self.ctx.foldable[node.output[0]] = ("dense", layer)

    # --- classifier ops (MiniFASNet: squeeze-excitation, MatMul) -----------------------------------
    def _matmul(self, node: Any) -> None:
        """``x @ W`` with a constant (in, out) ``W``: a Dense layer without bias (a BN1d after it folds in)."""
        if not self._is_const(node.input[1]) or self._is_const(node.input[0]):
            raise OnnxImportError(f"MatMul {node.name!r}: only tensor @ constant matrix is supported")
        w = self._const(node.input[1]).astype(np.float64)
        if w.ndim != 2:
            raise OnnxImportError(f"MatMul {node.name!r}: expected a 2-D weight, got shape {w.shape}")
        self._dense(node, w.T, np.zeros(w.shape[1]))

    def _global_avg_pool(self, node: Any) -> None:
        import keras

        x = self._materialize(self._get(node.input[0]), node.output[0])
        if len(x.shape) != 4:
            raise OnnxImportError(f"GlobalAveragePool {node.name!r}: expected a 4-D input, got {x.shape}")
        pool = keras.layers.GlobalAveragePooling2D(keepdims=True, name=self._layer_name(node.output[0]))
        self.ctx.tensors[node.output[0]] = _Tensor(pool(x))

    def _mul_tensors(self, node: Any) -> None:
        """Element-wise product of two computed tensors, broadcast as ONNX does (squeeze-excitation:
        an (N, C, H, W) map times its (N, C, 1, 1) channel gates)."""
        import keras

        xs = [self._materialize(self._get(n), node.output[0]) for n in node.input]
        if len(xs[0].shape) != len(xs[1].shape):
            raise OnnxImportError(f"Mul {node.name!r}: operands of rank {len(xs[0].shape)} and {len(xs[1].shape)}")
        mul = keras.layers.Multiply(name=self._layer_name(node.output[0]))
        self.ctx.tensors[node.output[0]] = _Tensor(mul(xs))

    # --- detector ops (YuNet) -------------------------------------------------------------
    def _maxpool(self, node: Any, a: dict[str, Any]) -> None:
        import keras

        kernel = tuple(int(k) for k in a["kernel_shape"])
        strides = tuple(int(v) for v in a.get("strides", kernel))
        if any(a.get("pads", [0, 0, 0, 0])) or int(a.get("ceil_mode", 0)) or len(kernel) != 2:
            raise OnnxImportError(f"MaxPool {node.name!r}: only 2-D pooling without padding or ceil_mode")
        inp = self._materialize(self._get(node.input[0]), node.output[0])
        layer = keras.layers.MaxPooling2D(kernel, strides, padding="valid", name=self._layer_name(node.output[0]))
        self.ctx.tensors[node.output[0]] = _Tensor(layer(inp))

    def _resize(self, node: Any, a: dict[str, Any]) -> None:
        """Nearest-neighbour upsampling by an integer factor (``asymmetric`` + ``floor``: each pixel
        repeated): ``converter.layers.NearestUpsample``."""
        from converter.layers import NearestUpsample

        mode = a.get("mode", b"nearest")
        ctm = a.get("coordinate_transformation_mode", b"half_pixel")
        nearest = a.get("nearest_mode", b"round_prefer_floor")
        scales = self._const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(0)
        ok_scale = scales.size == 4 and scales[0] == scales[1] == 1 and scales[2] == scales[3] \
            and float(scales[2]).is_integer() and scales[2] >= 1
        if mode != b"nearest" or ctm != b"asymmetric" or nearest != b"floor" or not ok_scale:
            raise OnnxImportError(f"Resize {node.name!r}: only nearest / asymmetric / floor by an integer "
                                  f"scale is supported (got {mode!r}, {ctm!r}, {nearest!r}, scales {scales})")
        inp = self._materialize(self._get(node.input[0]), node.output[0])
        s = int(scales[2])
        layer = NearestUpsample(s, name=self._layer_name(node.output[0]))
        self.ctx.tensors[node.output[0]] = _Tensor(layer(inp))

    def _transpose(self, node: Any, a: dict[str, Any]) -> None:
        """NCHW -> NHWC (perm 0,2,3,1) is what the Keras tensor already is: nothing runs."""
        x = self._get(node.input[0])
        if [int(p) for p in a.get("perm", [])] != [0, 2, 3, 1] or len(x.kt.shape) != 4 or x.nhwc:
            raise OnnxImportError(f"Transpose {node.name!r}: only NCHW -> NHWC (perm 0,2,3,1) is supported")
        self.ctx.tensors[node.output[0]] = _Tensor(self._materialize(x, node.output[0]), nhwc=True)

    def _reshape_tensor(self, node: Any) -> None:
        """Reshape of a computed tensor whose ONNX layout equals the Keras one (after a Transpose to
        NHWC), batch kept: ``[1, -1, C]`` flattens the positions, as YuNet's heads do."""
        import keras

        x = self._get(node.input[0])
        shape = [int(s) for s in self._const(node.input[1])]
        if not x.nhwc or not shape or shape[0] != 1:
            raise OnnxImportError(f"Reshape {node.name!r} of a computed tensor: only after a Transpose to NHWC, "
                                  f"keeping the batch of 1 (target {shape})")
        layer = keras.layers.Reshape(tuple(shape[1:]), name=self._layer_name(node.output[0]))
        self.ctx.tensors[node.output[0]] = _Tensor(layer(x.kt), nhwc=True)

    def _sigmoid(self, node: Any) -> None:
        import keras

        x = self._get(node.input[0])
        layer = keras.layers.Activation("sigmoid", name=self._layer_name(node.output[0]))
        self.ctx.tensors[node.output[0]] = _Tensor(layer(self._materialize(x, node.output[0])), nhwc=x.nhwc)

    def _raw_outputs(self, graph: Any) -> dict[str, Any]:
        """Every graph output by its ONNX name, nothing appended (``head="raw"``)."""
        outs = {}
        for o in graph.output:
            kt = self._materialize(self._get(o.name), o.name)
            x = self._get(o.name)
            if len(kt.shape) == 4 and not x.nhwc:
                raise OnnxImportError(f"output {o.name!r} is an NCHW map: transpose it to NHWC in the graph")
            outs[o.name] = kt
        return outs

    # --- driver --------------------------------------------------------------------------
    def build(self) -> Any:
        import keras
        from onnx import numpy_helper

        from converter.layers import L2Normalize

        g = self.model.graph
        unsupported = sorted({n.op_type for n in g.node if n.op_type not in SUPPORTED_OPS})
        if unsupported:
            raise OnnxImportError(f"unsupported ONNX op(s): {', '.join(unsupported)} "
                               f"(supported: {', '.join(SUPPORTED_OPS)})")
        for init in g.initializer:
            self.ctx.consts[init.name] = numpy_helper.to_array(init)
        for n in g.node:
            for i in n.input:
                if i:
                    self.ctx.consumers[i] = self.ctx.consumers.get(i, 0) + 1
        for o in g.output:
            self.ctx.consumers[o.name] = self.ctx.consumers.get(o.name, 0) + 1
        real_inputs = [i for i in g.input if i.name not in self.ctx.consts and self.ctx.consumers.get(i.name)]
        dropped = [i.name for i in g.input if i.name not in self.ctx.consts and not self.ctx.consumers.get(i.name)]
        if dropped:
            log.info("dropping %d unused graph inputs", len(dropped))
        if len(real_inputs) != 1:
            raise OnnxImportError(f"expected one image input, found {[i.name for i in real_inputs]}")
        dims = [d.dim_value for d in real_inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or not all(dims[1:]):
            raise OnnxImportError(f"expected an NCHW image input with fixed C, H, W; got {dims}")
        _, c, h, w = dims
        if self.input_size is not None:
            h, w = self.input_size
        inp = keras.Input(shape=(h, w, c), batch_size=1, name="image")
        self.ctx.tensors[real_inputs[0].name] = _Tensor(
            inp, reversed_channels=(self.input_order == "RGB" and c == 3))

        for node in g.node:
            a = _attrs(node)
            op = node.op_type
            if op == "Constant":
                from onnx import numpy_helper as nh

                self.ctx.consts[node.output[0]] = nh.to_array(a["value"]) if "value" in a else np.asarray(
                    a.get("value_float", a.get("value_floats")))
            elif op == "DequantizeLinear":
                zp = self.ctx.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                self.ctx.consts[node.output[0]] = _dequantize(
                    self._const(node.input[0]), self._const(node.input[1]), zp,
                    int(a.get("axis", 1)), int(a.get("block_size", 0)))
            elif op == "Reshape" and not self._is_const(node.input[0]):
                self._reshape_tensor(node)
            elif op == "Reshape":
                self.ctx.consts[node.output[0]] = self._const(node.input[0]).reshape(
                    [int(s) for s in self._const(node.input[1])])
            elif op == "Identity":
                src = node.input[0]
                if self._is_const(src):
                    self.ctx.consts[node.output[0]] = self.ctx.consts[src]
                else:
                    self.ctx.tensors[node.output[0]] = self._get(src)
            elif op == "Dropout":
                self.ctx.tensors[node.output[0]] = self._get(node.input[0])
                if node.input[0] in self.ctx.foldable:
                    self.ctx.foldable[node.output[0]] = self.ctx.foldable.pop(node.input[0])
            elif op == "Conv":
                self._conv(node, a)
            elif op == "BatchNormalization":
                self._batchnorm(node, a)
            elif op == "PRelu":
                self._prelu(node)
            elif op == "Relu":
                self._relu(node)
            elif op == "Add":
                self._add(node)
            elif op == "Mul" and not any(self._is_const(n) for n in node.input):
                self._mul_tensors(node)
            elif op in ("Sub", "Mul"):
                self._sub_mul(node)
            elif op == "Flatten":
                self._flatten(node, a)
            elif op == "Gemm":
                self._gemm(node, a)
            elif op == "MaxPool":
                self._maxpool(node, a)
            elif op == "Resize":
                self._resize(node, a)
            elif op == "Transpose":
                self._transpose(node, a)
            elif op == "Sigmoid":
                self._sigmoid(node)
            elif op == "MatMul":
                self._matmul(node)
            elif op == "GlobalAveragePool":
                self._global_avg_pool(node)

        if self.head == "raw":
            return keras.Model(inp, self._raw_outputs(g), name=self.name)
        if len(g.output) != 1:
            raise OnnxImportError(f"expected one output, found {len(g.output)}")
        out = self._get(g.output[0].name)
        kt = self._materialize(out, "embedding")
        if len(kt.shape) != 2:
            raise OnnxImportError(f"expected a 2-D embedding output, got {kt.shape}")
        emb = L2Normalize(name="l2_normalize")(kt)
        return keras.Model(inp, emb, name=self.name)


def _keras() -> Any:
    import keras

    return keras


# What we know about source files, by sha256 (written to OUT.provenance.json for the exporter)
KNOWN_SOURCES: dict[str, dict[str, Any]] = {
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee": {
        "license": "Apache-2.0",
        "authors": "SFace: Zhong et al., 2021 (IEEE TIP), as published in OpenCV Zoo "
                   "(models/face_recognition_sface)",
        "training_data": "not stated by OpenCV Zoo; the SFace paper trains on CASIA-WebFace, VGGFace2 and MS1MV2",
        "lfw_folds_used": [],
    },
    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10": {
        "license": "MIT (Copyright (c) 2020 Shiqi Yu; OpenCV Zoo models/face_detection_yunet/LICENSE)",
        "authors": "YuNet: Wu et al., \"YuNet: A Tiny Millisecond-level Face Detector\" (Machine Intelligence "
                   "Research, 2023), as published in OpenCV Zoo (models/face_detection_yunet)",
        "training_data": "not stated by OpenCV Zoo; evaluated on WIDER FACE, trained with libfacedetection.train",
        "lfw_folds_used": [],
    },
    # MiniFASNet presentation-attack (liveness) classifiers, ../shared/models/README.md
    "4eed38f0bde33c9b805942a5f25e42ce1161e2bda545254be622be957727794e": {
        "license": "Apache-2.0",
        "authors": "MiniFASNetV2 by minivision-ai/Silent-Face-Anti-Spoofing (weights "
                   "2.7_80x80_MiniFASNetV2.pth), exported to ONNX by yakhyo/face-anti-spoofing (commit c175efef)",
        "training_data": "not stated by the sources (minivision-ai's own anti-spoofing data)",
        "lfw_folds_used": [],
    },
    "d819a69bac6b9ade2a0f4d9b60b618e1260f7bf3ba1fddff6c5d82131cb1083f": {
        "license": "Apache-2.0",
        "authors": "MiniFASNetV1SE by minivision-ai/Silent-Face-Anti-Spoofing (weights "
                   "4_0_0_80x80_MiniFASNetV1SE.pth), exported to ONNX by yakhyo/face-anti-spoofing (commit c175efef)",
        "training_data": "not stated by the sources (minivision-ai's own anti-spoofing data)",
        "lfw_folds_used": [],
    },
}

# How to import known source files (by sha256) when the caller does not say: the channel order the ONNX
# graph expects and the head (see HEADS). Anything else: RGB and "l2", as SFace.
SOURCE_OPTIONS: dict[str, dict[str, str]] = {
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee": {"input_order": "RGB", "head": "l2"},
    "4eed38f0bde33c9b805942a5f25e42ce1161e2bda545254be622be957727794e": {"input_order": "BGR", "head": "raw"},
    "d819a69bac6b9ade2a0f4d9b60b618e1260f7bf3ba1fddff6c5d82131cb1083f": {"input_order": "BGR", "head": "raw"},
}


def source_options(src: str | Path, input_order: str | None = None, head: str | None = None) -> dict[str, str]:
    """The import options for ``src``: those given, else what ``SOURCE_OPTIONS`` knows, else RGB / l2."""
    known = SOURCE_OPTIONS.get(sha256_file(src), {})
    return {"input_order": input_order or known.get("input_order", "RGB"), "head": head or known.get("head", "l2")}


def provenance(src: str | Path) -> dict[str, Any]:
    """Source name, sha256 and (for known files) licence, authors and training data."""
    p = Path(src)
    digest = sha256_file(p)
    info: dict[str, Any] = {"source": p.name, "source_sha256": digest,
                            "license": "unknown", "authors": "unknown", "training_data": "unknown",
                            "lfw_folds_used": []}
    info.update(KNOWN_SOURCES.get(digest, {}))
    info["converted_by"] = "converter.import_onnx"
    return info


def import_onnx(src: str | Path, dst: str | Path | None = None, input_order: str | None = None,
                input_size: tuple[int | None, int | None] | None = None, head: str | None = None) -> Any:
    """Build the Keras model for ``src``; save it (and ``DST.provenance.json``) to ``dst`` if given.

    ``input_size`` (H, W) and ``head`` are passed to ``OnnxImporter``; ``input_order`` and ``head``
    default to ``source_options(src)``."""
    model = OnnxImporter(src, input_size=input_size, **source_options(src, input_order, head)).build()
    if dst is not None:
        d = Path(dst)
        d.parent.mkdir(parents=True, exist_ok=True)
        model.save(str(d))
        d.with_name(d.stem + ".provenance.json").write_text(json.dumps(provenance(src), indent=2) + "\n")
        log.info("wrote %s (%d parameters)", d, model.count_params())
    return model


def onnxruntime_session(src: str | Path) -> Any:
    """An onnxruntime session on ``src`` with its unused inputs removed (onnxruntime refuses them)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(src))
    used = {i for n in m.graph.node for i in n.input}
    inits = {i.name for i in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name in used and i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _size_arg(text: str) -> tuple[int | None, int | None]:
    """``WxH`` -> (H, W); ``any`` -> (None, None), a resizable input."""
    if text.lower() == "any":
        return None, None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH (e.g. 320x256) or any, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return h, w


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m converter.import_onnx", description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="ONNX face encoder, detector or liveness classifier (NCHW)")
    p.add_argument("out", type=Path, help="output .keras file")
    p.add_argument("--input-order", choices=["RGB", "BGR"],
                   help="channel order the ONNX graph expects (default: known per source file, else RGB as "
                        "SFace); the Keras model takes BGR")
    p.add_argument("--input-size", type=_size_arg, metavar="WxH",
                   help="replace the graph's input size, or 'any' for a resizable one (fully convolutional "
                        "graphs: a detector)")
    p.add_argument("--head", choices=HEADS,
                   help="l2: one embedding output, L2-normalised (encoders); raw: every output as is "
                        "(detectors, classifiers). Default: known per source file, else l2")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(message)s")
    try:
        import_onnx(args.src, args.out, input_order=args.input_order, input_size=args.input_size, head=args.head)
    except ConverterError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except (OSError, ValueError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
