"""Pure distance maths and decisions: squared L2 between normalised encodings (= 2 - 2 cos), and the
operating point (tau) a door derives from a false-accept target per visit."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .security import SECURITY_LEVELS

INT8_SCALE = 127.0  # encodings are stored as round(e * 127): 128 bytes for 128 dimensions
TIE = 1e-6  # best distances of two people closer than this are equal (float32 noise)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Unit-length vectors along ``axis`` (float32); zero vectors stay zero."""
    x = np.asarray(x, np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)).astype(np.float32)


def to_int8(embeddings: np.ndarray) -> np.ndarray:
    """Quantize L2-normalised encodings (components in [-1, 1]) to int8."""
    return np.clip(np.round(np.asarray(embeddings, np.float32) * INT8_SCALE), -127, 127).astype(np.int8)


def from_int8(q: np.ndarray) -> np.ndarray:
    """Back to float, renormalised to unit length so that d = 2 - 2 cos stays exact."""
    return l2_normalize(np.asarray(q, np.float32) / INT8_SCALE)


def squared_l2(query: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """d(query, each template) for unit-length vectors, computed as 2 - 2 q.t (one BLAS call)."""
    if templates.shape[0] == 0:
        return np.zeros(0, np.float32)
    d = 2.0 - 2.0 * (templates @ np.asarray(query, np.float32))
    return np.maximum(d, 0.0).astype(np.float32)


def best_per_person(distances: np.ndarray, owner: np.ndarray, n_people: int) -> np.ndarray:
    """The smallest distance of each person (inf where a person has no template)."""
    best = np.full(n_people, np.inf, np.float32)
    np.minimum.at(best, owner, distances)
    return best


@dataclass(frozen=True)
class Decision:
    """The outcome of a verification (1:1) or an identification (1:N)."""

    accepted: bool
    person: str | None  # the claimed or identified person; None when unknown
    distance: float | None  # the best distance to that person (or to anyone, when unknown)
    tau: float
    candidates: list[tuple[str, float]] = field(default_factory=list)  # best first
    reason: str | None = None  # why a face nearer than tau was not accepted (a tie)

    def to_dict(self) -> dict[str, object]:
        return {
            "accepted": self.accepted,
            "person": self.person,
            "distance": None if self.distance is None else round(self.distance, 4),
            "tau": self.tau,
            "candidates": [{"person": p, "distance": round(d, 4)} for p, d in self.candidates],
            "reason": self.reason,
        }


def decide_identify(best: np.ndarray, names: list[str], tau: float, top_k: int = 1) -> Decision:
    """1:N: the nearest person if nearer than tau, else unknown. Never a silent tie: when two or more
    people are equally near (within ``TIE``) and nearer than tau, the face is unknown, every tied
    person is among the candidates and ``reason`` says so."""
    if best.size == 0:
        return Decision(False, None, None, tau, [])
    order = np.argsort(best, kind="stable")
    top = int(order[0])
    d = float(best[top])
    tied = [int(i) for i in order if float(best[i]) - d <= TIE]
    shown = order[: max(1, top_k, len(tied) if d < tau else 1)]
    candidates = [(names[i], float(best[i])) for i in shown if np.isfinite(best[i])]
    if d < tau and len(tied) > 1:
        who = ", ".join(repr(names[i]) for i in tied)
        return Decision(False, None, d, tau, candidates, f"ambiguous: {who} are equally near (distance {d:.4f})")
    if d < tau:
        return Decision(True, names[top], d, tau, candidates)
    return Decision(False, None, d, tau, candidates)


def decide_verify(distances: np.ndarray, claim: str, tau: float) -> Decision:
    """1:1: accept when the claimed person's best template is nearer than tau."""
    d = float(distances.min()) if distances.size else float("inf")
    return Decision(d < tau, claim, d, tau, [(claim, d)])


# ---------------------------------------------------------------- operating points chosen by risk

# How alike the frames of one visit are, for the derivation below: 1.0 = a stranger's frames are copies
# of one another (a lookalike stays a lookalike in every frame), so k of n buys nothing against false
# accepts. That is the door-grade assumption; docs/EVALUATION.md gives what the simulation measured.
DEFAULT_FRAME_CORRELATION = 1.0


@dataclass(frozen=True)
class OperatingPoints:
    """Calibrated (per-comparison FMR, tau) points of an encoder, from its manifest.

    ``fmr`` descending (1e-2, 1e-3, ...), ``tau`` descending with it: a stricter FMR is a smaller tau.
    Between points, tau is interpolated linearly in log10(FMR); below the strictest point it is
    extrapolated along the last segment, which for a tail that thins faster than exponentially (as
    impostor distances do) gives a tau smaller than needed: the error is on the safe side, and it is
    flagged. Above the loosest point the loosest tau is used (again stricter than asked).
    """

    fmr: tuple[float, ...]
    tau: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.fmr) != len(self.tau) or not self.fmr:
            raise ValueError("operating points need as many taus as FMRs, at least one")
        if any(not 0 < f < 1 for f in self.fmr) or any(not 0 < t < 4 for t in self.tau):
            raise ValueError("operating points need 0 < FMR < 1 and 0 < tau < 4")
        if any(a <= b for a, b in itertools.pairwise(self.fmr)) or any(a < b for a, b in itertools.pairwise(self.tau)):
            raise ValueError("operating points must be ordered: FMR strictly descending, tau descending")

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any]) -> OperatingPoints:
        """From a manifest's ``operating_points`` list ({"fmr", "tau"} each); an older manifest with only
        ``tau``/``tau_far`` gives a single point."""
        rows = data.get("operating_points")
        if rows:
            pairs = sorted(((float(r["fmr"]), float(r["tau"])) for r in rows), reverse=True)
        elif data.get("tau_far") is not None:
            pairs = [(float(data["tau_far"]), float(data["tau"]))]
        else:
            raise ValueError("the manifest has neither operating_points nor tau_far")
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def tau_at(self, fmr: float) -> tuple[float, bool]:
        """(tau for a per-comparison FMR, whether it lies beyond the strictest calibrated point)."""
        if not 0 < fmr < 1:
            raise ValueError(f"FMR must be in (0, 1), got {fmr}")
        x = [math.log10(f) for f in self.fmr]
        lx = math.log10(fmr)
        if lx >= x[0]:
            return self.tau[0], False
        if lx >= x[-1]:
            i = next(j for j in range(1, len(x)) if lx >= x[j])
            t = (lx - x[i]) / (x[i - 1] - x[i])
            return self.tau[i] + t * (self.tau[i - 1] - self.tau[i]), False
        if len(x) < 2:
            raise ValueError(f"FMR {fmr:g} is stricter than the only calibrated point ({self.fmr[0]:g}): "
                             "re-run converter.evaluate --all-pairs --update-manifest")
        slope = (self.tau[-2] - self.tau[-1]) / (x[-2] - x[-1])
        return max(1e-6, self.tau[-1] + slope * (lx - x[-1])), True

    def fmr_at(self, tau: float) -> float:
        """The per-comparison FMR of a tau (interpolated the same way; clamped to the calibrated range)."""
        if tau >= self.tau[0]:
            return self.fmr[0]
        if tau <= self.tau[-1]:
            return self.fmr[-1]
        i = next(j for j in range(1, len(self.tau)) if tau >= self.tau[j])
        span = self.tau[i - 1] - self.tau[i]
        t = (tau - self.tau[i]) / span if span else 0.0
        x = math.log10(self.fmr[i]) + t * (math.log10(self.fmr[i - 1]) - math.log10(self.fmr[i]))
        return float(10.0**x)


