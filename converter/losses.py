"""Triplet losses on squared L2 distances, with batch-all, batch-hard and semi-hard mining.

L(A, P, N) = max(||f(A) - f(P)||^2 - ||f(A) - f(N)||^2 + margin, 0), for an anchor A, a positive P
(same person, not A itself) and a negative N (another person), all taken from one batch.

Written with ``keras.ops`` only: works on any Keras 3 backend (TensorFlow here, JAX or PyTorch on a
GPU machine), with plain numpy arrays or tensors as inputs, under XLA / jit (no data-dependent
shapes). No square root is taken, so identical encodings give finite gradients.
"""

from __future__ import annotations

from typing import Any

from keras import ops

MININGS = ("batch_all", "batch_hard", "semi_hard")
_BIG = 1e9


def pairwise_squared_distances(embeddings: Any) -> Any:
    """(B, B) squared L2 distances, clamped at 0 against rounding."""
    e = ops.convert_to_tensor(embeddings, dtype="float32")
    dot = ops.matmul(e, ops.transpose(e))
    sq = ops.diagonal(dot)
    return ops.maximum(ops.expand_dims(sq, 1) - 2.0 * dot + ops.expand_dims(sq, 0), 0.0)


def _masks(labels: Any) -> tuple[Any, Any]:
    """Boolean (B, B) masks: positive pairs (same label, a != p) and negative pairs (other label)."""
    lab = ops.reshape(ops.cast(ops.convert_to_tensor(labels), "int32"), (-1,))
    same = ops.equal(ops.expand_dims(lab, 1), ops.expand_dims(lab, 0))
    eye = ops.cast(ops.eye(ops.shape(lab)[0]), "bool")
    return ops.logical_and(same, ops.logical_not(eye)), ops.logical_not(same)


def _safe_mean(values: Any, weights: Any) -> Any:
    w = ops.cast(weights, "float32")
    return ops.sum(values * w) / ops.maximum(ops.sum(w), 1.0)


def batch_all(labels: Any, embeddings: Any, margin: float = 0.2) -> tuple[Any, Any]:
    """Mean loss over the valid triplets whose loss is positive, and the fraction of valid triplets
    that are positive."""
    d = pairwise_squared_distances(embeddings)
    pos, neg = _masks(labels)
    loss = ops.expand_dims(d, 2) - ops.expand_dims(d, 1) + margin  # [a, p, n]
    valid = ops.logical_and(ops.expand_dims(pos, 2), ops.expand_dims(neg, 1))
    loss = ops.where(valid, ops.maximum(loss, 0.0), 0.0)
    positive = ops.cast(ops.greater(loss, 1e-16), "float32")
    n_pos = ops.sum(positive)
    n_valid = ops.sum(ops.cast(valid, "float32"))
    return ops.sum(loss) / ops.maximum(n_pos, 1.0), n_pos / ops.maximum(n_valid, 1.0)


def batch_hard(labels: Any, embeddings: Any, margin: float = 0.2) -> Any:
    """For each anchor with a positive and a negative: its farthest positive and nearest negative;
    the mean loss over those anchors."""
    d = pairwise_squared_distances(embeddings)
    pos, neg = _masks(labels)
    hardest_pos = ops.max(ops.where(pos, d, 0.0), axis=1)
    hardest_neg = ops.min(ops.where(neg, d, _BIG), axis=1)
    valid = ops.logical_and(ops.any(pos, axis=1), ops.any(neg, axis=1))
    return _safe_mean(ops.maximum(hardest_pos - hardest_neg + margin, 0.0), valid)


def semi_hard(labels: Any, embeddings: Any, margin: float = 0.2) -> Any:
    """FaceNet's semi-hard mining: for each (anchor, positive), the nearest negative that is farther
    than the positive but within the margin (d_ap < d_an < d_ap + margin); the nearest negative of
    the anchor when there is none. Mean over the (anchor, positive) pairs whose anchor has a negative."""
    d = pairwise_squared_distances(embeddings)
    pos, neg = _masks(labels)
    d_ap = ops.expand_dims(d, 2)  # [a, p, 1]
    d_an = ops.expand_dims(d, 1)  # [a, 1, n]
    semi = ops.logical_and(
        ops.expand_dims(neg, 1), ops.logical_and(ops.greater(d_an, d_ap), ops.less(d_an, d_ap + margin))
    )
    semi_neg = ops.min(ops.where(semi, d_an, _BIG), axis=2)  # [a, p]
    hardest_neg = ops.min(ops.where(neg, d, _BIG), axis=1, keepdims=True)  # [a, 1]
    chosen = ops.where(ops.any(semi, axis=2), semi_neg, hardest_neg)
    valid = ops.logical_and(pos, ops.any(neg, axis=1, keepdims=True))
    return _safe_mean(ops.maximum(d - chosen + margin, 0.0), valid)


def triplet_loss(labels: Any, embeddings: Any, margin: float = 0.2, mining: str = "batch_hard") -> Any:
    """The triplet loss of a batch, a scalar tensor; ``mining`` is batch_all, batch_hard or semi_hard."""
    if mining == "batch_all":
        return batch_all(labels, embeddings, margin)[0]
    if mining == "batch_hard":
        return batch_hard(labels, embeddings, margin)
    if mining == "semi_hard":
        return semi_hard(labels, embeddings, margin)
    raise ValueError(f"unknown mining {mining!r}: use one of {', '.join(MININGS)}")


def fraction_positive(labels: Any, embeddings: Any, margin: float = 0.2) -> Any:
    """The fraction of all valid triplets of the batch that still violate the margin (for logging)."""
    return batch_all(labels, embeddings, margin)[1]


def distillation_loss(student: Any, teacher: Any) -> Any:
    """Mean squared L2 distance between the student's and the teacher's normalised encodings."""
    s = ops.convert_to_tensor(student, dtype="float32")
    t = ops.convert_to_tensor(teacher, dtype="float32")
    return ops.mean(ops.sum(ops.square(s - t), axis=-1))
