"""Training data: aligned face crops, cached, and P x K batches with augmentation.

Faces are cut by the runtime's own detector and alignment (``edge_verify.detect`` and
``edge_verify.align``), so training sees exactly the crops the door sees. Crops are cached as an
``.npz`` of 112x112 BGR uint8 arrays keyed by the image path relative to the data root (default cache
directory ``~/.cache/edge-verify``; ``$EDGE_VERIFY_CACHE`` overrides it).

A :class:`FaceSet` holds every crop of a source with its person, source and LFW fold; it can be saved
as a self-contained *bundle* (crops as JPEG, optional teacher encodings, the LFW pairs) that trains
on a machine without the photos or the detector.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from converter.errors import ConverterError
from converter.faces import subject_crop
from converter.lfw import LfwError, image_path, person_folds, person_of, read_pairs, shared_dir
from edge_verify.imageio import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

CROP = 112
U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class DataError(ConverterError):
    """Training data cannot be used as asked (one-line message)."""


def default_cache_dir() -> Path:
    env = os.environ.get("EDGE_VERIFY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edge-verify"


# ---------------------------------------------------------------- LFW protocol (parsing: converter.lfw)

LFW_KEYS = Path("lfw") / "images"  # crop-cache keys of LFW images are relative to shared/data


def _key(name: str, i: int) -> str:
    return image_path(LFW_KEYS, name, i).as_posix()


def read_people_counts(tsv: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in tsv.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            counts[parts[0]] = int(parts[1])
    return counts


# ---------------------------------------------------------------- crops


class CropCache:
    """Aligned crops keyed by image path relative to ``root``, stored in one ``.npz`` per root.

    Images where no face is found are remembered too (and skipped), so they are not searched again.
    """

    def __init__(self, root: Path, cache_dir: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        tag = hashlib.sha1(str(self.root).encode()).hexdigest()[:10]
        self.path = self.dir / f"crops-{self.root.name}-{tag}.npz"
        self._crops: dict[str, U8] = {}
        self._failed: set[str] = set()
        if self.path.is_file():
            with np.load(self.path) as z:
                keys = [str(k) for k in z["keys"]]
                crops = z["crops"]
                self._crops = {k: crops[i] for i, k in enumerate(keys)}
                self._failed = {str(k) for k in z["failed"]}
            log.debug(
                "crop cache %s: %d crops, %d without a face", self.path, len(self._crops), len(self._failed)
            )

    def get(self, keys: Sequence[str], progress: bool = False) -> dict[str, U8]:
        """Crops for these keys (relative paths); faces are detected and aligned where not cached."""
        todo = [k for k in keys if k not in self._crops and k not in self._failed]
        if todo:
            self._fill(todo, progress)
        return {k: self._crops[k] for k in keys if k in self._crops}

    def _fill(self, keys: list[str], progress: bool) -> None:
        from edge_verify.detect import FaceDetector
        from edge_verify.errors import ImageError
        from edge_verify.imageio import read_image

        detector = FaceDetector()
        log.info("cutting %d faces with YuNet + 5-point alignment (cached in %s)", len(keys), self.path)
        for n, key in enumerate(keys, 1):
            try:
                image = read_image(self.root / key)
            except ImageError as exc:
                log.warning("skipping %s", exc)
                self._failed.add(key)
                continue
            crop, _ = subject_crop(image, detector)
            if crop is None:
                self._failed.add(key)
            else:
                self._crops[key] = crop
            if progress and (n % 500 == 0 or n == len(keys)):
                log.info("  %d / %d images", n, len(keys))
        self.save()

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._crops)
        crops = np.stack([self._crops[k] for k in keys]) if keys else np.zeros((0, CROP, CROP, 3), np.uint8)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(keys), crops=crops, failed=np.array(sorted(self._failed), dtype=str))
        tmp.replace(self.path)


# ---------------------------------------------------------------- face sets


@dataclass
class FaceSet:
    """Aligned crops with who they show; ``fold`` is the person's LFW fold (0 outside LFW)."""

    keys: list[str]
    person: npt.NDArray[np.str_]
    source: npt.NDArray[np.str_]
    fold: I64
    crops: U8
    teacher: F32 | None = None  # (N, D) encodings of the crops by a teacher model
    pairs: I64 = field(default_factory=lambda: np.zeros((0, 4), np.int64))  # fold, index1, index2, same

    def __len__(self) -> int:
        return len(self.keys)

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    @staticmethod
    def concat(sets: Sequence[FaceSet]) -> FaceSet:
        offsets = np.cumsum([0] + [len(s) for s in sets])
        pairs = [s.pairs + np.array([0, o, o, 0]) for s, o in zip(sets, offsets, strict=False)]
        teachers = [s.teacher for s in sets]
        return FaceSet(
            keys=[k for s in sets for k in s.keys],
            person=np.concatenate([s.person for s in sets]),
            source=np.concatenate([s.source for s in sets]),
            fold=np.concatenate([s.fold for s in sets]),
            crops=np.concatenate([s.crops for s in sets]),
            teacher=None if any(t is None for t in teachers) else np.concatenate(teachers),  # type: ignore[arg-type]
            pairs=np.concatenate(pairs) if pairs else np.zeros((0, 4), np.int64),
        )

    def select(
        self, folds: Sequence[int] = (), extra: bool = False, exclude_people: Iterable[str] = ()
    ) -> I64:
        """Indices of crops of LFW people in ``folds`` plus, with ``extra``, all non-LFW crops."""
        excluded = set(exclude_people)
        keep = np.isin(self.fold, list(folds)) & (self.source == "lfw")
        if extra:
            keep |= self.source != "lfw"
        if excluded:
            keep &= ~np.isin(self.person, list(excluded))
        return np.flatnonzero(keep)

    def lfw_pairs(self, folds: Sequence[int]) -> I64:
        """Rows (fold, i, j, same) of the LFW pairs in ``folds`` whose two crops exist."""
        return self.pairs[np.isin(self.pairs[:, 0], list(folds))]