def _binomial_tail(p: float, k: int, n: int) -> float:
    """P(at least k successes in n independent trials of probability p)."""
    return sum(math.comb(n, i) * p**i * (1.0 - p) ** (n - i) for i in range(k, n + 1))


def _any_of(p: float, times: int) -> float:
    """1 - (1 - p)^times, exact for tiny p."""
    return -math.expm1(times * math.log1p(-min(p, 1.0 - 1e-16)))


def visit_false_accept(fmr: float, gallery_size: int, k: int = 1, n: int = 1,
                       correlation: float = DEFAULT_FRAME_CORRELATION) -> float:
    """The chance that a stranger's visit is granted, given the per-comparison FMR.

    A stranger's frame is compared with ``gallery_size`` templates (count every comparison: people,
    times their templates, plus their mean template where the decision uses it). Each comparison
    falls under tau with probability ``fmr``, so one frame names *someone* with probability
    ``1 - (1 - fmr)^N`` (about ``N * fmr``): the per-frame FPIR.

    A visit is granted when k of its n frames agree on the *same* person. Two limits:

    - frames that are copies of one another (``correlation = 1``): the visit is granted exactly when
      its frames are, ``P = 1 - (1 - fmr)^N``; k of n buys nothing, which is what a lookalike does
      (the same face under tau in every frame);
    - independent frames (``correlation = 0``): for one person, ``B = P(at least k of n frames under
      tau) = sum_{i>=k} C(n, i) fmr^i (1 - fmr)^(n-i)`` (about ``C(n, k) fmr^k``), and over the gallery
      ``P = 1 - (1 - B)^N``.

    Real frames lie between; ``correlation`` mixes the two (a visit is a copy-visit with that
    probability). The door default, 1.0, is the safe end.
    """
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be at least 1, got {gallery_size}")
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [0, 1], got {correlation}")
    copies = _any_of(fmr, gallery_size)
    independent = _any_of(_binomial_tail(fmr, k, n), gallery_size)
    return correlation * copies + (1.0 - correlation) * independent


