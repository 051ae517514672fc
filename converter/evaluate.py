"""Measure a face encoder on LFW View 2 pairs or on a folder-per-person data set.

    python -m converter.evaluate MODEL [--data DIR] [--folds 6-10] [--people-dir DIR] [--far 1e-3]
                                 [--plot OUT.png] [--json OUT.json] [--update-manifest] [--flip]
    python -m converter.evaluate --pad DIR ...   liveness: APCER / BPCER over live/ and attack/ (converter.pad)
    python -m converter.evaluate MODEL.tflite --all-pairs [--people-dir DIR] [--cache F.npz] [--bootstrap 1000]
    python -m converter.evaluate MODEL.tflite --open-set [--people-dir DIR] [--cache F.npz]

``--all-pairs`` compares every pair of images (LFW: 29.6 M impostor pairs) for FNMR at FMR 1e-3 ... 1e-6
(``converter.allpairs``); ``--open-set`` measures 1:N identification, FNIR at FPIR, per frame and per
visit (``converter.openset``). Both encode through the product's ``FaceVerifier`` and cache the
encodings outside the repository (``converter.encodings``).

MODEL is a ``.tflite`` (run by ``edge_verify.embed.Embedder``, no TensorFlow needed) or a ``.keras``
(run by Keras, with ``converter.layers`` registered). Faces go through the product's own detection
and alignment (``edge_verify.detect`` + ``edge_verify.align``); when an image has several faces the
subject is the one nearest the image centre among those at least 30 % as large as the largest
(``converter.faces.pick_subject``), and when it has none the central square of the image
is used instead (``--no-face centre``, the default) or the image is left out (``--no-face skip``).
Either way the count is reported. All metric maths lives in ``converter.metrics``.

Exit codes: 0 done, 2 bad arguments, data or model.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from converter.errors import ConverterError
from edge_verify.detect import BACKENDS, DetectorBackend
from edge_verify.imageio import IMAGE_SUFFIXES
from edge_verify.match import l2_normalize

from . import lfw, metrics
from .faces import subject_crop
from .lfw import folds_arg

log = logging.getLogger(__name__)

REPORT_FARS = (1e-3, 1e-2)
HOW = {"one": "one_face", "several": "several_faces", "none": "no_face"}  # subject_crop's word -> report key
CHUNK = 64


class EvaluateError(ConverterError):
    """A one-line reason the evaluation cannot run."""


# ---------------------------------------------------------------- pairs


@dataclass(frozen=True)
class PairSet:
    """Pairs of images as indices into ``paths``; ``folds`` numbers the fold of each pair (from 1)."""

    paths: list[Path]
    first: np.ndarray  # (P,) int
    second: np.ndarray  # (P,) int
    same: np.ndarray  # (P,) bool
    folds: np.ndarray  # (P,) int
    persons: list[str] = field(default_factory=list)  # person of each path, where known

    def __len__(self) -> int:
        return int(self.same.size)


def read_lfw_pairs(data: Path, folds: Sequence[int] | None = None) -> PairSet:
    """The pairs of LFW View 2 (``data/pairs.txt``, images in ``data/images``) of ``folds`` (default: all)."""
    try:
        rows = lfw.read_pairs(data / "pairs.txt", folds or None)
    except lfw.LfwError as exc:
        raise EvaluateError(str(exc)) from None
    index: dict[Path, int] = {}
    persons: list[str] = []

    def ref(name: str, i: int) -> int:
        path = lfw.image_path(data / "images", name, i)
        if path not in index:
            index[path] = len(index)
            persons.append(name)
        return index[path]

    a = np.array([(ref(p.name1, p.i1), ref(p.name2, p.i2), p.same, p.fold) for p in rows], np.int64)
    a = a.reshape(-1, 4)
    paths = list(index)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise EvaluateError(f"{len(missing)} images named in {data / 'pairs.txt'} are missing, e.g. {missing[0]}")
    return PairSet(paths, a[:, 0], a[:, 1], a[:, 2].astype(bool), a[:, 3], persons)


def people_images(root: Path) -> tuple[list[Path], list[str]]:
    """Images of a folder-per-person data set, sorted, with the person (folder name) of each."""
    if not root.is_dir():
        raise EvaluateError(f"{root}: not a directory")
    paths, persons = [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(person.iterdir()):
            if img.suffix.lower() in IMAGE_SUFFIXES and img.is_file():
                paths.append(img)
                persons.append(person.name)
    if len(set(persons)) < 2:
        raise EvaluateError(f"{root}: need at least 2 person folders with images, found {len(set(persons))}")
    return paths, persons


def people_pairs(
    paths: list[Path], persons: list[str], k: int = 5, impostors: int | None = None, seed: int = 0
) -> PairSet:
    """All genuine pairs, all (or a seeded sample of ``impostors``) impostor pairs; each pair's fold is
    its person's fold when both people share a fold (person-disjoint splits), else 0."""
    who = np.array(persons)
    fold_of = metrics.person_folds(who, k, seed)
    i, j = np.triu_indices(len(paths), k=1)
    same = who[i] == who[j]
    gi, gj = i[same], j[same]
    ii, ij = i[~same], j[~same]
    if impostors is not None and impostors < ii.size:
        pick = np.sort(np.random.default_rng(seed).choice(ii.size, impostors, replace=False))
        ii, ij = ii[pick], ij[pick]
    first, second = np.concatenate([gi, ii]), np.concatenate([gj, ij])
    f = np.array([fold_of[p] + 1 for p in persons])
    folds = np.where(f[first] == f[second], f[first], 0)
    return PairSet(paths, first, second, np.arange(first.size) < gi.size, folds, list(persons))


