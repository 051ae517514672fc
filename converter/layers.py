"""Custom Keras layers shared by imported and trained encoders.

They are registered so that a saved ``.keras`` file reloads without ``custom_objects``. They run on any
Keras backend (TensorFlow here; JAX or PyTorch on a GPU machine without TensorFlow).
"""

from __future__ import annotations

import os
from typing import Any

import keras
from keras import ops

from converter.errors import ConverterError


@keras.saving.register_keras_serializable(package="edge_verify")
class L2Normalize(keras.layers.Layer):
    """L2-normalise the last axis: ``x / sqrt(max(sum(x^2), epsilon))``.

    On the TensorFlow backend this is ``tf.math.l2_normalize``, which the TFLite converter turns into a
    single int8 ``L2_NORMALIZATION`` op, unlike ``keras.layers.UnitNormalization`` (which leaves a float
    SQUARE op behind); other backends compute the same with ``keras.ops``.
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs: Any) -> Any:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            return tf.math.l2_normalize(inputs, axis=-1, epsilon=self.epsilon)
        sq = ops.sum(ops.square(inputs), axis=-1, keepdims=True)
        return inputs * ops.rsqrt(ops.maximum(sq, self.epsilon))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="edge_verify")
class PixelNormalize(keras.layers.Layer):
    """``(x - mean) * scale`` on raw 0..255 pixels; keeps the model's input in pixel units."""

    def __init__(self, mean: float = 127.5, scale: float = 1.0 / 128.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = float(mean)
        self.scale = float(scale)

    def call(self, inputs: Any) -> Any:
        return (inputs - self.mean) * self.scale

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "scale": self.scale}


class EncoderLoadError(ConverterError):
    """A ``.keras`` encoder cannot be loaded (one-line message)."""


def load_encoder(path: str | os.PathLike[str]) -> Any:
    """A saved ``.keras`` encoder (this module's layers are registered), uncompiled.

    Raises ``EncoderLoadError`` with a one-line message when the file is missing or unreadable.
    """
    try:
        return keras.saving.load_model(str(path), compile=False)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EncoderLoadError(f"cannot load {path}: {first}") from None


@keras.saving.register_keras_serializable(package="edge_verify")
class NearestUpsample(keras.layers.Layer):
    """Nearest-neighbour upsampling by an integer ``factor`` (each pixel repeated factor x factor).

    On the TensorFlow backend it is the input concatenated ``factor**2`` times along the channels and
    ``depth_to_space``: both run inside XNNPACK, unlike the TILE that ``UpSampling2D`` converts to, and
    no shape is baked in, so the TFLite input can still be resized. Other backends use ``ops.repeat``.
    """

    def __init__(self, factor: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs: Any) -> Any:
        f = self.factor
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            return tf.nn.depth_to_space(tf.concat([inputs] * (f * f), axis=-1), f)
        return ops.repeat(ops.repeat(inputs, f, axis=1), f, axis=2)

    def compute_output_shape(self, input_shape: Any) -> Any:
        b, h, w, c = input_shape
        return (b, None if h is None else h * self.factor, None if w is None else w * self.factor, c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}
