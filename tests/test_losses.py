"""Triplet losses against values computed by hand on tiny 1-D examples, and against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from converter.layers import L2Normalize  # noqa: E402
from converter.losses import (  # noqa: E402
    MININGS,
    batch_all,
    distillation_loss,
    fraction_positive,
    pairwise_squared_distances,
    triplet_loss,
)

# 1-D points: squared distances d01=1, d02=4, d03=16, d12=1, d13=9, d23=4
LABELS_A = np.array([0, 0, 1, 1])
POINTS_A = np.array([[0.0], [1.0], [2.0], [4.0]], np.float32)

# anchor 0 with positive 1 (d_ap=4), a hard negative 2 (d=1) and a semi-hard negative 3 (d=4.84)
LABELS_B = np.array([0, 0, 1, 2])
POINTS_B = np.array([[0.0], [2.0], [1.0], [-2.2]], np.float32)


def value(x: object) -> float:
    return float(keras.ops.convert_to_numpy(x))


def test_pairwise_distances() -> None:
    d = keras.ops.convert_to_numpy(pairwise_squared_distances(POINTS_A))
    expected = np.array([[0, 1, 4, 16], [1, 0, 1, 9], [4, 1, 0, 4], [16, 9, 4, 0]], np.float32)
    np.testing.assert_allclose(d, expected, atol=1e-5)


def test_batch_hard_by_hand() -> None:
    # margin 2: anchors 0..3 -> max(1-4+2,0)=0, max(1-1+2,0)=2, max(4-1+2,0)=5, max(4-9+2,0)=0
    assert value(triplet_loss(LABELS_A, POINTS_A, 2.0, "batch_hard")) == pytest.approx(7 / 4, abs=1e-5)
    # B, margin 1: anchors 0 and 1 have positives: 4-1+1 = 4 each; anchors 2, 3 have none
    assert value(triplet_loss(LABELS_B, POINTS_B, 1.0, "batch_hard")) == pytest.approx(4.0, abs=1e-5)


def test_batch_all_by_hand() -> None:
    # A, margin 2: 8 valid triplets, the positive ones are (1,0,2)=2, (2,3,0)=2, (2,3,1)=5
    loss, frac = batch_all(LABELS_A, POINTS_A, 2.0)
    assert value(loss) == pytest.approx(9 / 3, abs=1e-5)
    assert value(frac) == pytest.approx(3 / 8, abs=1e-6)
    assert value(fraction_positive(LABELS_A, POINTS_A, 2.0)) == pytest.approx(3 / 8, abs=1e-6)
    # B, margin 1: (0,1,2)=4, (0,1,3)=4-4.84+1=0.16, (1,0,2)=4, (1,0,3)<0: 3 of 4 positive
    loss, frac = batch_all(LABELS_B, POINTS_B, 1.0)
    assert value(loss) == pytest.approx(8.16 / 3, abs=1e-4)
    assert value(frac) == pytest.approx(0.75, abs=1e-6)


def test_semi_hard_by_hand() -> None:
    # B, margin 1: (0,1): negative 3 is semi-hard (4 < 4.84 < 5) -> 0.16, not the hard one (d=1);
    # (1,0): no negative in (4, 5) -> the nearest negative (d=1) -> 4-1+1 = 4
    assert value(triplet_loss(LABELS_B, POINTS_B, 1.0, "semi_hard")) == pytest.approx(
        (0.16 + 4) / 2, abs=1e-4
    )
    # A, margin 2: no semi-hard negative anywhere -> nearest negatives: 0, 2, 5, 0
    assert value(triplet_loss(LABELS_A, POINTS_A, 2.0, "semi_hard")) == pytest.approx(7 / 4, abs=1e-5)


def brute_force(labels: np.ndarray, emb: np.ndarray, margin: float, mining: str) -> float:
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    n = len(labels)
    if mining == "batch_all":
        losses = [
            max(d[a, p] - d[a, q] + margin, 0.0)
            for a, p, q in itertools.product(range(n), repeat=3)
            if a != p and labels[a] == labels[p] and labels[q] != labels[a]
        ]
        pos = [v for v in losses if v > 1e-16]
        return sum(pos) / max(len(pos), 1)
    per: list[float] = []
    for a in range(n):
        ps = [p for p in range(n) if p != a and labels[p] == labels[a]]
        ns = [q for q in range(n) if labels[q] != labels[a]]
        if not ps or not ns:
            continue
        if mining == "batch_hard":
            per.append(max(max(d[a, p] for p in ps) - min(d[a, q] for q in ns) + margin, 0.0))
            continue
        for p in ps:
            semi = [d[a, q] for q in ns if d[a, p] < d[a, q] < d[a, p] + margin]
            neg = min(semi) if semi else min(d[a, q] for q in ns)
            per.append(max(d[a, p] - neg + margin, 0.0))
    return sum(per) / max(len(per), 1)


@pytest.mark.parametrize("mining", MININGS)
def test_matches_brute_force_on_random_batches(mining: str) -> None:
    rng = np.random.default_rng(3)
    for _ in range(3):
        labels = rng.integers(0, 4, 12)
        emb = rng.normal(size=(12, 8)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        expected = brute_force(labels, emb.astype(np.float64), 0.3, mining)
        assert value(triplet_loss(labels, emb, 0.3, mining)) == pytest.approx(expected, abs=1e-4)


def test_no_positive_pair_gives_zero() -> None:
    emb = np.eye(4, dtype=np.float32)
    for mining in MININGS:
        assert value(triplet_loss(np.arange(4), emb, 0.2, mining)) == 0.0


@pytest.mark.parametrize("mining", MININGS)
def test_identical_embeddings_have_finite_gradients(mining: str) -> None:
    """All encodings equal (distance 0 everywhere, the collapsed state): loss = margin, gradients finite."""
    raw = tf.Variable(np.ones((8, 16), np.float32))
    labels = np.repeat(np.arange(4), 2)
    with tf.GradientTape() as tape:
        emb = L2Normalize()(raw)
        loss = triplet_loss(labels, emb, 0.2, mining)
    grad = tape.gradient(loss, raw)
    assert value(loss) == pytest.approx(0.2, abs=1e-6)
    assert np.all(np.isfinite(grad.numpy()))


def test_unknown_mining_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mining"):
        triplet_loss(LABELS_A, POINTS_A, 0.2, "random")


def test_distillation_loss() -> None:
    s = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    t = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    assert value(distillation_loss(s, t)) == pytest.approx(1.0)  # (0 + 2) / 2
