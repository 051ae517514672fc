"""``FaceVerifier``: image in, decision out. Detection, quality, alignment, encoding and matching."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .access import AccessRule
from .align import align_face
from .detect import Face, FaceDetector
from .embed import Embedder
from .enrolment import check_same_person, lookalikes
from .errors import (
    ConfigError,
    EmptyGalleryError,
    ImageError,
    ModelError,
    NoFaceError,
    NoGalleryError,
    PresentationAttackError,
    QualityError,
    UnknownPersonError,
)
from .gallery import Gallery, GalleryMatrix, check_name, default_state_dir
from .imageio import read_image
from .liveness import Liveness, LivenessChecker, LivenessSettings
from .match import Decision, best_per_person, decide_identify, decide_verify, squared_l2
from .models import Manifest, resolve_encoder
from .quality import Quality, QualityThresholds, assess
from .validate import check_tau

if TYPE_CHECKING:
    from .visits import VisitMatcher

log = logging.getLogger(__name__)

_EMPTY = "no one is enrolled yet: run `edge-verify enroll NAME PHOTO` first"
ImageLike = Union[str, "os.PathLike[str]", np.ndarray]


@dataclass(frozen=True)
class FaceResult:
    face: Face
    quality: Quality
    embedding: np.ndarray | None  # (128,) float32, unit length; None when not encoded
    liveness: Liveness | None = None  # None when liveness is off or the face was not encoded

    def to_dict(self) -> dict[str, object]:
        x, y, w, h = self.face.bbox
        return {
            "bbox": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)],
            "score": round(self.face.score, 4),
            "landmarks": [[round(float(a), 1), round(float(b), 1)] for a, b in self.face.landmarks],
            "quality": self.quality.to_dict(),
            "embedding": None if self.embedding is None else [round(float(v), 6) for v in self.embedding],
            "liveness": None if self.liveness is None else self.liveness.to_dict(),
        }


@dataclass(frozen=True)
class FrameResult:
    """Every face of one image, largest first, with the time each stage took (ms)."""

    faces: list[FaceResult]
    timings_ms: dict[str, float] = field(default_factory=dict)


def _checked_tau(tau: float) -> float:
    """tau from a caller: finite and 0 < tau < 4 (ConfigError); whether it is looser than the model was
    calibrated for is said by the caller (``manifest.tau_warning``), once."""
    try:
        return check_tau(tau)
    except ValueError as exc:
        raise ConfigError(f"tau {exc}") from None


def _name(image: ImageLike) -> str:
    return "image" if isinstance(image, np.ndarray) else str(image)


class FaceVerifier:
    """Enrol people and verify or identify faces against them.

    >>> fv = FaceVerifier(state_dir="/tmp/ev")
    >>> fv.enroll("alice", ["alice.jpg"])
    >>> fv.verify("alice", "door.jpg").accepted

    ``liveness``: presentation-attack detection (``edge_verify.liveness``), off unless given:
    ``LivenessSettings()`` turns it on with the bundled threshold and minimum face size (a
    ``LivenessChecker`` may be shared between verifiers). Then every encoded face carries a
    ``liveness`` score, and ``verify``/``identify`` raise ``PresentationAttackError`` for a face that
    is not live, before any matching.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        state_dir: str | Path | None = None,
        tau: float | None = None,
        num_threads: int | None = None,
        quality: QualityThresholds | None = None,
        detector: FaceDetector | None = None,
        create_gallery: bool = True,
        liveness: LivenessSettings | LivenessChecker | None = None,
        flip_enrolment: bool = True,
        security: str | None = None,
    ) -> None:
        """``create_gallery=False``: reading the gallery (verify, identify, people) raises NoGalleryError
        when there is none, instead of creating an empty one; enrolling always creates it.
        ``security``: a security level (``edge_verify.security``): ``verify``/``identify`` then decide as
        the daemon does for one frame, at the level's tau for this gallery (1:1 tau for verify, the 1:N
        tau for the gallery's size for identify, with the manifest's margin), unless ``tau`` is given.
        ``flip_enrolment``: ``enroll`` averages each photo's encoding with its mirror image's (lower FNMR
        at the same FMR, no cost per camera frame: docs/ENCODERS.md)."""
        self.manifest: Manifest = resolve_encoder(model)
        self.embedder = Embedder(self.manifest.model_path, num_threads)
        self.flip_enrolment = flip_enrolment
        self.detector = detector or FaceDetector(num_threads=num_threads)
        self.tau = self.manifest.tau if tau is None else _checked_tau(tau)
        self.security = security if tau is None else None
        self._level_matcher: VisitMatcher | None = None
        self.quality_limits = quality or QualityThresholds()
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.create_gallery = create_gallery
        self._gallery: Gallery | None = None
        self.liveness: LivenessChecker | None
        if isinstance(liveness, LivenessChecker):
            self.liveness = liveness
        elif liveness is not None and liveness.enabled:
            self.liveness = LivenessChecker(liveness, num_threads)
        else:
            self.liveness = None

    @property
    def model_sha256(self) -> str:
        return self.manifest.sha256

    @property
    def gallery(self) -> Gallery:
        if self._gallery is None:
            self._gallery = Gallery(self.state_dir, self.model_sha256, create=self.create_gallery)
        return self._gallery

    def close(self) -> None:
        if self._gallery is not None:
            self._gallery.close()
            self._gallery = None

    def self_test(self) -> None:
        """Encode a blank crop and run detection on a blank frame: the interpreter works and gives a
        unit-length encoding (ModelError otherwise)."""
        e = self.embedder
        w, h = e.input_size
        emb = e.embed(np.full((h, w, 3), 128, np.uint8))
        norm = float(np.linalg.norm(emb))
        if emb.shape != (e.embedding_size,) or not np.all(np.isfinite(emb)) or abs(norm - 1) > 0.05:
            raise ModelError(f"model self-test failed: encoding of shape {emb.shape}, norm {norm:.3f}")
        self.process(np.zeros((120, 160, 3), np.uint8))

    def check_gallery(self) -> int:
        """Open the gallery and refuse one enrolled with another model (GalleryError); returns how many
        people are enrolled."""
        self.gallery.check_model()
        return len(self.gallery.people())

    # -- faces -----------------------------------------------------------------------------------------
    def process(self, image: ImageLike, only_ok: bool = False, max_faces: int | None = None,
                detect_image: np.ndarray | None = None, flip: bool | None = None,
                encode: int | None = None) -> FrameResult:
        """Detect, check and encode the faces of an image (a path or a BGR array).

        ``detect_image`` is a smaller copy of the same frame (picamera2's ``lores`` stream): faces are
        found on it, then aligned, encoded and checked for liveness from the full-size ``image``.
        ``flip`` overrides the embedder's flip averaging (``Embedder.embed``). ``encode``: only the
        first (largest) ``encode`` faces are encoded and checked for liveness; the others are still
        returned, with their quality, for callers that only count them.
        """
        t0 = time.perf_counter()
        img = read_image(image) if not isinstance(image, np.ndarray) else image
        t1 = time.perf_counter()
        if detect_image is None:
            faces = self.detector.detect(img)[:max_faces]
        else:
            factor = img.shape[1] / detect_image.shape[1]
            faces = [f.scaled(factor) for f in self.detector.detect(detect_image)[:max_faces]]
        t2 = time.perf_counter()
        crops = [align_face(img, f.landmarks) for f in faces]
        t3 = time.perf_counter()
        results = []
        live_s = 0.0
        for i, (face, crop) in enumerate(zip(faces, crops, strict=True)):
            q = assess(face, crop, self.quality_limits)
            wanted = (q.ok or not only_ok) and (encode is None or i < encode)
            emb = self.embedder.embed(crop, flip) if wanted else None
            live = None
            if self.liveness is not None and emb is not None:
                tl = time.perf_counter()
                live = self.liveness.check(img, face)
                live_s += time.perf_counter() - tl
            results.append(FaceResult(face, q, emb, live))
        t4 = time.perf_counter()
        ms = {"decode": t1 - t0, "detect": t2 - t1, "align": t3 - t2, "embed": t4 - t3 - live_s}
        if self.liveness is not None:
            ms["liveness"] = live_s
        if detect_image is not None or isinstance(image, np.ndarray):
            del ms["decode"]
        return FrameResult(results, {k: round(v * 1000, 2) for k, v in ms.items()})

    def embed(self, image: ImageLike) -> list[FaceResult]:
        """Every face of an image with its quality and encoding, largest first."""
        return self.process(image).faces

    def encode_one(self, image: ImageLike, require_quality: bool = False, flip: bool | None = None) -> np.ndarray:
        """The encoding of the main (largest) face of an image; raises NoFaceError when there is none."""
        main = self.main_face(image, require_quality, flip)
        assert main.embedding is not None
        return main.embedding

    def main_face(self, image: ImageLike, require_quality: bool = False, flip: bool | None = None) -> FaceResult:
        """The main (largest) face of an image, encoded; raises NoFaceError when there is none."""
        faces = self.process(image, max_faces=None, flip=flip, encode=1).faces  # the others are only counted
        name = _name(image)
        if not faces:
            raise NoFaceError(f"{name}: no face found")
        if len(faces) > 1:
            log.warning("%s: %d faces found, the largest is used", name, len(faces))
        main = faces[0]
        if require_quality and not main.quality.ok:
            raise QualityError(f"{name}: face not usable: {'; '.join(main.quality.reasons)}")
        return main

    def live_encoding(self, image: ImageLike) -> np.ndarray:
        """The main face's encoding; raises PresentationAttackError when liveness is on and it is not live."""
        main = self.main_face(image)
        if main.liveness is not None and not main.liveness.live:
            raise PresentationAttackError(f"{_name(image)}: {main.liveness.reason}", main.liveness)
        assert main.embedding is not None
        return main.embedding

    # -- gallery ---------------------------------------------------------------------------------------
    def enroll(self, name: str, images: Iterable[ImageLike], require_quality: bool = True,
               check_identity: bool = True) -> int:
        """Enrol a person from one or more photos (all or nothing); returns the templates added.

        The photos must be one person, and the person already enrolled under this name (in any case
        or Unicode form) if any (EnrolmentError, unless ``check_identity`` is False); a warning names
        anyone enrolled under another name whom they resemble (nearer than tau)."""
        name = check_name(name)
        images = list(images)
        embeddings = [self.encode_one(img, require_quality, flip=self.flip_enrolment) for img in images]
        if not embeddings:
            raise ImageError("no image given to enrol from")
        new = np.stack(embeddings)
        labels = [f"image {i + 1}" if isinstance(img, np.ndarray) else str(img) for i, img in enumerate(images)]
        if self._gallery is None:  # a refused first enrolment leaves no empty gallery behind
            try:
                self._gallery = Gallery(self.state_dir, self.model_sha256, create=False)
            except NoGalleryError:
                pass
        m = self._gallery.matrix() if self._gallery else GalleryMatrix([], np.zeros(0, np.int64), np.zeros((0, 0)))
        me = m.index(name)
        if check_identity:
            enrolled = m.vectors[m.owner == me] if me is not None else m.vectors[:0]
            check_same_person(m.names[me] if me is not None else name, labels, new, enrolled, self.tau)
        for label, other, d in lookalikes(labels, new, m.names, m.owner, m.vectors, self.tau, skip=me):
            log.warning("%s looks like %r, already enrolled (distance %.3f, tau %.3f): the same person under "
                        "another name?", label, other, d, self.tau)
        if self._gallery is None:
            self._gallery = Gallery(self.state_dir, self.model_sha256, create=True)
        return self._gallery.add(name, new)

    def matcher(self, level: str, k: int = 1, n: int = 1, tau: float | None = None) -> VisitMatcher:
        """The daemon's votes and confirmations at a security level's taus over this gallery (``tau``:
        an explicit override of the level); see :mod:`edge_verify.visits`."""
        from .visits import VisitMatcher

        return VisitMatcher(self.manifest, self.gallery.matrix, level, k, n, tau)

    def access(self, name: str) -> AccessRule:
        """``name``'s access rule (validity dates, weekly windows); unrestricted when none is set."""
        return self.gallery.access(name)

    def add_templates(self, name: str, embeddings: np.ndarray) -> int:
        """Store encodings already made (a camera enrolment) for ``name``; returns how many."""
        return self.gallery.add(name, embeddings)

    def forget(self, name: str) -> int:
        return self.gallery.forget(name)

    def people(self) -> list[str]:
        return [p.name for p in self.gallery.people()]

    # -- decisions -------------------------------------------------------------------------------------
    def match(self, embedding: np.ndarray, claim: str | None = None, top_k: int = 1) -> Decision:
        """Decide for one encoding: verify against ``claim`` (1:1), or identify (1:N) without one."""
        if self.security is not None:  # the matcher reads the gallery (and refuses an empty one) itself
            return self._match_at_level(embedding, claim, top_k)
        m = self.gallery.matrix()
        if not m.names:
            raise EmptyGalleryError(_EMPTY)
        if claim is not None:
            idx = m.index(claim)
            if idx is None:
                raise UnknownPersonError(f"{claim.strip()!r} is not enrolled")
            return decide_verify(squared_l2(embedding, m.vectors[m.owner == idx]), m.names[idx], self.tau)
        best = best_per_person(squared_l2(embedding, m.vectors), m.owner, len(m.names))
        return decide_identify(best, m.names, self.tau, top_k)

    def _level(self) -> VisitMatcher:
        if self._level_matcher is None:
            assert self.security is not None
            self._level_matcher = self.matcher(self.security)
        return self._level_matcher

    def decision_tau(self, claim: bool = False) -> float:
        """The tau ``match`` decides with: the security level's for this gallery (1:1 when ``claim``,
        else 1:N), else ``tau``; ``tau`` too while no one is enrolled."""
        if self.security is None:
            return self.tau
        try:
            cur = self._level().matching()
        except EmptyGalleryError:
            return self.tau
        return cur.claim_tau if claim else cur.tau

    def _match_at_level(self, embedding: np.ndarray, claim: str | None, top_k: int) -> Decision:
        """``match`` at the security level's tau for this gallery, as the daemon decides one frame."""
        level = self._level()
        cur = level.matching()
        d = cur.templates.distances(embedding)
        if claim is not None:
            idx = cur.matrix.index(claim)
            if idx is None:
                raise UnknownPersonError(f"{claim.strip()!r} is not enrolled")
            return decide_verify(d[idx:idx + 1], cur.matrix.names[idx], cur.claim_tau)
        order = np.argsort(d, kind="stable")
        candidates = [(cur.templates.names[i], float(d[i])) for i in order[: max(1, top_k)]]
        v = level.confirm_encodings(cur, embedding[None, :], int(order[0]))
        if v.accepted:
            return Decision(True, v.person, v.distance, cur.tau, candidates)
        return Decision(False, None, v.distance, cur.tau, candidates, reason=v.reason)

    def verify(self, claim: str, image: ImageLike) -> Decision:
        """1:1: is the main face of ``image`` the enrolled person ``claim``?"""
        if claim not in self.gallery:
            if not self.gallery.people():
                raise EmptyGalleryError(_EMPTY)
            raise UnknownPersonError(f"{claim!r} is not enrolled")
        return self.match(self.live_encoding(image), claim=claim)

    def identify(self, image: ImageLike, top_k: int = 1) -> Decision:
        """1:N: who is the main face of ``image``, if anyone enrolled?"""
        if not self.gallery.people():
            raise EmptyGalleryError(_EMPTY)
        return self.match(self.live_encoding(image), top_k=top_k)