# ---------------------------------------------------------------- embedding


class Pipeline(Protocol):
    """Images (BGR uint8, any size) to one embedding each, plus how the face was found."""

    name: str

    def represent(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str]]: ...


def centre_crop(image: np.ndarray, size: int = 112) -> np.ndarray:
    """The central square of the image, resized: the fallback when no face is detected."""
    h, w = image.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(image[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA)


EmbedBatch = Callable[[np.ndarray], np.ndarray]  # (N, 112, 112, 3) uint8 BGR -> (N, D)


def tflite_embedder(model: Path, threads: int | None) -> tuple[EmbedBatch, str]:
    from edge_verify.embed import Embedder

    emb = Embedder(model, num_threads=threads)
    return (lambda crops: np.asarray(emb.embed_batch(list(crops)), np.float32)), str(emb.interpreter)


def keras_embedder(model: Path, threads: int | None) -> tuple[EmbedBatch, str]:
    import keras
    import tensorflow as tf

    from .layers import load_encoder

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
    net = load_encoder(model)

    def run(crops: np.ndarray) -> np.ndarray:
        return np.asarray(net.predict_on_batch(np.asarray(crops, np.float32)), np.float32)

    return run, f"keras {keras.__version__}"


class ProductPipeline:
    """edge_verify detection + alignment, then an encoder; optional horizontal-flip averaging."""

    def __init__(
        self,
        embed_batch: EmbedBatch,
        name: str,
        detector: Any = None,
        flip: bool = False,
        no_face: str = "centre",
    ) -> None:
        if detector is None:
            from edge_verify.detect import FaceDetector

            detector = FaceDetector()
        self.embed_batch, self.name, self.detector, self.flip, self.no_face = (
            embed_batch,
            name,
            detector,
            flip,
            no_face,
        )

    def crop(self, image: np.ndarray) -> tuple[np.ndarray | None, str]:
        crop, how = subject_crop(image, self.detector)
        if crop is None:
            return (centre_crop(image) if self.no_face == "centre" else None), "no_face"
        return crop, HOW[how]

    def represent(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        crops, how = zip(*(self.crop(img) for img in images), strict=True)
        keep = [c for c in crops if c is not None]
        out = np.full((len(images), 0), np.nan, np.float32)
        if keep:
            batch = np.stack(keep)
            emb = self.embed_batch(batch)
            if self.flip:
                emb = emb + self.embed_batch(np.ascontiguousarray(batch[:, :, ::-1]))
            emb = l2_normalize(emb)
            out = np.full((len(images), emb.shape[1]), np.nan, np.float32)
            out[[k for k, c in enumerate(crops) if c is not None]] = emb
        return out, list(how)


class Progress:
    """A counter on stderr: rewritten in place on a terminal, a line every ``every`` items otherwise."""

    def __init__(self, total: int, label: str, every: int = 1000, stream: Any = None) -> None:
        self.total, self.label, self.every = total, label, every
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done, self.start, self._last = 0, time.monotonic(), 0

    def update(self, n: int) -> None:
        self.done += n
        rate = self.done / max(time.monotonic() - self.start, 1e-9)
        text = f"{self.label} {self.done}/{self.total} ({rate:.0f}/s)"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if self.done >= self.total else ""))
            self.stream.flush()
        elif self.done // self.every > self._last // self.every or self.done >= self.total:
            self.stream.write(text + "\n")
            self.stream.flush()
        self._last = self.done


