"""Verification metrics on pair distances, numpy only.

Conventions used throughout: ``distances`` are squared L2 distances between normalised encodings
(lower means more alike), ``same`` is a boolean array (True for a genuine pair), and a pair is
accepted as the same person when ``distance < tau`` (strictly), exactly as the runtime decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from converter.errors import ConverterError

FloatArray = npt.NDArray[np.float64]


class MetricsError(ConverterError):
    """Bad input to a metric (empty, one class only, mismatched lengths)."""


@dataclass(frozen=True)
class Roc:
    """ROC operating points, one per threshold, thresholds ascending."""

    thresholds: FloatArray
    far: FloatArray  # impostor pairs accepted / impostor pairs
    tar: FloatArray  # genuine pairs accepted / genuine pairs

    @property
    def frr(self) -> FloatArray:
        return 1.0 - self.tar


def _split(distances: npt.ArrayLike, same: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Sorted genuine and impostor distances, after checking the inputs."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    if d.shape != s.shape:
        raise MetricsError(f"{d.size} distances but {s.size} labels")
    if not np.all(np.isfinite(d)):
        raise MetricsError("distances contain NaN or infinity")
    genuine, impostor = np.sort(d[s]), np.sort(d[~s])
    if genuine.size == 0 or impostor.size == 0:
        raise MetricsError(f"need genuine and impostor pairs, got {genuine.size} and {impostor.size}")
    return genuine, impostor


def _accepted_fraction(sorted_d: FloatArray, thresholds: FloatArray) -> FloatArray:
    """Fraction of ``sorted_d`` strictly below each threshold."""
    return np.searchsorted(sorted_d, thresholds, side="left") / sorted_d.size


def accuracy_at(distances: npt.ArrayLike, same: npt.ArrayLike, tau: float) -> float:
    """Fraction of pairs decided correctly with threshold ``tau``."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    if d.size == 0 or d.shape != s.shape:
        raise MetricsError(f"{d.size} distances and {s.size} labels")
    return float(np.mean((d < tau) == s))


def roc(distances: npt.ArrayLike, same: npt.ArrayLike) -> Roc:
    """All distinct operating points: thresholds are the distinct distances plus one above the maximum.

    The first point accepts nothing (FAR = TAR = 0), the last accepts everything (FAR = TAR = 1).
    """
    genuine, impostor = _split(distances, same)
    values = np.unique(np.concatenate([genuine, impostor]))
    thresholds = np.append(values, np.nextafter(values[-1], np.inf))
    return Roc(thresholds, _accepted_fraction(impostor, thresholds), _accepted_fraction(genuine, thresholds))


def best_threshold(distances: npt.ArrayLike, same: npt.ArrayLike) -> tuple[float, float]:
    """The threshold with the highest accuracy on these pairs, and that accuracy.

    Candidates are the midpoints between consecutive distinct distances, plus one below all and one
    above all. Ties go to the smallest threshold (the stricter one).
    """
    genuine, impostor = _split(distances, same)
    values = np.unique(np.concatenate([genuine, impostor]))
    candidates = np.concatenate(
        [[values[0]], (values[:-1] + values[1:]) / 2.0, [np.nextafter(values[-1], np.inf)]]
    )
    correct = np.searchsorted(genuine, candidates, side="left") + (
        impostor.size - np.searchsorted(impostor, candidates, side="left")
    )
    best = int(np.argmax(correct))
    return float(candidates[best]), float(correct[best] / (genuine.size + impostor.size))


