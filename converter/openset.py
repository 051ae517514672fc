"""Open-set 1:N identification: FNIR at FPIR 1e-3 and 1e-4, per frame and per visit (ISO/IEC 19795-1,
NIST FRVT 1:N terms).

A gallery of N people is drawn at random (seeded) from the people with enough images; each is enrolled
from 1 image (or 3) that passes the product's quality gate, encoded as enrolment encodes it (with its
mirror image) and stored as the gallery stores it (int8); searches are encoded once, as frames are.
Mated searches are the enrolled people's other images; non-mated searches are every image of the
people not enrolled. Drawing the gallery again (``draws``) gives more searches of both kinds.

- **FPIR(t)**: share of non-mated searches that name anyone (distance under t, margin met).
- **FNIR(t)**: share of mated searches that do not name their own person under t (a wrong person, no
  one, or no usable face: failures to acquire count as misses).
- t is set on the non-mated searches: the largest t with FPIR <= target (``allpairs.tau_at_fmr``).

Per visit, a search is a visit decided by ``edge_verify.fusion.decide_visit`` (every frame votes for
its nearest person; the first person with k votes among the last n frames is confirmed on the fused
agreeing frames). Two simulations of a visit: ``frames``, 10 perturbed copies of one photo
(``converter.encodings.perturb``: movement, exposure, blur, noise, JPEG), which is what a camera sees
in one visit; ``photos``, up to n different photos of the person (other days, other light), a much
harder and less correlated case. People LFW lists under two names (``lfw.ALIASES``) are merged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_verify.fusion import Fusion, Templates, decide_visit, nearest_two
from edge_verify.gallery import GalleryMatrix
from edge_verify.match import from_int8, to_int8

from .allpairs import tau_at_fmr

FPIRS = (1e-2, 1e-3, 1e-4)
SIZES = (10, 100, 1000)
COARSE = 10


@dataclass(frozen=True)
class Pool:
    """A data set's encodings: one row per image, and ``frames`` simulated frames per image."""

    vectors: np.ndarray  # (M, D), NaN where no face
    usable: np.ndarray  # (M,) a face passed the quality gate (the daemon lets only these vote)
    person: np.ndarray  # (M,) person index
    frames: np.ndarray | None = None  # (M, n, D), NaN rows for frames without a usable face
    enrol_vectors: np.ndarray | None = None  # (M, D) as enrolment encodes them (flip-averaged); None: vectors

    @property
    def templates_from(self) -> np.ndarray:
        """The encodings a gallery is enrolled from: what ``FaceVerifier.enroll`` stores."""
        return self.vectors if self.enrol_vectors is None else self.enrol_vectors

    def images_of(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.person == p) for p in range(int(self.person.max()) + 1)]


@dataclass(frozen=True)
class Draw:
    templates: Templates
    enrolled: np.ndarray  # person index of each gallery entry
    mated: np.ndarray  # image rows of enrolled people not used to enrol
    mated_as: np.ndarray  # gallery index each mated row should be named as
    non_mated: np.ndarray  # image rows of people not enrolled


def draw_gallery(pool: Pool, size: int, enrol: int, rng: np.random.Generator, use_mean: bool = True) -> Draw:
    """N people with at least ``enrol`` usable images and one more image, enrolled from ``enrol``."""
    images = pool.images_of()
    eligible = [p for p, rows in enumerate(images) if pool.usable[rows].sum() >= enrol and rows.size > enrol]
    if len(eligible) < size:
        raise ValueError(f"only {len(eligible)} people have {enrol + 1}+ images; cannot enrol {size}")
    chosen = np.sort(rng.choice(eligible, size, replace=False))
    rows: list[int] = []
    owner: list[int] = []
    mated: list[int] = []
    mated_as: list[int] = []
    for g, p in enumerate(chosen):
        good = images[p][pool.usable[images[p]]]
        picked = rng.choice(good, enrol, replace=False)
        rows += picked.tolist()
        owner += [g] * enrol
        rest = np.setdiff1d(images[p], picked)
        mated += rest.tolist()
        mated_as += [g] * rest.size
    stored = from_int8(to_int8(pool.templates_from[rows]))  # what the gallery keeps: 128 int8 bytes a template
    gallery = GalleryMatrix([str(p) for p in chosen], np.array(owner), stored)
    non_mated = np.flatnonzero(~np.isin(pool.person, chosen))
    return Draw(Templates.build(gallery, use_mean), chosen, np.array(mated), np.array(mated_as), non_mated)


Scores = tuple[np.ndarray, np.ndarray, np.ndarray]  # (named gallery index or -1, distance, second - distance)


def frame_scores(t: Templates, probes: np.ndarray, usable: np.ndarray) -> Scores:
    """Per probe: the nearest person, the distance and the gap to the second nearest (inf where unusable)."""
    named = np.full(len(probes), -1)
    score = np.full(len(probes), np.inf)
    gap = np.full(len(probes), np.inf)
    ok = np.flatnonzero(usable)
    for s in range(0, ok.size, 4096):
        idx = ok[s : s + 4096]
        for i, row in zip(idx, t.distances_many(probes[idx]), strict=True):
            who, d1, d2 = nearest_two(row)
            named[i], score[i], gap[i] = who, d1, d2 - d1
    return named, score, gap