@dataclass
class Embeddings:
    vectors: np.ndarray  # (N, D) float32, NaN rows for images left out
    how: list[str]  # per image: one_face / several_faces / no_face
    seconds: float

    def detection(self, no_face: str) -> dict[str, Any]:
        counts = {k: self.how.count(k) for k in ("one_face", "several_faces", "no_face")}
        handling = {
            "centre": "central square of the image resized to 112x112, then embedded",
            "skip": "image left out with every pair that uses it",
        }[no_face]
        return {"images": len(self.how), **counts, "no_face_handling": handling}


def embed_images(
    paths: Sequence[Path],
    pipeline: Pipeline,
    progress: bool = True,
    reader: Callable[[Path], np.ndarray] | None = None,
) -> Embeddings:
    """Embed each image once, in chunks, showing progress on stderr."""
    if reader is None:
        from edge_verify.imageio import read_image

        reader = read_image
    bar = Progress(len(paths), f"embedding ({pipeline.name})") if progress else None
    vectors: list[np.ndarray] = []
    how: list[str] = []
    start = time.monotonic()
    for k in range(0, len(paths), CHUNK):
        chunk = paths[k : k + CHUNK]
        v, h = pipeline.represent([reader(p) for p in chunk])
        vectors.append(v)
        how.extend(h)
        if bar:
            bar.update(len(chunk))
    dim = max((v.shape[1] for v in vectors), default=0)
    full = (
        np.concatenate(
            [v if v.shape[1] == dim else np.full((len(v), dim), np.nan, np.float32) for v in vectors]
        )
        if vectors
        else np.zeros((0, 0), np.float32)
    )
    return Embeddings(full, how, time.monotonic() - start)


def pair_distances(vectors: np.ndarray, pairs: PairSet) -> np.ndarray:
    """Squared L2 distance of every pair (NaN where an image was left out)."""
    out = np.empty(len(pairs), np.float64)
    for k in range(0, len(pairs), 1 << 16):
        a = vectors[pairs.first[k : k + (1 << 16)]].astype(np.float64)
        b = vectors[pairs.second[k : k + (1 << 16)]].astype(np.float64)
        out[k : k + (1 << 16)] = np.sum((a - b) ** 2, axis=1)
    return out


# ---------------------------------------------------------------- report


def summarise(d: np.ndarray, pairs: PairSet, far: float) -> dict[str, Any]:
    """Every metric on the pairs whose images were both embedded."""
    ok = np.isfinite(d)
    d, same, folds = d[ok], pairs.same[ok], pairs.folds[ok]
    out: dict[str, Any] = {
        "pairs": {"genuine": int(same.sum()), "impostor": int((~same).sum()), "left_out": int((~ok).sum())}
    }
    in_fold = folds > 0
    if np.unique(folds[in_fold]).size >= 2:
        acc, taus = metrics.kfold_accuracy(d[in_fold], same[in_fold], folds[in_fold])
        out["accuracy"] = {
            "mean": float(acc.mean()),
            "std": float(acc.std()),
            "folds": [int(f) for f in np.unique(folds[in_fold])],
            "per_fold": acc.tolist(),
            "thresholds": taus.tolist(),
            "pairs": int(in_fold.sum()),
        }
    tau_best, acc_best = metrics.best_threshold(d, same)
    out["best_threshold"] = {"tau": tau_best, "accuracy": acc_best}
    out["tar_at_far"] = {}
    for f in sorted({*REPORT_FARS, far}):
        tar, tau = metrics.tar_at_far(d, same, f)
        out["tar_at_far"][f"{f:g}"] = {"tar": tar, "tau": tau, "far_measured": float(np.mean(d[~same] < tau))}
    rate, tau_eer = metrics.eer(d, same)
    out["eer"] = {"rate": rate, "tau": tau_eer}
    out["auc"] = metrics.roc_auc(d, same)
    out["tau"] = {"far": far, "value": metrics.tau_at_far(d, same, far)}
    out["distances"] = {"genuine_mean": float(d[same].mean()), "impostor_mean": float(d[~same].mean())}
    return out


