"""Door simulation: enrolled visitors and strangers at a door, decided by the daemon's pure functions.

    python -m bench.door_sim [--draws 5] [--size 100] [--name door_sim] [--model PATH.tflite]

A clean split. **Calibration people**: LFW folds 1-5 (their people appear in no other fold; fold 1 also
calibrated the int8 quantization). On them: the (FMR, tau) points (every pair of their images, as
``converter.evaluate --all-pairs`` does for the manifest), the margin and the choice of fusion.
**Simulation people**, never used for any of that: LFW folds 6-10 and all of Extended Yale B.

Each draw enrols N people (``--size``, default 100: 87 from LFW 6-10 with two images or more, 13 from
Yale B) from one photo each (Yale B: the frontal-light photo), encoded as enrolment encodes (the
photo and its mirror averaged) and stored as int8 as the gallery stores
them. Visits, each 5 frames decided by ``edge_verify.fusion.decide_visit`` (k = 3 of n = 5) at the tau
``edge_verify.match.identify_point`` derives for the level from the calibration people's points:

- ``frames`` visits: 5 perturbed copies of one photo (``converter.encodings.perturb``: movement,
  exposure, blur, noise, JPEG; what one visit of a camera looks like). Enrolled: every other LFW photo
  of the person, 8 other Yale B photos (any lighting); strangers: every photo of everyone not enrolled.
- ``photos`` visits: up to 5 different photos of one person (much harder: other days and light).

Only faces that pass the product's quality gate vote (as in the daemon); a visit without k usable
frames decides nothing, which counts against the enrolled visitor and not as a stranger granted.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converter import allpairs, lfw, openset
from converter.openset import Pool, load_pool, photo_visit
from edge_verify.fusion import FUSIONS, Fusion, Templates, decide_visit
from edge_verify.gallery import GalleryMatrix
from edge_verify.match import OperatingPoints, from_int8, identify_point, to_int8
from edge_verify.security import SECURITY_LEVELS

from .door_report import compact, format_summary, goals, summary_rows
from .run import DEFAULT_MODEL, RESULTS

K, N_FRAMES = 3, 5
YALE_ENROL = ("_P00A+000E+00", "_P00A+005E+10", "_P00A-005E+10")  # front-lit photos, the first for one-shot
YALE_VISITS = 8
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
MARGIN_COST = 0.005  # the margin may cost at most this much FNIR (at FPIR 1e-3) on the calibration people


@dataclass(frozen=True)
class People:
    """A pool with names and sources: one row per image, ``frames`` per image."""

    pool: Pool
    paths: list[str]
    source: np.ndarray  # per person: "lfw" or "yaleb"
    names: list[str]  # per person


def subpool(pool: Pool, rows: np.ndarray) -> tuple[Pool, np.ndarray]:
    """Rows of a pool, people renumbered from 0; returns the pool and the old person index of each new one."""
    old, person = np.unique(pool.person[rows], return_inverse=True)
    frames = None if pool.frames is None else pool.frames[rows]
    return Pool(pool.vectors[rows], pool.usable[rows], person, frames, pool.templates_from[rows]), old


def load(lfw_root: Path, yale_root: Path, model: Path) -> tuple[Pool, People]:
    """(calibration pool: LFW folds 1-5; simulation people: LFW folds 6-10 + Extended Yale B). People
    LFW lists under two names are merged (``lfw.ALIASES``, as for the manifest's points), each in the
    fold of their first name."""
    lfw_data, lfw_pool = load_pool(lfw_root, model, lfw.ALIASES)
    yale_data, yale = load_pool(yale_root, model)
    fold_of = lfw.person_folds(lfw.read_pairs(lfw_root / "pairs.txt"))
    fold = np.array([fold_of[p] for p in lfw_data.persons])
    calib, _ = subpool(lfw_pool, np.flatnonzero(fold <= 5))
    sim_lfw, old = subpool(lfw_pool, np.flatnonzero(fold >= 6))
    names = [lfw_data.people[i] for i in old] + yale_data.people
    offset = int(sim_lfw.person.max()) + 1
    assert sim_lfw.frames is not None and yale.frames is not None
    pool = Pool(np.concatenate([sim_lfw.vectors, yale.vectors]), np.concatenate([sim_lfw.usable, yale.usable]),
                np.concatenate([sim_lfw.person, yale.person + offset]),
                np.concatenate([sim_lfw.frames, yale.frames]),
                np.concatenate([sim_lfw.templates_from, yale.templates_from]))
    paths = [str(p) for p, f in zip(lfw_data.paths, fold, strict=True) if f >= 6] + [str(p) for p in yale_data.paths]
    source = np.array(["lfw"] * offset + ["yaleb"] * (int(yale.person.max()) + 1))
    return calib, People(pool, paths, source, names)


def yale_light(path: str) -> str:
    """``yaleb_front`` when the light comes from within 35 degrees of the camera axis (azimuth and
    elevation), else ``yaleb_side`` (side light, top light, near darkness)."""
    m = re.search(r"_P00A([+-]\d+)E([+-]\d+)", path)
    return "yaleb_front" if m and abs(int(m[1])) <= 35 and abs(int(m[2])) <= 35 else "yaleb_side"


# ---------------------------------------------------------------- galleries and visits


@dataclass(frozen=True)
class Scene:
    """One draw: the gallery, and the visits of enrolled people and of strangers."""

    gallery: GalleryMatrix
    templates: Templates  # the gallery with mean templates
    visits: list[np.ndarray]  # frames (rows) of each visit
    expected: np.ndarray  # gallery index the visit should be granted as; -1 for a stranger
    kind: np.ndarray  # "frames" or "photos"
    source: np.ndarray  # "lfw" or "yaleb"
    stranger_person: np.ndarray  # person index of each stranger visit (-1 for enrolled visits)
    names: list[str]  # of every person of the pool


def draw_scene(people: People, size: int, rng: np.random.Generator, enrol: int = 1,
               yale_share: int = 13) -> Scene:
    """Enrol ``size`` people (``yale_share`` of them from Yale B) from ``enrol`` photos each (Yale B:
    ``YALE_ENROL``, the front-lit photos); every other photo of them is an enrolled visit (Yale B: 8 at
    random), every photo of everyone else a stranger's visit."""
    pool = people.pool
    assert pool.frames is not None
    images = pool.images_of()
    src = people.source

    def yale_enrol(rows: np.ndarray) -> list[int]:
        return [r for name in YALE_ENROL[:enrol] for r in rows if name in people.paths[r] and pool.usable[r]]

    lfw_ok = [p for p, rows in enumerate(images)
              if src[p] == "lfw" and rows.size > enrol and pool.usable[rows].sum() >= enrol]
    yale_ok = [p for p, rows in enumerate(images) if src[p] == "yaleb" and len(yale_enrol(rows)) == enrol]
    n_yale = min(yale_share, len(yale_ok) // 2, size)
    chosen = np.concatenate([rng.choice(lfw_ok, size - n_yale, replace=False),
                             rng.choice(yale_ok, n_yale, replace=False) if n_yale else []]).astype(np.int64)
    enrol_rows: list[int] = []
    owner: list[int] = []
    visits: list[np.ndarray] = []
    labels: list[tuple[int, str, str, int]] = []  # expected, kind, source, stranger person

    def where(p: int, r: int) -> str:
        return str(src[p]) if src[p] == "lfw" else yale_light(people.paths[r])

    for g, p in enumerate(chosen):
        rows = images[p]
        if src[p] == "yaleb":
            mine = yale_enrol(rows)
            rest = rng.choice(np.setdiff1d(rows, mine), min(YALE_VISITS, rows.size - enrol), replace=False)
        else:
            mine = rng.choice(rows[pool.usable[rows]], enrol, replace=False).tolist()
            rest = np.setdiff1d(rows, mine)
        enrol_rows += mine
        owner += [g] * enrol
        for r in rest:
            visits.append(pool.frames[r])
            labels.append((g, "frames", where(p, r), -1))
        if src[p] == "lfw" and rest.size >= K:
            visits.append(photo_visit(pool, rest[:N_FRAMES]))
            labels.append((g, "photos", "lfw", -1))
    enrolled = set(chosen.tolist())
    for p, rows in enumerate(images):
        if p in enrolled:
            continue
        for r in rows:
            visits.append(pool.frames[r])
            labels.append((-1, "frames", where(p, r), p))
        if src[p] == "lfw" and rows.size >= K:
            visits.append(photo_visit(pool, rows[:N_FRAMES]))
            labels.append((-1, "photos", "lfw", p))
    stored = from_int8(to_int8(pool.templates_from[enrol_rows]))  # enrolled as the product enrols (flip)
    gallery = GalleryMatrix([people.names[p] for p in chosen], np.array(owner), stored)
    expected, kind, source, strangers = zip(*labels, strict=True)
    return Scene(gallery, Templates.build(gallery), visits, np.array(expected), np.array(kind), np.array(source),
                 np.array(strangers), people.names)


@dataclass(frozen=True)
class Rule:
    """How a visit is decided: the level's tau, the fusion, the margin, the vote gate."""

    name: str
    level: str | None
    fusion: Fusion
    margin: float
    vote: str  # "tau": a frame votes only under tau (today's daemon); "nearest": every frame votes
    tau: float | None = None  # a fixed tau instead of the level's
    use_mean: bool = True  # people with several templates also have a mean template


def run_rule(scene: Scene, rule: Rule, points: OperatingPoints) -> dict[str, Any]:
    t = scene.templates if rule.use_mean else Templates.build(scene.gallery, use_mean=False)
    if rule.tau is not None:
        tau, fmr = rule.tau, points.fmr_at(rule.tau)
    else:
        assert rule.level is not None
        op = identify_point(points, rule.level, t.comparisons, K, N_FRAMES)
        tau, fmr = op.tau, op.fmr
    tau_vote = tau if rule.vote == "tau" else math.inf
    index = {name: i for i, name in enumerate(t.names)}
    granted = np.full(len(scene.visits), -1)
    reasons = []
    for i, frames in enumerate(scene.visits):
        d = decide_visit(frames, t, tau, K, N_FRAMES, rule.margin, rule.fusion, tau_vote)
        if d.accepted and d.person is not None:
            granted[i] = index[d.person]
        reasons.append(d.reason or "granted")
    return {"tau": tau, "fmr_per_comparison": fmr, "granted": granted, "reasons": np.array(reasons)}


def tally(scene: Scene, out: dict[str, Any]) -> dict[str, Any]:
    """Counts per visit kind and source: enrolled granted (right person), wrong person, strangers granted."""
    g, e = out["granted"], scene.expected
    res: dict[str, Any] = {}
    for kind in ("frames", "photos"):
        for src in ("lfw", "yaleb_front", "yaleb_side", "all"):
            sel = (scene.kind == kind) & ((scene.source == src) if src != "all" else True)
            enr, stg = sel & (e >= 0), sel & (e < 0)
            if not (enr.any() or stg.any()):
                continue
            res[f"{kind}/{src}"] = {
                "enrolled_visits": int(enr.sum()),
                "enrolled_granted": int((enr & (g == e)).sum()),
                "enrolled_wrong_person": int((enr & (g >= 0) & (g != e)).sum()),
                "enrolled_refused": {r: int((enr & (out["reasons"] == r)).sum()) for r in
                                     ("no_match", "ambiguous", "no_agreement")},
                "stranger_visits": int(stg.sum()),
                "strangers_granted": int((stg & (g >= 0)).sum()),
                "stranger_people": int(np.unique(scene.stranger_person[stg]).size),
            }
    t = scene.templates.names
    res["false_accepts"] = [
        {"visitor": scene.names[scene.stranger_person[i]] if e[i] < 0 else t[e[i]], "granted_as": t[g[i]],
         "kind": str(scene.kind[i]), "source": str(scene.source[i])}
        for i in np.flatnonzero((g >= 0) & (g != e))
    ]
    return res


# ---------------------------------------------------------------- calibration (LFW folds 1-5 only)


def calibration_points(calib: Pool) -> tuple[OperatingPoints, list[dict[str, Any]]]:
    """(FMR, tau) points from every pair of the calibration people's images (``allpairs``)."""
    pd = allpairs.all_pairs(calib.vectors, calib.person, [str(i) for i in range(int(calib.person.max()) + 1)])
    rows = allpairs.manifest_points(pd)
    return OperatingPoints(tuple(r["fmr"] for r in rows), tuple(r["tau"] for r in rows)), rows


def frame_correlation(scene: Scene, tau: float) -> dict[str, Any]:
    """How much k of n protects against strangers at one tau: the share of stranger frames that name
    someone, against the share of stranger visits granted by k of n votes alone (no fusion, no margin)."""
    t = scene.templates
    out: dict[str, Any] = {"tau": tau}
    for kind in ("frames", "photos"):
        sel = np.flatnonzero((scene.expected < 0) & (scene.kind == kind))
        frames = np.concatenate([scene.visits[i] for i in sel])
        frames = frames[np.all(np.isfinite(frames), axis=1)]
        per_frame = float(np.mean(t.distances_many(frames).min(axis=1) < tau)) if frames.size else 0.0
        visits = [decide_visit(scene.visits[i], t, tau, K, N_FRAMES, 0.0, "none", tau) for i in sel]
        per_visit = float(np.mean([d.accepted for d in visits]))
        out[kind] = {"frames": len(frames), "visits": int(sel.size), "per_frame_fpir": per_frame,
                     "per_visit_fpir": per_visit,
                     "visit_over_frame": per_visit / per_frame if per_frame else None}
    return out


def calibrate(calib: Pool, seed: int) -> dict[str, Any]:
    """Points, the choice of fusion and the margin, on the calibration people only, from one open-set
    study (``converter.openset``: N = 100, one photo each, 5 galleries, ``frames`` visits, every frame
    votes for its nearest person and the fused agreeing frames decide):

    - fusion: the lowest FNIR at FPIR 1e-3;
    - margin: the largest of ``MARGINS`` whose FNIR at FPIR 1e-3, and every smaller one's, is at most
      ``MARGIN_COST`` above no margin's (the measurements are noisy: a prefix, not a maximum). At a
      fixed FPIR a margin only costs (it refuses some genuine visits, like a stricter tau); what it
      buys is a refusal when a visitor lies between two enrolled people."""
    points, rows = calibration_points(calib)
    study = openset.evaluate_config(calib, 100, 1, 5, seed, K, N_FRAMES, 0.0, FUSIONS, use_mean=False,
                                    photos=False, margins=MARGINS[1:])
    fnir = {key: v["points"][1]["fnir"] for key, v in study["rules"].items()}
    fusion = min(FUSIONS, key=lambda f: (fnir[f"visit_frames_{f}"], f != "encoding"))
    base = fnir[f"visit_frames_{fusion}"]
    margin = 0.0
    for m in MARGINS[1:]:  # the largest margin such that it and every smaller one cost at most MARGIN_COST
        if fnir[f"visit_frames_{fusion}, margin {m:g}"] > base + MARGIN_COST:
            break
        margin = m
    n_people = int(calib.person.max()) + 1
    people = People(calib, [""] * len(calib.vectors), np.array(["lfw"] * n_people), [str(i) for i in range(n_people)])
    scene = draw_scene(people, 100, np.random.default_rng([seed, 1]), yale_share=0)
    return {"people": int(calib.person.max()) + 1, "images": len(calib.vectors), "points": rows,
            "_points": points, "fnir_at_fpir_1e-3": fnir, "fusion": fusion, "margin": margin,
            "margin_rule": f"largest margin costing, like every smaller one, at most {100 * MARGIN_COST:g} "
                           "points of FNIR at FPIR 1e-3",
            "frame_correlation": frame_correlation(scene, points.tau_at(1e-3)[0])}


# ---------------------------------------------------------------- simulation (never-tuned people)


# Fusion, margin and vote variants are compared at this level: one where strangers are still granted
# often enough in the simulation to tell rules apart (at the default, strict, hardly any are).
VARIANTS = "secure"
OLD_TAU = 1.356489  # the tau shipped before operating points: FMR 2.2e-3 on all LFW pairs


def rules(cal: dict[str, Any]) -> list[Rule]:
    fusion, margin = cal["fusion"], cal["margin"]
    out = [Rule(f"before: tau {OLD_TAU:.4f}, k of n", None, "none", 0.0, "tau", tau=OLD_TAU)]
    out += [Rule(level, level, fusion, margin, "nearest") for level in SECURITY_LEVELS]
    out += [Rule(f"{VARIANTS}, fusion {f}", VARIANTS, f, margin, "nearest") for f in FUSIONS if f != fusion]
    out.append(Rule(f"{VARIANTS}, no margin", VARIANTS, fusion, 0.0, "nearest"))
    out.append(Rule(f"{VARIANTS}, votes under tau", VARIANTS, fusion, margin, "tau"))
    return out


def _add(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict):
            _add(total.setdefault(key, {}), value)
        elif isinstance(value, list):
            total.setdefault(key, []).extend(value)
        else:
            total[key] = total.get(key, 0) + value


def simulate(people: People, points: OperatingPoints, rule_list: Sequence[Rule], size: int, draws: int,
             seed: int, enrol: int = 1) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, 2, enrol])
    results: list[dict[str, Any]] = [{"rule": r.__dict__, "enrol": enrol, "draws": [], "total": {}}
                                     for r in rule_list]
    for _ in range(draws):
        scene = draw_scene(people, size, rng, enrol)
        for r, res in zip(rule_list, results, strict=True):
            out = run_rule(scene, r, points)
            counts = tally(scene, out)
            res["draws"].append({"tau": out["tau"], "fmr_per_comparison": out["fmr_per_comparison"],
                                 "comparisons": scene.templates.comparisons if r.use_mean else
                                 scene.gallery.owner.size, **counts})
            _add(res["total"], counts)
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.door_sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--size", type=int, default=100, help="people enrolled per draw (default 100)")
    p.add_argument("--draws", type=int, default=5, help="galleries drawn (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="door_sim", help="bench/results/NAME.json")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--update-manifest", action="store_true",
                   help="write the calibrated fusion and margin into the model's manifest (its 'decision' block)")
    return p


