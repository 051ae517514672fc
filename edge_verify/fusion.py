"""Decide on more evidence than one frame: several templates per person, a visit's frames fused, and a
margin between the best person and the second best. Pure maths on encodings, no I/O, no clock.

- **Templates**: a person is as near as the nearest of their templates *or* their mean template (the
  unit mean of their templates, used when they have two or more): the mean sits nearer the person's
  centre than any single photo, the single templates keep what the mean blurs (glasses, beard).
- **Votes**: a frame votes for its nearest person when nearer than ``tau_vote``, else for nobody
  (unknown). Measured best (docs/EVALUATION.md): ``tau_vote = inf``, every usable frame votes for its
  nearest person and the fused confirmation at the level's tau decides.
- **Fusion**: when k frames agree on a person, their encodings are fused before the final decision:
  ``"encoding"``, the unit mean of the frames' encodings (noise of single frames averages out), or
  ``"distance"``, the mean of their distances, or ``"none"``: every agreeing frame must be under tau
  on its own (the k-of-n rule alone: the worst agreeing frame decides).
- **Margin**: the person must be nearer than tau *and* beat everyone else by ``margin`` (squared L2):
  a visit between two enrolled people is ``ambiguous`` and decides nothing.

``decide_visit`` runs all of it over the frames of one visit, in order, as ``decision.DecisionWindow``
does when every frame falls inside its window. The daemon can use the parts: ``frame_vote`` per frame,
then ``confirm`` on the agreeing frames when its window reaches k.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Protocol

import numpy as np

from .match import l2_normalize

Fusion = Literal["encoding", "distance", "none"]
FUSIONS: tuple[Fusion, ...] = ("encoding", "distance", "none")


class TemplateSet(Protocol):
    """What ``gallery.GalleryMatrix`` holds: names, the owner of each template, unit templates."""

    @property
    def names(self) -> list[str]: ...

    @property
    def owner(self) -> np.ndarray: ...

    @property
    def vectors(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Templates:
    """Templates ready for matching, rows grouped by person: each person's templates, plus a mean
    template for people with several (``use_mean``)."""

    names: list[str]
    owner: np.ndarray  # (M,) person index of each row, ascending
    vectors: np.ndarray  # (M, D) unit length

    @classmethod
    def build(cls, gallery: TemplateSet, use_mean: bool = True) -> Templates:
        names, owner, vectors = list(gallery.names), np.asarray(gallery.owner), np.asarray(gallery.vectors)
        counts = np.bincount(owner, minlength=len(names))
        if len(names) and counts.min() == 0:
            raise ValueError(f"{names[int(np.argmin(counts))]!r} has no template")
        several = np.flatnonzero(counts >= 2) if use_mean else np.zeros(0, np.int64)
        if several.size:
            sums = np.zeros((len(names), vectors.shape[1]), np.float64)
            np.add.at(sums, owner, vectors)
            owner = np.concatenate([owner, several])
            vectors = np.concatenate([vectors, l2_normalize(sums[several])])
        order = np.argsort(owner, kind="stable")
        return cls(names, owner[order], np.ascontiguousarray(vectors[order], np.float32))

    @cached_property
    def _starts(self) -> np.ndarray:
        """The first row of each person (rows are grouped by person): fixed once built."""
        return np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]])

    @property
    def comparisons(self) -> int:
        """Comparisons per probe: the gallery size to derive tau with (``match.identify_point``)."""
        return int(self.owner.size)

    def distances_many(self, probes: np.ndarray) -> np.ndarray:
        """(P, people): the distance of each probe to each person, i.e. to their nearest template."""
        p = np.atleast_2d(np.asarray(probes, np.float32))
        if not self.names:
            return np.zeros((p.shape[0], 0), np.float32)
        d = np.maximum(2.0 - 2.0 * (p @ self.vectors.T), 0.0)
        return np.minimum.reduceat(d, self._starts, axis=1).astype(np.float32)

    def distances(self, probe: np.ndarray) -> np.ndarray:
        """The distance of one probe to each person (their nearest template, mean included)."""
        return self.distances_many(probe)[0]


def nearest_two(distances: np.ndarray) -> tuple[int, float, float]:
    """(index of the nearest person, their distance, the second nearest person's distance or inf)."""
    if distances.size == 0:
        return -1, float("inf"), float("inf")
    if distances.size == 1:
        return 0, float(distances[0]), float("inf")
    two = np.argpartition(distances, 1)[:2]
    a, b = (int(two[0]), int(two[1])) if distances[two[0]] <= distances[two[1]] else (int(two[1]), int(two[0]))
    return a, float(distances[a]), float(distances[b])


def fuse(encodings: np.ndarray) -> np.ndarray:
    """The unit mean of unit encodings (one row per frame)."""
    return l2_normalize(np.asarray(encodings, np.float64).mean(axis=0))


def frame_vote(probe: np.ndarray, templates: Templates, tau_vote: float) -> tuple[int | None, float]:
    """One frame's vote: (the nearest person's index when nearer than ``tau_vote``, else None; that
    nearest distance)."""
    who, d1, _ = nearest_two(templates.distances(probe))
    return (who if who >= 0 and d1 < tau_vote else None), d1


@dataclass(frozen=True)
class VisitDecision:
    """The outcome of one visit. ``reason`` when not granted: no_match, ambiguous, no_agreement."""

    accepted: bool
    person: str | None  # granted person, or the one the frames agreed on when refused
    distance: float | None  # the (fused) distance to that person
    second: float | None  # the (fused) distance to the next nearest person
    frames: int  # agreeing frames behind the decision
    reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        def r(v: float | None) -> float | None:
            return None if v is None or not np.isfinite(v) else round(v, 4)

        return {"accepted": self.accepted, "person": self.person, "distance": r(self.distance),
                "second": r(self.second), "frames": self.frames, "reason": self.reason}


def confirm(encodings: np.ndarray, person: int, templates: Templates, tau: float, margin: float = 0.0,
            fusion: Fusion = "encoding") -> VisitDecision:
    """The final decision on the agreeing frames of a visit that named ``person``: fused distance under
    tau, and at least ``margin`` nearer than anyone else."""
    frames = np.atleast_2d(np.asarray(encodings, np.float32))
    if fusion == "encoding":
        d = templates.distances(fuse(frames))
    elif fusion == "distance":
        d = templates.distances_many(frames).mean(axis=0)
    elif fusion == "none":
        d = templates.distances_many(frames).max(axis=0)
    else:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    mine = float(d[person])
    others = np.delete(d, person)
    second = float(others.min()) if others.size else float("inf")
    name = templates.names[person]
    if not mine < tau:
        return VisitDecision(False, name, mine, second, len(frames), "no_match")
    if second - mine < margin:
        return VisitDecision(False, name, mine, second, len(frames), "ambiguous")
    return VisitDecision(True, name, mine, second, len(frames))


def decide_visit(frames: np.ndarray, templates: Templates, tau: float, k: int = 3, n: int = 5,
                 margin: float = 0.0, fusion: Fusion = "encoding", tau_vote: float | None = None) -> VisitDecision:
    """One visit's frames (rows; NaN rows are frames without a usable face, which vote for nothing) to
    one decision: the first label to reach k votes among the last n frames decides; a person is then
    confirmed by :func:`confirm`. No label reaching k gives ``no_agreement``; unknown reaching k gives
    ``no_match``."""
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    tau_vote = tau if tau_vote is None else tau_vote
    recent: list[tuple[int, int | None] | None] = []  # (row, label) per frame; None: no usable face
    rows = np.asarray(frames, np.float32)
    for i, f in enumerate(rows):
        if not np.all(np.isfinite(f)):
            recent.append(None)
        else:
            recent.append((i, frame_vote(f, templates, tau_vote)[0]))
        recent = recent[-n:]
        if recent[-1] is None:
            continue
        label = recent[-1][1]
        agreeing = [v[0] for v in recent if v is not None and v[1] == label]
        if len(agreeing) < k:
            continue
        if label is None:
            return VisitDecision(False, None, None, None, len(agreeing), "no_match")
        return confirm(rows[agreeing], label, templates, tau, margin, fusion)
    return VisitDecision(False, None, None, None, 0, "no_agreement")


def close_pairs(gallery: TemplateSet, tau: float) -> list[tuple[str, str, float]]:
    """Pairs of enrolled people nearer than tau (their nearest two templates, mean templates included),
    nearest first: lookalikes, twins, one person enrolled twice under two names."""
    t = Templates.build(gallery)
    out = []
    for a in range(len(t.names) - 1):
        d = t.distances_many(t.vectors[t.owner == a]).min(axis=0)
        out += [(t.names[a], t.names[b], float(d[b])) for b in np.flatnonzero(d < tau) if b > a]
    return sorted(out, key=lambda r: r[2])
