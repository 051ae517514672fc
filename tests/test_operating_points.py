"""Operating points chosen by risk: calibrated (FMR, tau) points, per-visit false-accept maths, levels."""

from __future__ import annotations

import math

import pytest

from edge_verify.match import (
    OperatingPoints,
    claim_point,
    identify_point,
    level_target,
    per_comparison_fmr,
    visit_false_accept,
)
from edge_verify.models import bundled_manifests
from edge_verify.security import DEFAULT_SECURITY, SECURITY_LEVELS

POINTS = OperatingPoints((1e-2, 1e-3, 1e-4, 1e-5, 1e-6), (1.5, 1.3, 1.2, 1.1, 0.95))


def test_tau_at_calibrated_points_and_between() -> None:
    for f, t in zip(POINTS.fmr, POINTS.tau, strict=True):
        assert POINTS.tau_at(f) == (pytest.approx(t), False)
    tau, extrapolated = POINTS.tau_at(10**-4.5)  # halfway in log10 FMR between 1e-4 and 1e-5
    assert tau == pytest.approx(1.15) and not extrapolated
    assert POINTS.fmr_at(1.15) == pytest.approx(10**-4.5)
    assert POINTS.fmr_at(POINTS.tau_at(3e-4)[0]) == pytest.approx(3e-4)


def test_tau_outside_the_calibrated_range_errs_on_the_strict_side() -> None:
    tau, extrapolated = POINTS.tau_at(1e-7)  # along the last segment: 0.95 - 0.15
    assert extrapolated and tau == pytest.approx(0.80)
    assert POINTS.tau_at(0.2) == (1.5, False)  # looser than calibrated: the loosest tau, never looser
    single = OperatingPoints((1e-3,), (1.3,))
    with pytest.raises(ValueError, match="stricter than the only calibrated point"):
        single.tau_at(1e-5)


def test_points_must_be_ordered_and_sane() -> None:
    with pytest.raises(ValueError, match="ordered"):
        OperatingPoints((1e-3, 1e-2), (1.3, 1.5))
    with pytest.raises(ValueError, match="ordered"):
        OperatingPoints((1e-2, 1e-3), (1.3, 1.5))
    with pytest.raises(ValueError, match="0 < FMR < 1"):
        OperatingPoints((1e-2, 0.0), (1.5, 1.3))
    with pytest.raises(ValueError, match="as many"):
        OperatingPoints((1e-2,), (1.5, 1.3))


def test_from_manifest_reads_points_or_the_old_single_tau() -> None:
    data = {"tau": 1.3, "tau_far": 1e-3, "operating_points": [{"fmr": 1e-3, "tau": 1.3}, {"fmr": 1e-2, "tau": 1.5}]}
    assert OperatingPoints.from_manifest(data) == OperatingPoints((1e-2, 1e-3), (1.5, 1.3))
    assert OperatingPoints.from_manifest({"tau": 1.3, "tau_far": 1e-3}) == OperatingPoints((1e-3,), (1.3,))


def test_bundled_manifest_holds_points_down_to_1e6() -> None:
    points = bundled_manifests()["sface-int8"].operating_points
    assert min(points.fmr) <= 1e-6 and max(points.fmr) >= 1e-3
    assert points.tau_at(1e-3)[0] < 1.3565  # the old tau let 2.2e-3 of LFW's impostor pairs through


def test_visit_false_accept_limits() -> None:
    p = 1e-5
    # one comparison, one frame: the FMR itself
    assert visit_false_accept(p, 1) == pytest.approx(p)
    # frames that are copies of one another: k of n buys nothing; N people: 1 - (1 - p)^N
    for k, n in ((1, 1), (3, 5), (5, 5)):
        assert visit_false_accept(p, 100, k, n, correlation=1.0) == pytest.approx(1 - (1 - p) ** 100)
    # independent frames: k of n on the same person, ~ N * C(n, k) p^k
    indep = visit_false_accept(1e-2, 100, 3, 5, correlation=0.0)
    assert indep == pytest.approx(100 * 10 * 1e-6, rel=0.05)
    # halfway: the mixture
    half = visit_false_accept(1e-2, 100, 3, 5, correlation=0.5)
    assert half == pytest.approx(0.5 * (1 - 0.99**100) + 0.5 * indep)
    # more people, more risk; more agreeing frames required (independent), less
    assert visit_false_accept(p, 1000) > visit_false_accept(p, 100)
    assert visit_false_accept(1e-2, 10, 4, 5, 0.0) < visit_false_accept(1e-2, 10, 3, 5, 0.0)