def plot_roc(d: np.ndarray, same: np.ndarray, out: Path, title: str) -> None:
    from .plots import figure

    ok = np.isfinite(d)
    curve = metrics.roc(d[ok], same[ok])
    n_imp, n_gen = int((~same[ok]).sum()), int(same[ok].sum())
    low = max(0.0, min(0.8, float(np.interp(1.0 / n_imp, curve.far, curve.tar)) - 0.02))
    far = np.clip(curve.far, 1.0 / (10 * n_imp), 1.0)
    with figure(out, (11, 4.5), cols=2) as (fig, (ax1, ax2)):
        ax1.semilogx(far, curve.tar)
        ax1.set(
            xlabel="false accept rate",
            ylabel="true accept rate",
            title="ROC",
            xlim=(1.0 / n_imp, 1),
            ylim=(low, 1.001),
        )
        ax2.loglog(far, np.clip(curve.frr, 0.5 / n_gen, 1.0))
        ax2.set(xlabel="false accept rate", ylabel="false reject rate", title="DET", xlim=(1.0 / n_imp, 1))
        fig.suptitle(title)


def format_report(r: dict[str, Any]) -> str:
    rows = [("model", r["model"]), ("data", f"{r['data']} ({r['protocol']})")]
    det = r["detection"]
    rows.append(
        (
            "images",
            f"{det['images']}: {det['one_face']} one face, {det['several_faces']} several "
            f"(subject: nearest centre among the large ones), {det['no_face']} no face",
        )
    )
    if det["no_face"]:
        rows.append(("no face", det["no_face_handling"]))
    p = r["pairs"]
    rows.append(
        (
            "pairs",
            f"{p['genuine']} genuine, {p['impostor']} impostor"
            + (f", {p['left_out']} left out" if p["left_out"] else ""),
        )
    )
    if "accuracy" in r:
        a = r["accuracy"]
        rows.append(
            (
                f"{len(a['folds'])}-fold accuracy",
                f"{100 * a['mean']:.2f} ± {100 * a['std']:.2f} %"
                f"  (threshold from the other folds, folds {_ranges(a['folds'])})",
            )
        )
    n_imp = max(p["impostor"], 1)
    for key, v in r["tar_at_far"].items():
        coarse = "" if float(key) * n_imp >= 1 else f", coarse: only {n_imp} impostor pairs"
        rows.append((f"TAR @ FAR {key}", f"{100 * v['tar']:.2f} %  (tau {v['tau']:.4f}{coarse})"))
    rows.append(("EER", f"{100 * r['eer']['rate']:.2f} %  (tau {r['eer']['tau']:.4f})"))
    rows.append(("ROC AUC", f"{r['auc']:.5f}"))
    best = r["best_threshold"]
    rows.append(("best threshold", f"{best['tau']:.4f} ({100 * best['accuracy']:.2f} % on all pairs)"))
    rows.append((f"tau @ FAR {r['tau']['far']:g}", f"{r['tau']['value']:.4f} squared L2"))
    rows.append(
        (
            "time",
            f"{r['seconds']['embed']:.1f} s embedding, {r['threads']} threads"
            + (", flip averaging" if r["flip"] else ""),
        )
    )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _ranges(ids: Iterable[int]) -> str:
    s = sorted(ids)
    parts, start = [], s[0]
    for a, b in zip(s, [*s[1:], None], strict=False):
        if b != a + 1:
            parts.append(f"{start}" if start == a else f"{start}-{a}")
            start = b  # type: ignore[assignment]
    return ",".join(parts)


