"""Encodings of a whole face data set through the product's own pipeline, cached on disk.

Every image goes through ``edge_verify.pipeline.FaceVerifier.process`` (YuNet, the quality gate,
5-point alignment, the int8 encoder), exactly what ``edge-verify embed`` does. The subject of an image
with several faces is the one ``converter.faces.pick_subject`` picks (nearest the centre among the
large ones); an image without a face gets a NaN row and is counted. The quality gate's verdict is kept
beside each encoding (the door simulation lets only gated faces vote, as the daemon does).

Data sets: LFW (``images/Name_NNNN.jpg`` beside ``pairs.txt``: the person comes from the file name) or
any folder-per-person set (Extended Yale B). ``frames`` makes simulated camera frames of an image:
seeded, realistic per-frame perturbations (see :func:`perturb`).

The cache is one ``.npz`` per data set and model, outside the repository (``default_cache``): it
records the model's sha256, the detector, a fingerprint of the pipeline (what it makes of the bundled
sample photos), the perturbation recipe and every path, and is reused only when all of them match, so
a cache made by another version of the product is never read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_verify.imageio import IMAGE_SUFFIXES, read_image

from . import lfw
from .errors import ConverterError
from .faces import pick_subject

log = logging.getLogger(__name__)

PERTURB_VERSION = 1  # bump when perturb() changes: caches made with another recipe are not reused


class EncodingsError(ConverterError):
    """A one-line reason the data set cannot be encoded."""


@dataclass(frozen=True)
class DataSet:
    """Images and the person each shows, sorted by (the data set's own) person name, then file name."""

    root: Path
    paths: list[Path]
    persons: list[str]

    @property
    def people(self) -> list[str]:
        return sorted(set(self.persons))

    def person_index(self) -> tuple[np.ndarray, list[str]]:
        """(index of each image's person into ``people``, ``people``)."""
        people = self.people
        where = {p: i for i, p in enumerate(people)}
        return np.array([where[p] for p in self.persons], np.int64), people


def load_dataset(root: Path, aliases: dict[str, str] | None = None) -> DataSet:
    """LFW (``images/`` + ``pairs.txt``) or a folder-per-person data set; ``aliases`` maps a second name
    of a person to their first (``lfw.ALIASES``), merging the two."""
    root = Path(root)
    if (root / "images").is_dir() and (root / "pairs.txt").is_file():
        paths = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        rows = sorted((lfw.person_of(p), p) for p in paths)
    elif root.is_dir():
        rows = sorted(
            (person.name, img)
            for person in root.iterdir()
            if person.is_dir()
            for img in person.iterdir()
            if img.suffix.lower() in IMAGE_SUFFIXES and img.is_file()
        )
    else:
        raise EncodingsError(f"{root}: not a directory")
    if aliases:  # renamed in place: the order of the images (and so every cache) stays the same
        rows = [(aliases.get(n, n), p) for n, p in rows]
    if len({r[0] for r in rows}) < 2:
        raise EncodingsError(f"{root}: need images of at least 2 people, found {len({r[0] for r in rows})}")
    return DataSet(root, [p for _, p in rows], [n for n, _ in rows])


@dataclass(frozen=True)
class Encodings:
    """One encoding per image (or per simulated frame): NaN rows where no face was found."""

    vectors: np.ndarray  # (M, D) float32, unit length
    ok: np.ndarray  # (M,) bool: the face passed the product's quality gate
    found: np.ndarray  # (M,) bool: a face was found

    def __len__(self) -> int:
        return int(self.found.size)


# ---------------------------------------------------------------- simulated frames


def perturb(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One simulated camera frame of a still photo: what changes between frames of a person at a door.

    A small head/camera movement (shift up to 4 % of the side, scale 0.92-1.08, in-plane rotation up to
    6 degrees), exposure and gain (contrast 0.75-1.25, brightness -20..+20), focus and motion blur in
    half of the frames (Gaussian sigma 0.3-1.3), sensor noise (sigma 1-5 grey levels) and a JPEG
    re-encode at quality 55-90, as a camera stream is compressed.
    """
    h, w = image.shape[:2]
    angle = rng.uniform(-6, 6)
    scale = rng.uniform(0.92, 1.08)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] = m[:, 2] + rng.uniform(-0.04, 0.04, 2) * (w, h)
    warped = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = np.asarray(warped).astype(np.float32) * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
    if rng.random() < 0.5:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.3)), np.float32)
    out = out + rng.normal(0, rng.uniform(1, 5), out.shape).astype(np.float32)
    frame = np.clip(out, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(55, 91))])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    return frame if decoded is None else np.asarray(decoded)


def frame_rng(seed: int, image_index: int, frame: int) -> np.random.Generator:
    """The generator of one simulated frame: the same frame whatever else is encoded."""
    return np.random.default_rng([seed, image_index, frame])


# ---------------------------------------------------------------- encoding


class ProductEncoder:
    """Images to (encoding, quality ok, found) through ``FaceVerifier.process``."""

    def __init__(self, model: str | Path | None = None, threads: int = 2, flip: bool = False) -> None:
        from edge_verify.pipeline import FaceVerifier

        self.flip = flip  # encodings as enrolment makes templates: crop and mirror averaged
        cv2.setNumThreads(threads)
        self.verifier = FaceVerifier(model=model, state_dir="/nonexistent-unused", num_threads=threads)
        self.sha256 = self.verifier.model_sha256
        self.dim = self.verifier.embedder.embedding_size
        det = self.verifier.detector
        self.detector = f"{det.backend}:{Path(det.model_path).name}"
        self.fingerprint = self._fingerprint()  # both are part of every cache's key

    def _fingerprint(self) -> str:
        """A hash of what the pipeline makes of the bundled sample photos: any change to detection,
        alignment or the encoder changes it, so a cache made by another pipeline is never reused."""
        import hashlib

        from edge_verify.imageio import read_image

        samples = sorted((Path(__file__).resolve().parents[1] / "edge_verify" / "samples").glob("*.jpg"))
        h = hashlib.sha256()
        for path in samples[:3]:
            v, ok, found = self.encode(read_image(path))
            h.update(np.round(np.nan_to_num(v), 3).astype(np.float32).tobytes() + bytes([ok, found]))
        return h.hexdigest()[:12]

    def encode(self, image: np.ndarray) -> tuple[np.ndarray, bool, bool]:
        faces = self.verifier.process(image, flip=self.flip).faces
        subject = pick_subject([f.face for f in faces], image.shape)
        if subject is None:
            return np.full(self.dim, np.nan, np.float32), False, False
        result = next(f for f in faces if f.face is subject)
        assert result.embedding is not None
        return result.embedding, bool(result.quality.ok), True


def encode_dataset(
    data: DataSet,
    cache: Path | None = None,
    model: str | Path | None = None,
    frames: int = 0,
    seed: int = 0,
    frame_offset: int = 0,
    threads: int = 2,
    progress: bool = True,
    reader: Callable[[Path], np.ndarray] = read_image,
    flip: bool = False,
) -> Encodings:
    """Encodings of every image (``frames == 0``) or of ``frames`` simulated frames per image (rows
    ``i * frames + f``: frames ``frame_offset + f`` of image i, so that a second call with an offset
    adds more frames of the same visits), loaded from ``cache`` when it matches, else computed and
    saved there. ``flip``: encoded as enrolment encodes templates (crop and mirror averaged)."""
    enc = ProductEncoder(model, threads, flip)
    rel = [str(p.relative_to(data.root)) for p in data.paths]
    recipe = f"frames={frames} seed={seed} perturb={PERTURB_VERSION}" if frames else "images"
    if flip:
        recipe += " flip"
    if frames and frame_offset:
        recipe += f" offset={frame_offset}"
    recipe += f" detector={enc.detector} pipeline={enc.fingerprint}"
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if (
                str(z["model_sha256"]) == enc.sha256
                and str(z["recipe"]) == recipe
                and z["paths"].tolist() == rel
            ):
                log.info("encodings from cache %s", cache)
                return Encodings(z["vectors"], z["ok"], z["found"])
        log.warning("cache %s was made with another model, recipe or file list: encoding again", cache)
    from .evaluate import Progress

    rows = len(rel) * max(frames, 1)
    vectors = np.full((rows, enc.dim), np.nan, np.float32)
    ok = np.zeros(rows, bool)
    found = np.zeros(rows, bool)
    bar = Progress(rows, f"encoding {data.root.name} ({recipe})", every=2000) if progress else None
    for i, path in enumerate(data.paths):
        image = reader(path)
        jobs = [(i, image)] if not frames else [
            (i * frames + f, perturb(image, frame_rng(seed, i, frame_offset + f))) for f in range(frames)
        ]
        for row, img in jobs:
            vectors[row], ok[row], found[row] = enc.encode(img)
        if bar:
            bar.update(len(jobs))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, vectors=vectors, ok=ok, found=found, paths=np.array(rel), model_sha256=enc.sha256,
                 recipe=recipe)
        tmp.replace(cache)
    return Encodings(vectors, ok, found)


def default_cache(root: Path, tag: str) -> Path:
    """``<cache dir>/<dataset>-<tag>.npz``, outside the repository: ``$EDGE_VERIFY_CACHE``, else
    ``~/.cache/edge-verify/encodings``."""
    env = os.environ.get("EDGE_VERIFY_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "edge-verify" / "encodings"
    return base / f"{Path(root).name}-{tag}.npz"