def per_comparison_fmr(target: float, gallery_size: int, k: int = 1, n: int = 1,
                       correlation: float = DEFAULT_FRAME_CORRELATION) -> float:
    """The per-comparison FMR whose :func:`visit_false_accept` is ``target`` (bisection in log10 FMR;
    the function rises with FMR)."""
    if not 0 < target < 1:
        raise ValueError(f"the per-visit target must be in (0, 1), got {target}")
    lo, hi = -16.0, math.log10(0.5)
    if visit_false_accept(10.0**hi, gallery_size, k, n, correlation) <= target:
        return 10.0**hi
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if visit_false_accept(10.0**mid, gallery_size, k, n, correlation) > target:
            hi = mid
        else:
            lo = mid
    return float(10.0**lo)


@dataclass(frozen=True)
class OperatingPoint:
    """Which tau a door uses, and why: the per-visit target, the gallery and the k-of-n rule behind it."""

    level: str | None
    target: float  # per-visit false-accept target
    gallery_size: int  # comparisons per frame (1 for a claim)
    k: int
    n: int
    fmr: float  # the per-comparison FMR that meets the target
    tau: float
    extrapolated: bool  # fmr is stricter than the strictest calibrated point

    def to_dict(self) -> dict[str, object]:
        return {"level": self.level, "target": self.target, "gallery_size": self.gallery_size, "k": self.k,
                "n": self.n, "fmr": float(f"{self.fmr:.3g}"), "tau": round(self.tau, 4),
                "extrapolated": self.extrapolated}


def level_target(level: str) -> float:
    """The per-visit false-accept target of a security level."""
    try:
        return SECURITY_LEVELS[level]
    except KeyError:
        raise ValueError(f"unknown security level {level!r} (known: {', '.join(SECURITY_LEVELS)})") from None


def operating_point(points: OperatingPoints, target: float, gallery_size: int, k: int = 1, n: int = 1,
                    correlation: float = DEFAULT_FRAME_CORRELATION, level: str | None = None) -> OperatingPoint:
    """tau for a per-visit false-accept target, a gallery of ``gallery_size`` comparisons and k of n."""
    fmr = per_comparison_fmr(target, gallery_size, k, n, correlation)
    tau, extrapolated = points.tau_at(fmr)
    return OperatingPoint(level, target, gallery_size, k, n, fmr, tau, extrapolated)


def identify_point(points: OperatingPoints, level: str, gallery_size: int, k: int = 1, n: int = 1,
                   correlation: float = DEFAULT_FRAME_CORRELATION) -> OperatingPoint:
    """Identify mode (1:N): a stranger meets every template of the gallery in every frame."""
    return operating_point(points, level_target(level), max(1, gallery_size), k, n, correlation, level)


def claim_point(points: OperatingPoints, level: str, k: int = 1, n: int = 1,
                correlation: float = DEFAULT_FRAME_CORRELATION) -> OperatingPoint:
    """Claim mode (1:1): a stranger claiming someone meets that one person only."""
    return operating_point(points, level_target(level), 1, k, n, correlation, level)
