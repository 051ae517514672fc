"""Checks of an enrolment before it is written: are its photos one person, and is that person
already enrolled under another name? Pure maths on encodings (unit vectors) at a threshold tau."""

from __future__ import annotations

import numpy as np

from .errors import EnrolmentError
from .match import best_per_person, squared_l2


def _pairwise(vectors: np.ndarray) -> np.ndarray:
    return np.maximum(2.0 - 2.0 * (vectors @ vectors.T), 0.0)


def _join(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def check_same_person(name: str, labels: list[str], new: np.ndarray, enrolled: np.ndarray, tau: float) -> None:
    """Raise EnrolmentError unless every new photo is linked to the person by a chain of photos each
    nearer than tau to the next: the person's enrolled templates (``enrolled``, maybe none) count as
    one group, else the first new photo starts it. A chain rather than every pair, so that one
    genuine pair just over tau (a few in a hundred at the calibrated tau) does not refuse the set,
    while a second person (every cross pair over tau) always is refused."""
    n_old = len(enrolled)
    vectors = (np.concatenate([enrolled, new]) if n_old else new).astype(np.float32)
    linked = _pairwise(vectors) < tau
    reached = np.zeros(len(vectors), bool)
    reached[: n_old or 1] = True
    frontier = reached.copy()
    while frontier.any():
        step = linked[frontier].any(axis=0) & ~reached
        reached |= step
        frontier = step
    outliers = [i for i in range(n_old, len(vectors)) if not reached[i]]
    if not outliers:
        return
    d = _pairwise(vectors)[np.ix_(np.array(outliers), np.flatnonzero(reached))]
    odd = [labels[i - n_old] for i in outliers]
    ref = f"{name!r} as enrolled" if n_old else _join([labels[i - n_old] for i in np.flatnonzero(reached)])
    raise EnrolmentError(
        f"{_join(odd)} {'does' if len(odd) == 1 else 'do'} not look like the same person as {ref} "
        f"(nearest distance {float(d.min()):.3f}, tau {tau:.3f}): nothing enrolled; enrol each person under "
        "their own name")


def lookalikes(labels: list[str], new: np.ndarray, names: list[str], owner: np.ndarray, vectors: np.ndarray,
               tau: float, skip: int | None = None) -> list[tuple[str, str, float]]:
    """(photo, enrolled person, distance) for each enrolled person other than ``skip`` (an index into
    ``names``) nearer than tau to one of the new photos: the nearest photo, nearest person first."""
    found: dict[str, tuple[str, float]] = {}
    for label, e in zip(labels, new, strict=True):
        best = best_per_person(squared_l2(e, vectors), owner, len(names))
        for j in np.flatnonzero(best < tau):
            if j != skip and (names[j] not in found or best[j] < found[names[j]][1]):
                found[names[j]] = (label, float(best[j]))
    return sorted(((label, person, d) for person, (label, d) in found.items()), key=lambda t: t[2])