def update_manifest(model: Path, tau: float, far: float, source: str, extra: dict[str, Any] | None = None) -> Path:
    """Write tau / tau_far / tau_source (and ``extra`` keys) into the model's manifest (same stem, .json),
    atomically."""
    from edge_verify.errors import ModelError
    from edge_verify.models import load_manifest

    manifest = model.with_suffix(".json")
    try:
        data = dict(load_manifest(manifest).data)
    except ModelError as exc:
        raise EvaluateError(str(exc)) from None
    if not math.isfinite(tau):
        raise EvaluateError(f"tau at FAR {far:g} is unbounded: too few impostor pairs")
    data.update({"tau": round(tau, 6), "tau_far": far, "tau_source": source, **(extra or {})})
    write_json_atomic(manifest, data)
    return manifest


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON (and a newline) into ``path``, atomically: written beside it as
    ``<name>.tmp``, then renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# ---------------------------------------------------------------- main


def make_pipeline(model: Path, threads: int | None, flip: bool, no_face: str,
                  detector: DetectorBackend = "auto") -> tuple[ProductPipeline, str]:
    from edge_verify.detect import FaceDetector

    if not model.is_file():
        raise EvaluateError(f"model not found: {model}")
    if model.suffix == ".tflite":
        fn, runner = tflite_embedder(model, threads)
    elif model.suffix == ".keras":
        fn, runner = keras_embedder(model, threads)
    else:
        raise EvaluateError(f"{model}: expected a .tflite or .keras model")
    det = FaceDetector(backend=detector, num_threads=threads)
    return ProductPipeline(fn, model.name, detector=det, flip=flip, no_face=no_face), f"{runner}; {det.runner} detector"