def visit_scores(t: Templates, visits: Sequence[np.ndarray], k: int, n: int, fusion: Fusion) -> Scores:
    """Per visit (frames as rows, NaN rows unusable): the person the visit named, its fused distance and
    the gap to the second nearest, through ``decide_visit`` with tau = inf and no margin (so that both
    can be swept afterwards); distance inf when no person reached k votes."""
    index = {name: i for i, name in enumerate(t.names)}
    named = np.full(len(visits), -1)
    score = np.full(len(visits), np.inf)
    gap = np.full(len(visits), np.inf)
    for i, frames in enumerate(visits):
        d = decide_visit(frames, t, tau=np.inf, k=k, n=n, margin=0.0, fusion=fusion, tau_vote=np.inf)
        if d.accepted and d.person is not None and d.distance is not None and d.second is not None:
            named[i], score[i], gap[i] = index[d.person], d.distance, d.second - d.distance
    return named, score, gap


def with_margin(scores: Scores, margin: float, expected: np.ndarray | None = None) -> np.ndarray:
    """Distances of the searches that name someone (their own person when ``expected`` is given) and
    pass the margin; inf for the others."""
    named, score, gap = scores
    ok = (gap >= margin) & (named >= 0)
    if expected is not None:
        ok &= named == expected
    return np.where(ok, score, np.inf)


def fnir_at_fpir(mated: np.ndarray, non_mated: np.ndarray, fpirs: Sequence[float] = FPIRS) -> list[dict[str, Any]]:
    """``mated``: distance of each mated search when it named its own person, else inf; ``non_mated``:
    distance of each non-mated search that named anyone, else inf."""
    srt = np.sort(non_mated)
    out = []
    for f in fpirs:
        t = tau_at_fmr(srt, f)
        out.append({"fpir": f, "tau": t if np.isfinite(t) else None, "fnir": float(np.mean(~(mated < t))),
                    "fpir_measured": float(np.mean(non_mated < t)),
                    "non_mated_under_tau": int(np.sum(non_mated < t)), "resolvable": f * srt.size >= 1})
    return out


def evaluate_config(pool: Pool, size: int, enrol: int, draws: int, seed: int, k: int, n: int, margin: float,
                    fusions: Sequence[Fusion], use_mean: bool, photos: bool = True,
                    margins: Sequence[float] = ()) -> dict[str, Any]:
    """Every metric for one gallery size and enrolment over ``draws`` galleries; ``margins`` adds rules
    with other margins (same searches)."""
    rng = np.random.default_rng([seed, size, enrol])
    acc: dict[str, list[list[np.ndarray]]] = {}

    def add(key: str, mated: Scores, expected: np.ndarray, non_mated: Scores) -> None:
        for m in (margin, *margins):
            name = key if m == margin else f"{key}, margin {m:g}"
            acc.setdefault(name, [[], []])
            acc[name][0].append(with_margin(mated, m, expected))
            acc[name][1].append(with_margin(non_mated, m))

    images = pool.images_of()
    for _ in range(draws):
        dr = draw_gallery(pool, size, enrol, rng, use_mean)
        t = dr.templates
        add("frame", frame_scores(t, pool.vectors[dr.mated], pool.usable[dr.mated]), dr.mated_as,
            frame_scores(t, pool.vectors[dr.non_mated], pool.usable[dr.non_mated]))
        if pool.frames is not None:
            for fusion in fusions:
                add(f"visit_frames_{fusion}", visit_scores(t, list(pool.frames[dr.mated]), k, n, fusion), dr.mated_as,
                    visit_scores(t, list(pool.frames[dr.non_mated]), k, n, fusion))
        if photos:
            m_visits: list[np.ndarray] = []
            nm_visits: list[np.ndarray] = []
            m_as: list[int] = []
            for g in range(len(dr.enrolled)):
                mine = sorted(dr.mated[dr.mated_as == g].tolist())
                if len(mine) >= k:
                    m_visits.append(photo_visit(pool, mine[:n]))
                    m_as.append(g)
            enrolled = set(dr.enrolled.tolist())
            for p, theirs in enumerate(images):
                if p not in enrolled and theirs.size >= k:
                    nm_visits.append(photo_visit(pool, theirs[:n].tolist()))
            for fusion in fusions:
                add(f"visit_photos_{fusion}", visit_scores(t, m_visits, k, n, fusion), np.array(m_as, int),
                    visit_scores(t, nm_visits, k, n, fusion))
    out: dict[str, Any] = {"gallery_size": size, "enrolled_from": enrol, "draws": draws, "margin": margin,
                           "mean_template": use_mean, "k": k, "n": n, "rules": {}}
    for key, (m_parts, nm_parts) in acc.items():
        mated, non_mated = np.concatenate(m_parts), np.concatenate(nm_parts)
        out["rules"][key] = {"mated_searches": int(mated.size), "non_mated_searches": int(non_mated.size),
                             "points": fnir_at_fpir(mated, non_mated)}
    return out


