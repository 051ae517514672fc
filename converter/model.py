"""A small MobileFaceNet-style face encoder built from int8-friendly ops.

Conv / DepthwiseConv / BatchNorm / ReLU and one Dense-like 1x1 conv: every op fuses or quantizes
cleanly to int8 and stays inside one XNNPACK delegate (ReLU instead of MobileFaceNet's PReLU, which
int8 XNNPACK does not take). Input: (112, 112, 3) float32 BGR pixels 0..255, normalised inside the
model by ``PixelNormalize``; output: 128-d, L2-normalised by ``L2Normalize``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from converter.layers import L2Normalize, PixelNormalize

# (expansion, channels, repeats, first stride), as in MobileFaceNet (Chen et al., 2018)
BLOCKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
BN_MOMENTUM = 0.9  # moving statistics settle within a few hundred steps (the default 0.99 needs thousands)


def _ch(c: int, width: float) -> int:
    return max(8, round(c * width / 8.0) * 8)


def _conv_bn(
    x: Any,
    filters: int,
    kernel: int,
    stride: int,
    name: str,
    relu: bool = True,
    depthwise: bool = False,
    momentum: float = BN_MOMENTUM,
) -> Any:
    if stride == 2 and kernel > 1:  # explicit symmetric padding: TF's 'same' pads (0, 1) at stride 2
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding=padding, use_bias=False, name=f"{name}_dw")(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-3, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def build_encoder(
    width: float = 1.0,
    embedding_size: int = 128,
    blocks: tuple[tuple[int, int, int, int], ...] = BLOCKS,
    name: str = "mobilefacenet",
    bn_momentum: float = BN_MOMENTUM,
) -> keras.Model:
    """MobileFaceNet-style encoder: ~1.0 M parameters at width 1 (128-d); ``width`` scales the channels."""
    m = bn_momentum
    inp = keras.Input((112, 112, 3), name="image_bgr")
    x = PixelNormalize(name="normalize")(inp)
    c0 = _ch(64, width)
    x = _conv_bn(x, c0, 3, 2, "stem", momentum=m)  # 56x56
    x = _conv_bn(x, c0, 3, 1, "stem2", depthwise=True, momentum=m)
    channels = c0
    for b, (t, c, n, s) in enumerate(blocks):
        out = _ch(c, width)
        for i in range(n):
            stride = s if i == 0 else 1
            name = f"b{b}_{i}"
            y = _conv_bn(x, channels * t, 1, 1, f"{name}_expand", momentum=m)
            y = _conv_bn(y, channels * t, 3, stride, f"{name}_mid", depthwise=True, momentum=m)
            y = _conv_bn(y, out, 1, 1, f"{name}_project", relu=False, momentum=m)
            x = layers.Add(name=f"{name}_add")([x, y]) if stride == 1 and channels == out else y
            channels = out
    x = _conv_bn(x, _ch(512, width), 1, 1, "head", momentum=m)
    k = int(x.shape[1])  # 7x7 at 112x112 input: global depthwise conv (GDC)
    x = layers.DepthwiseConv2D(k, padding="valid", use_bias=False, name="gdc_dw")(x)
    x = layers.BatchNormalization(momentum=m, epsilon=1e-3, name="gdc_bn")(x)
    x = layers.Conv2D(embedding_size, 1, use_bias=False, name="embedding_conv")(x)
    x = layers.BatchNormalization(momentum=m, epsilon=1e-3, name="embedding_bn")(x)
    x = layers.Reshape((embedding_size,), name="flatten")(x)
    out = L2Normalize(name="l2_normalize")(x)
    return keras.Model(inp, out, name=name)


def tiny_encoder(embedding_size: int = 128) -> keras.Model:
    """A few-layer encoder for tests: same input/output contract, ~40 k parameters; fast-moving
    BatchNorm statistics (momentum 0.6) so that a few steps already give usable inference-mode encodings."""
    return build_encoder(
        0.25, embedding_size, ((2, 64, 1, 2), (2, 128, 1, 2), (2, 128, 1, 2)), name="tiny", bn_momentum=0.6
    )