def evaluate(
    pipeline: Pipeline, pairs: PairSet, far: float, no_face: str = "centre", progress: bool = True
) -> tuple[dict[str, Any], np.ndarray]:
    """Embed the images of ``pairs`` once and compute every metric; returns (report, distances)."""
    emb = embed_images(pairs.paths, pipeline, progress=progress)
    d = pair_distances(emb.vectors, pairs)
    t0 = time.monotonic()
    report = summarise(d, pairs, far)
    report["detection"] = emb.detection(no_face)
    report["seconds"] = {"embed": round(emb.seconds, 2), "metrics": round(time.monotonic() - t0, 2)}
    return report, d


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converter.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help=".tflite or .keras encoder")
    p.add_argument("--data", type=Path, help="LFW folder: pairs.txt, images/ (default: shared/data/lfw)")
    p.add_argument("--folds", type=folds_arg, help="LFW folds to use, e.g. 6-10 (default: all)")
    p.add_argument("--people-dir", type=Path, help="folder-per-person data set instead of LFW pairs")
    p.add_argument("--k", type=int, default=5, help="person-disjoint folds in --people-dir mode (default 5)")
    p.add_argument(
        "--impostors", type=int, help="sample this many impostor pairs in --people-dir mode (default: all)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--far", type=float, default=1e-3, help="target FAR for tau (default 1e-3)")
    p.add_argument("--plot", type=Path, help="write a ROC/DET plot (PNG)")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("--update-manifest", action="store_true", help="write tau into the .tflite's manifest")
    p.add_argument("--flip", action="store_true", help="average each crop's encoding with its mirror's")
    p.add_argument(
        "--no-face",
        choices=("centre", "skip"),
        default="centre",
        help="images without a detected face: embed the central square, or leave out",
    )
    p.add_argument("--threads", type=int, default=2, help="encoder and OpenCV threads (default 2)")
    p.add_argument("--detector", choices=BACKENDS, default="auto",
                   help="face detector backend (default auto: LiteRT, else OpenCV)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    g = p.add_argument_group("door-grade error rates (product pipeline, .tflite only)")
    g.add_argument("--all-pairs", action="store_true",
                   help="every pair of --people-dir (default: all LFW images): FNMR at FMR 1e-3..1e-6, DET")
    g.add_argument("--open-set", action="store_true",
                   help="1:N identification: FNIR at FPIR for galleries of 10, 100, 1000 people")
    g.add_argument("--cache", type=Path, help="encodings cache (.npz; default: ~/.cache/edge-verify/encodings)")
    g.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates over people (default 1000)")
    g.add_argument("--check-tau", type=float, action="append", default=[], metavar="TAU",
                   help="also report the FMR and FNMR of this tau (repeatable; the manifest's is always)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pad = any(a == "--pad" or a.startswith("--pad=") for a in argv)  # liveness (PAD): converter/pad.py
    if pad:
        from . import pad as pad_module
    args = (pad_module.build_parser() if pad else build_parser()).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return pad_module.run(args) if pad else run(args)
    except ConverterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # the runtime's one-line errors (EdgeVerifyError) and friends
        from edge_verify.errors import EdgeVerifyError

        if isinstance(exc, EdgeVerifyError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


def run(args: argparse.Namespace) -> int:
    if not 0 < args.far < 1:
        raise EvaluateError(f"--far must be between 0 and 1, got {args.far}")
    if args.update_manifest and args.model.suffix != ".tflite":
        raise EvaluateError("--update-manifest needs a .tflite model (its manifest holds tau)")
    if args.update_manifest and args.flip:
        raise EvaluateError("--update-manifest with --flip would give a tau the runtime (no flip) cannot use")
    if args.people_dir and (args.data or args.folds):
        raise EvaluateError("--people-dir cannot be combined with --data or --folds")
    if args.all_pairs or args.open_set:
        if args.model.suffix != ".tflite" or args.flip or args.folds:
            raise EvaluateError("--all-pairs and --open-set run the product itself: a .tflite, no --flip or --folds")
        if args.all_pairs and args.open_set:
            raise EvaluateError("--all-pairs and --open-set: one at a time (each writes its own --json)")
        if args.open_set and args.update_manifest:
            raise EvaluateError("--update-manifest goes with --all-pairs (the manifest's points are pair FMRs)")
        from . import allpairs, openset

        return allpairs.run(args) if args.all_pairs else openset.run(args)
    cv2.setNumThreads(args.threads)
    if args.people_dir:
        paths, persons = people_images(args.people_dir)
        pairs = people_pairs(paths, persons, args.k, args.impostors, args.seed)
        data, protocol = (
            args.people_dir,
            (
                f"folder per person: {len(set(persons))} people, {len(paths)} images, all genuine pairs, "
                + (
                    f"{args.impostors} sampled impostor pairs (seed {args.seed})"
                    if args.impostors
                    else "all impostor pairs"
                )
                + f"; accuracy over {args.k} person-disjoint folds (seed {args.seed})"
            ),
        )
    else:
        data = args.data or lfw.shared_dir() / "data" / "lfw"
        pairs = read_lfw_pairs(data, args.folds)
        folds = sorted(set(pairs.folds.tolist()))
        protocol = f"LFW View 2, folds {_ranges(folds)}, {len(pairs)} pairs"
    pipeline, runner = make_pipeline(args.model, args.threads, args.flip, args.no_face, args.detector)
    report, d = evaluate(pipeline, pairs, args.far, args.no_face, progress=not args.quiet)
    report = {
        "model": str(args.model),
        "runner": runner,
        "data": str(data),
        "protocol": protocol,
        "flip": args.flip,
        "threads": args.threads,
        **report,
    }
    print(format_report(report))
    if args.plot:
        plot_roc(d, pairs.same, args.plot, f"{args.model.name}: {protocol}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.update_manifest:
        source = f"{protocol} ({report['pairs']['genuine']} genuine, {report['pairs']['impostor']} impostor)"
        if report["detection"]["no_face"]:
            source += f", {report['detection']['no_face']} images without a detected face ({args.no_face})"
        path = update_manifest(args.model, report["tau"]["value"], args.far, source)
        print(f"wrote tau {report['tau']['value']:.4f} (FAR {args.far:g}) to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