def load_lfw(
    shared: Path | None = None,
    cache_dir: Path | None = None,
    folds: Sequence[int] = range(1, 11),
    progress: bool = False,
) -> FaceSet:
    """Every image of every person named in the pairs of ``folds``, cropped; and those folds' pairs."""
    data = (shared or shared_dir()) / "data"
    lfw = data / "lfw"
    if not (lfw / "pairs.txt").is_file():
        raise DataError(f"LFW not found: {lfw / 'pairs.txt'} (set EDGE_VERIFY_SHARED)")
    try:
        pairs = read_pairs(lfw / "pairs.txt", folds)
        person_fold = person_folds(pairs)
    except LfwError as exc:
        raise DataError(str(exc)) from None
    counts = read_people_counts(lfw / "people_in_subset.tsv")
    files: dict[str, list[str]] = {}
    for f in sorted((lfw / "images").glob("*.jpg")):
        files.setdefault(person_of(f), []).append((LFW_KEYS / f.name).as_posix())
    keys: list[str] = []
    for name in sorted(person_fold):
        found = files.get(name, [])
        if name in counts and len(found) != counts[name]:
            log.warning("LFW %s: %d images listed, %d found", name, counts[name], len(found))
        keys += found
    crops = CropCache(data, cache_dir).get(keys, progress)
    kept = [k for k in keys if k in crops]
    if len(kept) < len(keys):
        log.info("LFW: no face found in %d of %d images", len(keys) - len(kept), len(keys))
    names = [person_of(k) for k in kept]
    fs = FaceSet(
        kept,
        np.array(names, dtype=str),
        np.full(len(kept), "lfw"),
        np.array([person_fold[n] for n in names], np.int64),
        np.stack([crops[k] for k in kept]) if kept else np.zeros((0, CROP, CROP, 3), np.uint8),
    )
    idx = fs.index()
    rows = []
    for p in pairs:
        a, b = idx.get(_key(p.name1, p.i1)), idx.get(_key(p.name2, p.i2))
        if a is None or b is None:
            log.warning(
                "LFW pair %s %d / %s %d: a face is missing, pair skipped", p.name1, p.i1, p.name2, p.i2
            )
            continue
        rows.append((p.fold, a, b, int(p.same)))
    fs.pairs = np.array(rows, np.int64).reshape(-1, 4)
    return fs


