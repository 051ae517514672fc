"""converter.metrics against small examples worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from converter import metrics

# Sorted: 0.1 g, 0.3 g, 0.4 i, 0.5 g, 0.6 i, 0.8 i, 0.9 i
GENUINE = [0.1, 0.3, 0.5]
IMPOSTOR = [0.4, 0.6, 0.8, 0.9]


def pairs(genuine: list[float], impostor: list[float]) -> tuple[np.ndarray, np.ndarray]:
    d = np.array(genuine + impostor)
    same = np.array([True] * len(genuine) + [False] * len(impostor))
    return d, same


def test_accuracy_at_is_strict() -> None:
    d, same = pairs(GENUINE, IMPOSTOR)
    # tau 0.5: 0.1, 0.3 accepted (right), 0.5 rejected (wrong: d < tau is strict), impostor 0.4
    # accepted (wrong), 0.6, 0.8, 0.9 rejected (right).
    assert metrics.accuracy_at(d, same, 0.5) == pytest.approx(5 / 7)
    assert metrics.accuracy_at(d, same, 0.0) == pytest.approx(4 / 7)


def test_best_threshold_takes_the_first_best_midpoint() -> None:
    d, same = pairs(GENUINE, IMPOSTOR)
    # Correct per candidate: 0.1->4, 0.2->5, 0.35->6, 0.45->5, 0.55->6, 0.7->5, ... : first best 0.35.
    tau, acc = metrics.best_threshold(d, same)
    assert tau == pytest.approx(0.35)
    assert acc == pytest.approx(6 / 7)


def test_best_threshold_separable() -> None:
    tau, acc = metrics.best_threshold(*pairs([0.1, 0.2], [0.8, 0.9]))
    assert tau == pytest.approx(0.5)
    assert acc == 1.0


def test_kfold_accuracy_uses_the_other_folds_threshold() -> None:
    # Fold 0: g 0.1 0.3, i 0.4 0.6 -> best threshold 0.35 (all right).
    # Fold 1: g 0.5 0.2, i 0.36 0.9 -> best threshold 0.28 (3 of 4).
    d = np.array([0.1, 0.3, 0.4, 0.6, 0.5, 0.2, 0.36, 0.9])
    same = np.array([True, True, False, False, True, True, False, False])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    acc, taus = metrics.kfold_accuracy(d, same, folds)
    # Fold 0 judged at 0.28: 0.3 rejected -> 3/4. Fold 1 judged at 0.35: 0.5 rejected -> 3/4.
    np.testing.assert_allclose(acc, [0.75, 0.75])
    np.testing.assert_allclose(taus, [0.28, 0.35])


def test_kfold_needs_two_folds() -> None:
    d, same = pairs(GENUINE, IMPOSTOR)
    with pytest.raises(metrics.MetricsError):
        metrics.kfold_accuracy(d, same, np.zeros(d.size))


def test_tar_at_far() -> None:
    d, same = pairs(GENUINE, IMPOSTOR)
    # 4 impostors, FAR 0.25 allows 1: tau = second impostor 0.6, all genuine below it.
    assert metrics.tar_at_far(d, same, 0.25) == pytest.approx((1.0, 0.6))
    # FAR 0.1 allows none: tau = smallest impostor 0.4, genuine 0.1 and 0.3 pass.
    assert metrics.tar_at_far(d, same, 0.1) == pytest.approx((2 / 3, 0.4))
    assert metrics.tau_at_far(d, same, 1.0) == float("inf")


def test_tau_at_far_keeps_far_under_target_with_ties() -> None:
    d, same = pairs([0.1], [0.3, 0.3, 0.7])
    tau = metrics.tau_at_far(d, same, 0.34)  # k = 1: tau = 0.3, which accepts no impostor
    assert tau == 0.3
    assert np.mean(d[~same] < tau) <= 0.34


def test_roc_points() -> None:
    curve = metrics.roc(*pairs(GENUINE, IMPOSTOR))
    np.testing.assert_allclose(curve.thresholds[:-1], [0.1, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9])
    np.testing.assert_allclose(curve.far, [0, 0, 0, 0.25, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1])


def test_eer_interpolates_the_crossing() -> None:
    # At 0.5: FAR 1/4, FRR 1/3; at 0.6: FAR 1/4, FRR 0. FAR - FRR goes -1/12 -> 1/4: t = 1/4.
    rate, tau = metrics.eer(*pairs(GENUINE, IMPOSTOR))
    assert rate == pytest.approx(0.25)
    assert tau == pytest.approx(0.525)


def test_eer_separable_is_zero() -> None:
    rate, tau = metrics.eer(*pairs([0.1, 0.2], [0.8, 0.9]))
    assert rate == 0.0
    assert 0.2 < tau <= 0.8


def test_auc() -> None:
    # Genuine 0.1 and 0.3 beat all 4 impostors, 0.5 beats 3: 11 of 12.
    assert metrics.roc_auc(*pairs(GENUINE, IMPOSTOR)) == pytest.approx(11 / 12)
    assert metrics.roc_auc(*pairs([0.5], [0.5])) == 0.5
    assert metrics.roc_auc(*pairs([0.1, 0.2], [0.8, 0.9])) == 1.0


def test_auc_matches_trapezoid_of_roc() -> None:
    rng = np.random.default_rng(1)
    d = np.concatenate([rng.normal(0.8, 0.3, 300), rng.normal(1.6, 0.3, 700)]).round(2)  # with ties
    same = np.arange(d.size) < 300
    curve = metrics.roc(d, same)
    assert metrics.roc_auc(d, same) == pytest.approx(np.trapezoid(curve.tar, curve.far), abs=1e-12)


def test_inputs_checked() -> None:
    with pytest.raises(metrics.MetricsError):
        metrics.roc_auc([0.1, 0.2], [True, True])
    with pytest.raises(metrics.MetricsError):
        metrics.eer([0.1, 0.2], [True])
    with pytest.raises(metrics.MetricsError):
        metrics.tar_at_far([0.1, float("nan")], [True, False], 0.1)


def test_person_folds_are_balanced_and_seeded() -> None:
    people = [f"p{i}" for i in range(10)]
    folds = metrics.person_folds(people + people, 3, seed=7)
    assert sorted(folds) == sorted(people)
    assert sorted(np.bincount(list(folds.values()))) == [3, 3, 4]
    assert folds == metrics.person_folds(people, 3, seed=7)