def kfold_accuracy(
    distances: npt.ArrayLike, same: npt.ArrayLike, folds: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Accuracy of each fold with the threshold chosen on all the other folds.

    Returns (accuracies, thresholds), one entry per distinct fold id in ascending order.
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    f = np.asarray(folds).ravel()
    if not d.shape == s.shape == f.shape:
        raise MetricsError(f"{d.size} distances, {s.size} labels, {f.size} fold ids")
    ids = np.unique(f)
    if ids.size < 2:
        raise MetricsError(f"k-fold accuracy needs at least 2 folds, got {ids.size}")
    accuracies, thresholds = [], []
    for fold in ids:
        test = f == fold
        tau, _ = best_threshold(d[~test], s[~test])
        thresholds.append(tau)
        accuracies.append(accuracy_at(d[test], s[test], tau))
    return np.asarray(accuracies), np.asarray(thresholds)


def tau_at_far(distances: npt.ArrayLike, same: npt.ArrayLike, far: float) -> float:
    """The largest threshold whose false accept rate on these pairs is at most ``far``.

    With n impostor pairs at most k = floor(far * n) of them may be accepted, so tau is the (k+1)-th
    smallest impostor distance (accepting is strict). Returns +inf when every impostor may pass.
    """
    if not 0.0 <= far <= 1.0:
        raise MetricsError(f"FAR must be within [0, 1], got {far}")
    _, impostor = _split(distances, same)
    return tau_from_sorted(impostor, far)


def tau_from_sorted(impostor_sorted: np.ndarray, rate: float) -> float:
    """The largest tau accepting at most k = floor(rate * n) of n sorted impostor distances: the (k+1)-th
    smallest (accepting is strict); +inf when every impostor may pass."""
    k = int(np.floor(rate * impostor_sorted.size + 1e-9))
    return float("inf") if k >= impostor_sorted.size else float(impostor_sorted[k])


def tar_at_far(distances: npt.ArrayLike, same: npt.ArrayLike, far: float) -> tuple[float, float]:
    """(TAR, tau): genuine accept rate at the threshold given by :func:`tau_at_far`."""
    genuine, _ = _split(distances, same)
    tau = tau_at_far(distances, same, far)
    return float(np.searchsorted(genuine, tau, side="left") / genuine.size), tau


def eer(distances: npt.ArrayLike, same: npt.ArrayLike) -> tuple[float, float]:
    """(EER, tau): the equal error rate, where FAR equals FRR.

    FAR rises and FRR falls along the ROC thresholds; the crossing is interpolated linearly between
    the last operating point with FAR < FRR and the first with FAR >= FRR (the threshold likewise).
    """
    curve = roc(distances, same)
    diff = curve.far - curve.frr
    i = int(np.argmax(diff >= 0.0))  # exists: the last point has FAR = 1, FRR = 0
    if i == 0 or diff[i] == 0.0:
        return float((curve.far[i] + curve.frr[i]) / 2.0), float(curve.thresholds[i])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    rate = curve.far[i - 1] + t * (curve.far[i] - curve.far[i - 1])
    tau = curve.thresholds[i - 1] + t * (curve.thresholds[i] - curve.thresholds[i - 1])
    return float(rate), float(tau)


def roc_auc(distances: npt.ArrayLike, same: npt.ArrayLike) -> float:
    """Area under the ROC: the probability that a random impostor pair is farther apart than a random
    genuine pair, ties counting one half (Mann-Whitney U)."""
    genuine, impostor = _split(distances, same)
    below = np.searchsorted(impostor, genuine, side="right")  # impostors at most as far as each genuine
    strictly_below = np.searchsorted(impostor, genuine, side="left")
    ties = below - strictly_below
    farther = impostor.size - below
    return float((farther.sum() + 0.5 * ties.sum()) / (genuine.size * impostor.size))


def person_folds(persons: npt.ArrayLike, k: int, seed: int = 0) -> dict[str, int]:
    """Assign each distinct person to one of ``k`` folds (sizes differ by at most one), seeded."""
    names = sorted({str(p) for p in np.asarray(persons).ravel()})
    if not 2 <= k <= len(names):
        raise MetricsError(f"cannot split {len(names)} people into {k} folds")
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[j]: int(pos % k) for pos, j in enumerate(order)}
