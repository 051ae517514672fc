"""Distances and decisions, on hand-made vectors."""

from __future__ import annotations

import numpy as np

from edge_verify.match import (
    best_per_person,
    decide_identify,
    decide_verify,
    from_int8,
    squared_l2,
    to_int8,
)


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, np.float32)
    return a / np.linalg.norm(a)


def test_squared_l2_is_two_minus_two_cos() -> None:
    rng = np.random.default_rng(0)
    q = unit(list(rng.normal(size=128)))
    t = np.stack([unit(list(rng.normal(size=128))) for _ in range(50)])
    want = ((t - q) ** 2).sum(1)
    np.testing.assert_allclose(squared_l2(q, t), want, atol=1e-5)
    # a face against itself: 0 up to float32 rounding of q.q, which depends on the BLAS kernel's summation
    # order (exactly 0 on x86_64 AVX2, 2.4e-7 on aarch64 NEON: `make arm-check` found it); never negative
    self_d = squared_l2(q, q[None])[0]
    assert 0.0 <= self_d < 1e-6


def test_int8_storage_is_128_bytes_and_close() -> None:
    rng = np.random.default_rng(1)
    e = np.stack([unit(list(rng.normal(size=128))) for _ in range(100)])
    q = to_int8(e)
    assert q.dtype == np.int8 and q[0].nbytes == 128
    back = from_int8(q)
    cos = (back * e).sum(1)
    assert cos.min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)


def test_best_per_person_and_decisions() -> None:
    d = np.array([0.9, 0.4, 1.5, 1.2], np.float32)
    owner = np.array([0, 0, 1, 2])
    best = best_per_person(d, owner, 4)
    np.testing.assert_allclose(best[:3], [0.4, 1.5, 1.2])
    assert np.isinf(best[3])
    names = ["ann", "bob", "cy", "dee"]
    hit = decide_identify(best, names, tau=1.0, top_k=2)
    assert hit.accepted and hit.person == "ann" and [c[0] for c in hit.candidates] == ["ann", "cy"]
    miss = decide_identify(best, names, tau=0.3)
    assert not miss.accepted and miss.person is None and miss.distance == np.float32(0.4)
    assert decide_verify(np.array([1.1, 0.2]), "ann", 0.5).accepted
    assert not decide_verify(np.array([1.1, 0.7]), "ann", 0.5).accepted


def test_identify_never_breaks_a_tie_silently() -> None:
    """The same face enrolled under two names: equally near, so unknown, with the reason and both names."""
    d = decide_identify(np.array([0.8, 0.3, 0.3 + 1e-8, 2.0], np.float32), ["c", "b", "a", "d"], 1.0)
    assert not d.accepted and d.person is None and d.distance is not None and abs(d.distance - 0.3) < 1e-6
    assert d.reason is not None and "ambiguous" in d.reason and "'b'" in d.reason and "'a'" in d.reason
    assert {p for p, _ in d.candidates} >= {"a", "b"}
    assert d.to_dict()["reason"] == d.reason
    clear = decide_identify(np.array([0.8, 0.3, 0.31], np.float32), ["c", "b", "a"], 1.0)
    assert clear.accepted and clear.person == "b" and clear.reason is None
    far = decide_identify(np.array([1.5, 1.5], np.float32), ["a", "b"], 1.0)  # a tie of strangers: unknown
    assert not far.accepted and far.reason is None