def update_manifest(model: Path, cal: dict[str, Any]) -> Path:
    """The calibrated fusion and margin into the manifest beside ``model``, atomically."""
    from converter.evaluate import write_json_atomic

    path = model.with_suffix(".json")
    data = json.loads(path.read_text())
    data["decision"] = {"fusion": cal["fusion"], "margin": cal["margin"],
                        "source": f"python -m bench.door_sim --update-manifest: {cal['margin_rule']}, fusion with "
                                  "the lowest FNIR at FPIR 1e-3; LFW folds 1-5, N = 100, 10-frame visits"}
    write_json_atomic(path, data)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    shared = lfw.shared_dir()
    t0 = time.monotonic()
    calib, people = load(shared / "data" / "lfw", shared / "data" / "extended_yaleb", args.model)
    cal = calibrate(calib, args.seed)
    points = cal.pop("_points")
    one = rules(cal)
    several = [Rule(f"{r.name}, 3 photos", r.level, r.fusion, r.margin, r.vote) for r in one[1:5]]
    several.append(Rule(f"{VARIANTS}, 3 photos, no mean", VARIANTS, cal["fusion"], cal["margin"],
                        "nearest", use_mean=False))
    results = simulate(people, points, one, args.size, args.draws, args.seed)
    results += simulate(people, points, several, args.size, args.draws, args.seed, enrol=3)
    rows = summary_rows(results)
    fnir, chosen = cal["fnir_at_fpir_1e-3"], f"visit_frames_{cal['fusion']}"
    print(f"calibration: LFW folds 1-5, {cal['people']} people; FNIR at FPIR 1e-3 per visit: "
          + ", ".join(f"{f} {100 * fnir[f'visit_frames_{f}']:.2f} %" for f in FUSIONS) + "; with a margin: "
          + ", ".join(f"{m:g} {100 * fnir[f'{chosen}, margin {m:g}']:.2f} %" for m in MARGINS[1:]))
    print(f"chosen: fusion {cal['fusion']}, margin {cal['margin']:g}")
    print(f"simulation: LFW folds 6-10 + Extended Yale B, N = {args.size}, {args.draws} draws, k = {K} of "
          f"n = {N_FRAMES}, visits of {people.pool.frames.shape[1] if people.pool.frames is not None else 0} frames")
    print(format_summary(rows))
    goal = goals(rows, args.size)
    for g in goal:
        print(f"goal: {g['goal']}: {g['measured']} -> {'met' if g['met'] else 'NOT met'}")
    report = {"model": str(args.model), "size": args.size, "draws": args.draws, "seed": args.seed, "k": K,
              "n": N_FRAMES, "split": {"calibration": "LFW View 2 folds 1-5 (people)",
                                       "simulation": "LFW View 2 folds 6-10 (people) + Extended Yale B"},
              "aliases_merged": lfw.ALIASES, "calibration": cal, "summary": rows, "goals": goal,
              "results": [compact(r) for r in results],
              "seconds": round(time.monotonic() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=1, default=_json) + "\n")
    if args.update_manifest:
        print(f"wrote fusion {cal['fusion']} and margin {cal['margin']:g} to {update_manifest(args.model, cal)}")
    return 0


def _json(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


if __name__ == "__main__":
    sys.exit(main())
