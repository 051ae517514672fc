"""More evidence than one frame: templates and mean templates, fusion, the margin rule, k of n."""

from __future__ import annotations

import numpy as np
import pytest

from edge_verify.fusion import Templates, close_pairs, confirm, decide_visit, frame_vote, fuse, nearest_two
from edge_verify.gallery import GalleryMatrix
from edge_verify.match import l2_normalize

D = 16


def unit(*components: float) -> np.ndarray:
    v = np.zeros(D, np.float32)
    v[: len(components)] = components
    return l2_normalize(v)


def gallery(*people: list[np.ndarray]) -> GalleryMatrix:
    names = [f"p{i}" for i in range(len(people))]
    owner = np.array([i for i, t in enumerate(people) for _ in t])
    return GalleryMatrix(names, owner, np.stack([v for t in people for v in t]))


def test_templates_add_a_mean_for_people_with_several() -> None:
    a1, a2, b = unit(1, 0.3), unit(1, -0.3), unit(0, 1)
    t = Templates.build(gallery([a1, a2], [b]))
    assert t.comparisons == 4 and t.owner.tolist() == [0, 0, 0, 1]
    # the mean of a1 and a2 is exactly (1, 0): nearer to a probe there than either template
    d = t.distances(unit(1, 0))
    assert d[0] == pytest.approx(0.0, abs=1e-6) and d[1] == pytest.approx(2.0, abs=1e-6)
    plain = Templates.build(gallery([a1, a2], [b]), use_mean=False)
    assert plain.comparisons == 3 and plain.distances(unit(1, 0))[0] == pytest.approx(2 - 2 / np.hypot(1, 0.3))
    near_b = 2 - 2 * 0.3 / np.hypot(1, 0.3)  # b is nearest to a1
    np.testing.assert_allclose(t.distances_many(np.stack([unit(1, 0), b])), [d, [near_b, 0.0]], atol=1e-6)


def test_fuse_and_nearest_two() -> None:
    frames = np.stack([unit(1, 0.2), unit(1, -0.2)])
    np.testing.assert_allclose(fuse(frames), unit(1, 0), atol=1e-6)
    assert nearest_two(np.array([0.9, 0.2, 0.5])) == (1, pytest.approx(0.2), pytest.approx(0.5))
    assert nearest_two(np.array([0.7])) == (0, pytest.approx(0.7), float("inf"))


def test_confirm_fusion_margin_and_no_match() -> None:
    t = Templates.build(gallery([unit(1, 0)], [unit(0, 1)]))
    # three noisy frames of p0, each 0.59 from p0 alone (over tau 0.5), whose noise cancels when fused
    noisy = np.stack([unit(1, 1, 0, 0.3), unit(1, -0.5, 0.8), unit(1, -0.5, -0.8)])
    assert t.distances_many(noisy)[:, 0].min() > 0.5
    fused = confirm(noisy, 0, t, tau=0.5, fusion="encoding")
    assert fused.accepted and fused.person == "p0" and fused.distance is not None and fused.distance < 0.05
    single = confirm(noisy, 0, t, tau=0.5, fusion="none")
    assert not single.accepted and single.reason == "no_match"
    mean_d = confirm(noisy, 0, t, tau=0.7, fusion="distance")
    assert mean_d.accepted and mean_d.distance == pytest.approx(float(t.distances_many(noisy)[:, 0].mean()))
    # halfway between two enrolled people: near enough to both, so ambiguous under a margin
    between = np.stack([unit(1, 0.9)] * 3)
    assert confirm(between, 0, t, tau=1.5, margin=0.0).accepted
    amb = confirm(between, 0, t, tau=1.5, margin=0.2)
    assert not amb.accepted and amb.reason == "ambiguous" and amb.second is not None
    assert amb.second - amb.distance < 0.2  # type: ignore[operator]
    with pytest.raises(ValueError, match="fusion"):
        confirm(noisy, 0, t, tau=0.5, fusion="median")  # type: ignore[arg-type]


def test_decide_visit_k_of_n() -> None:
    t = Templates.build(gallery([unit(1, 0)], [unit(0, 1)]))
    a, b, nobody, blank = unit(1, 0.05), unit(0.05, 1), unit(0, 0, 1), np.full(D, np.nan, np.float32)
    # two frames for p0, then three for p1: p1 reaches 3 of 5 first
    d = decide_visit(np.stack([a, a, b, b, b]), t, tau=0.5, k=3, n=5)
    assert d.accepted and d.person == "p1" and d.frames == 3
    # frames without a usable face vote for nobody; 3 of the last 5 still decide
    d = decide_visit(np.stack([a, blank, a, blank, a]), t, tau=0.5, k=3, n=5)
    assert d.accepted and d.person == "p0"
    # only the last n frames count: 3 votes for p0 spread over 7 frames never agree within 3
    assert decide_visit(np.stack([a, b, b, a, b, b, a]), t, tau=0.5, k=3, n=3).reason in ("no_agreement",)
    # a stranger: unknown reaches k
    d = decide_visit(np.stack([nobody] * 5), t, tau=0.5, k=3, n=5)
    assert not d.accepted and d.reason == "no_match" and d.person is None
    # every frame votes for its nearest person (tau_vote inf), the fused frames then fail tau
    d = decide_visit(np.stack([unit(1, 0, 1.2)] * 3), t, tau=0.5, k=3, n=5, tau_vote=np.inf)
    assert not d.accepted and d.reason == "no_match" and d.person == "p0"
    assert decide_visit(np.stack([blank] * 5), t, tau=0.5).reason == "no_agreement"
    with pytest.raises(ValueError, match="k <= n"):
        decide_visit(np.stack([a]), t, tau=0.5, k=4, n=3)


def test_frame_vote() -> None:
    t = Templates.build(gallery([unit(1, 0)], [unit(0, 1)]))
    assert frame_vote(unit(1, 0.1), t, 0.5)[0] == 0
    who, d = frame_vote(unit(1, 1), t, 0.5)
    assert who is None and d == pytest.approx(2 - np.sqrt(2), abs=1e-5)


def test_close_pairs_finds_lookalikes_and_double_enrolment() -> None:
    g = gallery([unit(1, 0)], [unit(1, 0.1)], [unit(0, 1)], [unit(0, 1, 0.3), unit(0, 0, 1)])
    pairs = close_pairs(g, 0.2)
    assert [(a, b) for a, b, _ in pairs] == [("p0", "p1"), ("p2", "p3")]
    assert pairs[0][2] < pairs[1][2]
    assert close_pairs(gallery([unit(1, 0)]), 1.0) == []
