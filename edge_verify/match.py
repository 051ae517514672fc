"""Pure distance maths and decisions: squared L2 between normalised encodings (= 2 - 2 cos)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