def load_folder(
    root: Path, cache_dir: Path | None = None, source: str = "extra", progress: bool = False
) -> FaceSet:
    """A folder-per-person tree: ``root/<person>/<image>``; each person is named ``<source>:<folder>``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    keys: list[str] = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        keys += [
            f"{person.name}/{f.name}"
            for f in sorted(person.iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
    if not keys:
        raise DataError(f"{root}: no person folders with images")
    crops = CropCache(root, cache_dir).get(keys, progress)
    kept = [k for k in keys if k in crops]
    log.info("%s: faces in %d of %d images", root.name, len(kept), len(keys))
    return FaceSet(
        kept,
        np.array([f"{source}:{k.split('/')[0]}" for k in kept], dtype=str),
        np.full(len(kept), source),
        np.zeros(len(kept), np.int64),
        np.stack([crops[k] for k in kept]),
    )


# ---------------------------------------------------------------- bundles


def save_bundle(path: Path, fs: FaceSet, jpeg_quality: int = 92) -> None:
    """Save a face set as one compact ``.npz``: crops JPEG-encoded (lossy), teacher as float16."""
    blobs = [cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1].tobytes() for c in fs.crops]
    lengths = np.array([len(b) for b in blobs], np.int64)
    arrays: dict[str, npt.ArrayLike] = dict(
        keys=np.array(fs.keys),
        person=fs.person,
        source=fs.source,
        fold=fs.fold,
        pairs=fs.pairs,
        jpeg=np.frombuffer(b"".join(blobs), np.uint8),
        jpeg_len=lengths,
    )
    if fs.teacher is not None:
        arrays["teacher"] = fs.teacher.astype(np.float16)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    Path(path).write_bytes(buf.getvalue())


def load_bundle(path: Path) -> FaceSet:
    with np.load(path) as z:
        ends = np.cumsum(z["jpeg_len"])
        data = z["jpeg"]
        decoded: list[Any] = [
            cv2.imdecode(data[e - n : e], cv2.IMREAD_COLOR) for e, n in zip(ends, z["jpeg_len"], strict=True)
        ]
        crops: U8 = np.stack(decoded).astype(np.uint8)
        return FaceSet(
            [str(k) for k in z["keys"]],
            z["person"],
            z["source"],
            z["fold"].astype(np.int64),
            crops,
            z["teacher"].astype(np.float32) if "teacher" in z else None,
            z["pairs"].astype(np.int64),
        )


# ---------------------------------------------------------------- augmentation and batches


@dataclass(frozen=True)
class Augment:
    """Random photometric and geometric changes of a 112x112 BGR crop (numpy / OpenCV)."""

    flip: float = 0.5
    shift: float = 4.0  # pixels, each axis
    scale: float = 0.06  # relative
    rotate: float = 6.0  # degrees
    brightness: float = 32.0  # added, 0..255 units
    contrast: float = 0.3  # multiplied around the mean: 1 +- contrast
    blur: float = 0.2  # probability of a Gaussian blur
    grey: float = 0.1  # probability of greyscale

    def __call__(self, crop: U8, rng: np.random.Generator) -> F32:
        img: Any = crop
        if rng.random() < self.flip:
            img = img[:, ::-1]
        if self.shift or self.scale or self.rotate:
            angle = rng.uniform(-self.rotate, self.rotate)
            s = 1.0 + rng.uniform(-self.scale, self.scale)
            m: Any = cv2.getRotationMatrix2D((CROP / 2.0, CROP / 2.0), angle, s)
            m[:, 2] += rng.uniform(-self.shift, self.shift, 2)
            img = cv2.warpAffine(
                np.ascontiguousarray(img),
                m,
                (CROP, CROP),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
            )
        if rng.random() < self.blur:
            img = cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), rng.uniform(0.5, 1.5))
        if rng.random() < self.grey:
            img = cv2.cvtColor(
                cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR
            )
        x = img.astype(np.float32)
        c = 1.0 + rng.uniform(-self.contrast, self.contrast)
        x = (x - x.mean()) * c + x.mean() + rng.uniform(-self.brightness, self.brightness)
        return np.clip(x, 0.0, 255.0)


NO_AUGMENT = Augment(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class PKSampler:
    """Batches of P people x K crops each, from people with at least ``min_images`` crops.

    People with fewer than K crops are sampled with replacement (augmentation makes the repeats differ).
    Each batch depends only on ``(seed, epoch, step)``, so training is reproducible and resumable.
    """

    def __init__(
        self,
        fs: FaceSet,
        idx: npt.ArrayLike,
        P: int = 16,
        K: int = 4,
        augment: Augment | None = None,
        seed: int = 0,
        min_images: int = 2,
    ) -> None:
        idx = np.asarray(idx, np.int64)
        by_person: dict[str, list[int]] = {}
        for i in idx:
            by_person.setdefault(str(fs.person[i]), []).append(int(i))
        self.people = sorted(p for p, v in by_person.items() if len(v) >= min_images)
        if len(self.people) < P:
            raise DataError(f"only {len(self.people)} people with >= {min_images} faces, fewer than P={P}")
        self.groups = [np.array(by_person[p], np.int64) for p in self.people]
        self.fs, self.P, self.K = fs, P, K
        self.augment = augment if augment is not None else Augment()
        self.seed = seed
        self.images = int(sum(len(g) for g in self.groups))

    def indices(self, epoch: int, step: int) -> tuple[I64, I64]:
        """Crop indices and batch-local labels (0..P-1) of one batch."""
        rng = np.random.default_rng([self.seed, epoch, step])
        who = rng.choice(len(self.groups), self.P, replace=False)
        idx, labels = [], []
        for j, w in enumerate(who):
            g = self.groups[w]
            idx.append(rng.choice(g, self.K, replace=len(g) < self.K))
            labels.append(np.full(self.K, j))
        return np.concatenate(idx), np.concatenate(labels).astype(np.int64)

    def batch(self, epoch: int, step: int) -> tuple[F32, I64, I64]:
        """(images float32 (P*K, 112, 112, 3) BGR 0..255, labels, crop indices)."""
        idx, labels = self.indices(epoch, step)
        rng = np.random.default_rng([self.seed, epoch, step, 1])
        x = np.stack([self.augment(self.fs.crops[i], rng) for i in idx])
        return x, labels, idx
