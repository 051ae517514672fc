"""Checks of an enrolment before it is written: are its photos one person, and is that person
already enrolled under another name? Pure maths on encodings (unit vectors) at a threshold tau.

A new person (``edge-verify enroll --new``, the console) is held to more: a name no one has, one face
per photo, and a face no one else is enrolled with (refused, not only warned about)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .errors import EmptyGalleryError, EnrolmentError, GalleryError, ImageError, NoFaceError, QualityError
from .gallery import check_name
from .match import Decision, best_per_person, squared_l2

if TYPE_CHECKING:
    from .pipeline import FaceVerifier, ImageLike

SECOND_FACE = 0.6  # a second face at least this fraction of the largest one's size: two people in view
Matcher = Callable[[np.ndarray], "Decision | None"]  # 1:N against the gallery; None when it is empty


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


# -- a new person --------------------------------------------------------------------------------------
class _Matches(Protocol):
    def match(self, embedding: np.ndarray, claim: str | None = None, top_k: int = 1) -> Decision: ...


def matcher(verifier: _Matches) -> Matcher:
    """1:N against the verifier's gallery at its tau; None while no one is enrolled."""

    def match(emb: np.ndarray) -> Decision | None:
        try:
            return verifier.match(emb)
        except EmptyGalleryError:
            return None

    return match


def check_new_name(enrolled: Callable[[str], str | None], name: str) -> str:
    """The name as stored; GalleryError when it is not valid or taken. ``enrolled(name)`` gives the name
    someone is enrolled under that is the same name (in any case or Unicode form), or None."""
    clean = check_name(name)
    taken = enrolled(clean)
    if taken is not None:
        raise GalleryError(f"{taken!r} is already enrolled: choose another name, or forget {taken!r} first")
    return clean


def among(people: list[str]) -> Callable[[str], str | None]:
    """For :func:`check_new_name`: the one of ``people`` whose name is the same name, or None."""
    from .gallery import name_key

    def find(name: str) -> str | None:
        return next((p for p in people if name_key(p) == name_key(name)), None)

    return find


def crowded(sizes: list[float]) -> int:
    """How many faces of comparable size (``SECOND_FACE``) are in view, given their sizes, largest first;
    far smaller ones (people in the background, false detections) do not count."""
    return sum(1 for s in sizes if sizes and s >= SECOND_FACE * sizes[0])


def encode_photo(fv: FaceVerifier, image: ImageLike, label: str) -> np.ndarray:
    """The encoding of the one face of a photo: NoFaceError, ImageError (several faces of comparable size)
    or QualityError otherwise, each naming ``label``."""
    # encoded as FaceVerifier.enroll encodes (with the mirror image); the others are only measured
    faces = fv.process(image, flip=fv.flip_enrolment, encode=1).faces
    if not faces:
        raise NoFaceError(f"{label}: no face found")
    if (n := crowded([f.face.size for f in faces])) > 1:
        raise ImageError(f"{label}: {n} faces found: one face per photo, please")
    if not faces[0].quality.ok:
        raise QualityError(f"{label}: face not usable: {'; '.join(faces[0].quality.reasons)}")
    assert faces[0].embedding is not None
    return faces[0].embedding


def enrol_new_person(fv: FaceVerifier, name: str, images: list[tuple[ImageLike, str]]) -> int:
    """Enrol a person who is not enrolled yet from (image, label) pairs, all or nothing: one face per
    photo, all of one person, and no one enrolled under another name (EnrolmentError)."""
    clean = check_new_name(fv.gallery.resolve, name)
    if not images:
        raise ImageError("no photo given to enrol from")
    labels = [label for _, label in images]
    new = np.stack([encode_photo(fv, image, label) for image, label in images])
    m = fv.gallery.matrix()
    found = lookalikes(labels, new, m.names, m.owner, m.vectors, fv.tau)
    if found:
        label, person, d = found[0]
        raise EnrolmentError(f"{label}: this face is already enrolled as {person!r} (distance {d:.3f} < tau "
                             f"{fv.tau:.3f}): nothing enrolled")
    check_same_person(clean, labels, new, new[:0], fv.tau)
    return fv.add_templates(clean, new)