def photo_visit(pool: Pool, rows: Sequence[int] | np.ndarray) -> np.ndarray:
    v = pool.vectors[list(rows)].copy()
    v[~pool.usable[list(rows)]] = np.nan
    return v


def _flag(point: dict[str, Any]) -> str:
    return "*" if not point["resolvable"] else "~" if point["non_mated_under_tau"] < COARSE else ""


def format_rows(results: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'N':>5} {'enrol':>5} {'margin':>6}  {'rule':<26} {'mated':>7} {'non-mated':>9}  "
             f"{'FNIR@FPIR 1e-2':>14} {'1e-3':>8} {'1e-4':>8}"]
    for r in results:
        for key, v in r["rules"].items():
            cells = [f"{100 * p['fnir']:.2f}%" + _flag(p) for p in v["points"]]
            rule = key + (" +mean" if r["mean_template"] and r["enrolled_from"] > 1 else "")
            lines.append(f"{r['gallery_size']:>5} {r['enrolled_from']:>5} {r['margin']:>6.3f}  {rule:<26} "
                         f"{v['mated_searches']:>7} {v['non_mated_searches']:>9}  {cells[0]:>14} {cells[1]:>8} "
                         f"{cells[2]:>8}")
    lines.append("* fewer non-mated searches than 1/FPIR: the point is not resolved; "
                 f"~ fewer than {COARSE} non-mated searches under tau: coarse")
    return "\n".join(lines)


def run(args: Any) -> int:
    """``python -m converter.evaluate MODEL --open-set``: the table, and JSON with ``--json``."""
    from . import lfw

    root = args.people_dir or args.data or lfw.shared_dir() / "data" / "lfw"
    _, pool = load_pool(root, args.model, lfw.ALIASES, args.threads, not args.quiet, args.seed)
    results = open_set(pool, seed=args.seed)
    print(format_rows(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "data": str(root), "aliases_merged": lfw.ALIASES,
                                         "frames_per_visit": int(pool.frames.shape[1]) if pool.frames is not None
                                         else 0, "results": results}, indent=2) + "\n")
    return 0


FRAME_BLOCKS = ((5, 0), (5, 5))  # (frames, offset) per cache: visits of 10 simulated frames


def pool_of(data: Any, images: Any, frames: Sequence[Any] = (), enrol: Any = None) -> Pool:
    """A pool from a data set's image encodings, its simulated frames (blocks of frames per image,
    concatenated in order) and the image encodings enrolment makes (``enrol``; None: ``images``)."""
    person, _ = data.person_index()
    blocks = []
    for enc in frames:
        n = len(enc) // len(data.paths)
        f = enc.vectors.reshape(len(data.paths), n, -1).copy()
        f[~(enc.ok & enc.found).reshape(len(data.paths), n)] = np.nan
        blocks.append(f)
    return Pool(images.vectors, images.ok & images.found, person, np.concatenate(blocks, axis=1) if blocks else None,
                None if enrol is None else enrol.vectors)


def load_pool(root: Path, model: Path, aliases: dict[str, str] | None = None, threads: int = 2,
              progress: bool = True, seed: int = 0) -> tuple[Any, Pool]:
    """(data set, pool) with the cached image encodings, ``FRAME_BLOCKS`` of simulated frames, and the
    image encodings enrolment makes (flip-averaged, ``FaceVerifier.flip_enrolment``): galleries are
    enrolled from those, as the product enrols them, and probed with the plain ones, as the daemon
    encodes frames."""
    from .encodings import default_cache, encode_dataset, load_dataset

    data = load_dataset(root, aliases)
    images = encode_dataset(data, default_cache(root, f"{model.stem}-images"), model=model, threads=threads,
                            progress=progress)
    frames = [
        encode_dataset(data, default_cache(root, f"{model.stem}-frames{n}" + (f"-offset{o}" if o else "")),
                       model=model, frames=n, frame_offset=o, seed=seed, threads=threads, progress=progress)
        for n, o in FRAME_BLOCKS
    ]
    enrol = encode_dataset(data, default_cache(root, f"{model.stem}-images-flip"), model=model, threads=threads,
                           progress=progress, flip=True)
    return data, pool_of(data, images, frames, enrol)


def open_set(pool: Pool, seed: int = 0, sizes: Sequence[int] = SIZES, margin: float = 0.0, k: int = 3,
             n: int = 5) -> list[dict[str, Any]]:
    """The standard set of configurations (see the module docstring)."""
    people_with = np.bincount(np.bincount(pool.person))
    results = []
    for size in sizes:
        for enrol in (1, 3):
            if int(people_with[enrol + 1 :].sum()) < size:
                continue
            draws = 10 if size <= 100 else 5
            fusions: tuple[Fusion, ...] = ("none", "encoding", "distance") if size == 100 else ("encoding",)
            for use_mean in ((False, True) if enrol > 1 else (False,)):
                results.append(evaluate_config(pool, size, enrol, draws, seed, k, n, margin, fusions, use_mean))
    return results