def test_visit_false_accept_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k <= n"):
        visit_false_accept(1e-3, 10, 4, 3)
    with pytest.raises(ValueError, match="gallery_size"):
        visit_false_accept(1e-3, 0)
    with pytest.raises(ValueError, match="correlation"):
        visit_false_accept(1e-3, 10, correlation=1.5)


@pytest.mark.parametrize(("target", "size", "k", "n", "corr"), [
    (1e-3, 1, 1, 1, 1.0), (1e-3, 100, 3, 5, 1.0), (1e-4, 1000, 3, 5, 1.0), (1e-3, 100, 3, 5, 0.0),
    (1e-3, 100, 3, 5, 0.5), (1e-2, 10, 2, 3, 0.2),
])
def test_per_comparison_fmr_inverts_the_visit_maths(target: float, size: int, k: int, n: int, corr: float) -> None:
    fmr = per_comparison_fmr(target, size, k, n, corr)
    assert visit_false_accept(fmr, size, k, n, corr) == pytest.approx(target, rel=1e-6)


def test_derivation_with_gallery_size_and_k_of_n() -> None:
    # copies (the default): the per-visit target is shared out over the N comparisons of a frame
    assert per_comparison_fmr(1e-3, 100, 3, 5) == pytest.approx(1e-5, rel=1e-3)
    assert per_comparison_fmr(1e-3, 1000, 3, 5) == pytest.approx(1e-6, rel=1e-3)
    # independent frames would allow a far looser comparison: (1e-3 / (N C(5,3)))^(1/3)
    loose = per_comparison_fmr(1e-3, 100, 3, 5, correlation=0.0)
    assert loose == pytest.approx((1e-3 / 1000) ** (1 / 3), rel=0.05)
    assert per_comparison_fmr(1e-3, 100, 3, 5, correlation=0.5) < loose


def test_levels_identify_and_claim_points() -> None:
    targets = [SECURITY_LEVELS[level] for level in ("convenient", "balanced", "secure", "strict")]
    assert targets == sorted(targets, reverse=True)
    assert DEFAULT_SECURITY in SECURITY_LEVELS and SECURITY_LEVELS[DEFAULT_SECURITY] <= 1e-3  # door-grade
    with pytest.raises(ValueError, match="unknown security level"):
        level_target("paranoid")
    op = identify_point(POINTS, "balanced", 100, 3, 5)
    assert op.fmr == pytest.approx(1e-5, rel=1e-3) and op.tau == pytest.approx(1.1, abs=1e-3)
    assert op.to_dict()["level"] == "balanced" and not op.extrapolated
    claim = claim_point(POINTS, "balanced")
    assert claim.gallery_size == 1 and claim.tau == pytest.approx(1.3, abs=1e-4)
    strict = identify_point(POINTS, "strict", 1000, 3, 5)  # 1e-5 / 1000 = 1e-8: beyond the points
    assert strict.extrapolated and strict.tau < min(POINTS.tau)
    # a bigger gallery needs a stricter tau for the same risk
    taus = [identify_point(POINTS, "secure", size).tau for size in (1, 10, 100, 1000)]
    assert taus == sorted(taus, reverse=True) and len(set(taus)) == 4
    assert math.isfinite(identify_point(POINTS, "convenient", 0).tau)  # an empty gallery counts as one


def test_bundled_manifest_holds_the_calibrated_decision() -> None:
    from edge_verify.fusion import FUSIONS

    m = bundled_manifests()["sface-int8"]
    assert 0.0 < m.margin < 0.5 and m.fusion in FUSIONS
    assert "bench.door_sim" in m.data["decision"]["source"]
