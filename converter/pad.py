"""Presentation-attack detection (PAD) evaluation through the product, in ISO/IEC 30107-3 terms.

    python -m converter.evaluate --pad DIR [--threshold T] [--json OUT] [--plot OUT.png] [--no-loso]
                                           [--update-manifest] [--threads 2]

``DIR`` holds bona fide images under ``live/`` and attacks under ``attack/`` (species = its subfolders,
e.g. ``attack/print/``) and/or ``<species>_attack/`` (NUAA's ``photo_attack/``). When ``live/`` and an
attack folder have per-subject subfolders with the same names (NUAA: ``0001``...), the subjects are
known. Each image goes through ``FaceVerifier.process`` with liveness on (the bundled int8 models): the
largest face's fused score, a face under ``min_face_px`` counting as not live, as in the product.

Reported (attack presentation = an attack image, bona fide = a live image; a live image without a
face counts as rejected, an attack image without a face as not accepted; both are counted):
- APCER (attacks accepted as live, per species and the worst), BPCER (bona fide rejected),
  ACER = (max APCER + BPCER) / 2 at the threshold (default: the bundled manifest's);
- BPCER at APCER <= 1 % and 5 %, APCER at BPCER <= 1 %, EER; a DET plot;
- leave-one-subject-out (when subjects are known): for each subject, the threshold is chosen on the
  others by ``choose_threshold`` and applied to it; pooled APCER / BPCER. This is the estimate to
  quote for unseen people; the figures at a threshold chosen on all subjects are in-sample.
``--update-manifest`` writes the threshold chosen on all subjects into ``models/liveness/liveness.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converter.evaluate import EvaluateError, Progress, write_json_atomic
from converter.faces import image_files
from edge_verify.imageio import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

TARGET = 0.01  # APCER and BPCER goals (issue 9): <= 1 % each
REPORT_APCERS = (0.01, 0.05)


class PadError(EvaluateError):
    """A one-line reason the PAD evaluation cannot run."""


@dataclass(frozen=True)
class PadSet:
    """Images of a live/attack folder: ``live[i]`` True for bona fide; species and subject of each."""

    paths: list[Path]
    live: np.ndarray  # (N,) bool
    species: list[str]  # "bona fide" for live images
    subjects: list[str]  # "" when unknown


def read_pad_dir(root: Path) -> PadSet:
    """The bona fide (``live/``) and attack (``attack/<species>/``, ``<species>_attack/``) images of ``root``."""
    if not (root / "live").is_dir():
        raise PadError(f"{root}: no live/ folder (expected live/ and attack/ or <species>_attack/)")
    groups: list[tuple[Path, str]] = []  # (folder, species)
    if (root / "attack").is_dir():
        subs = sorted(d for d in (root / "attack").iterdir() if d.is_dir())
        loose = [p for p in (root / "attack").iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        groups += [(d, d.name) for d in subs]
        if loose:
            groups.append((root / "attack", "attack"))
    groups += [(d, d.name.removesuffix("_attack")) for d in sorted(root.iterdir())
               if d.is_dir() and d.name.endswith("_attack")]
    if not groups:
        raise PadError(f"{root}: no attack/ or <species>_attack/ folder")
    live_subjects = {d.name for d in (root / "live").iterdir() if d.is_dir()}
    paths: list[Path] = []
    live: list[bool] = []
    species: list[str] = []
    subjects: list[str] = []

    def subject(p: Path, base: Path) -> str:
        rel = p.relative_to(base).parts
        return rel[0] if len(rel) > 1 and rel[0] in live_subjects else ""

    found = [(p, True, "bona fide", subject(p, root / "live")) for p in image_files(root / "live")]
    for folder, name in groups:
        imgs = [p for p in image_files(folder) if folder != root / "attack" or p.parent == folder]
        found += [(p, False, name, subject(p, folder)) for p in imgs]
    for p, lv, sp, sub in found:
        paths.append(p)
        live.append(lv)
        species.append(sp)
        subjects.append(sub)
    if not any(live) or all(live):
        raise PadError(f"{root}: need both live and attack images, found {sum(live)} and {len(live) - sum(live)}")
    attack_subjects = {s for s, lv in zip(subjects, live, strict=True) if not lv and s}
    if not attack_subjects:  # subjects only count when the attacks are of the same people
        subjects = [""] * len(subjects)
    return PadSet(paths, np.array(live), species, subjects)


# ---------------------------------------------------------------- metrics (pure)


def error_rates(live_scores: np.ndarray, attack_scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """(APCER, BPCER) when a presentation is accepted as live at ``score >= threshold``. NaN scores
    (no face) are never accepted."""
    a = np.asarray(attack_scores, np.float64)
    b = np.asarray(live_scores, np.float64)
    apcer = float(np.mean(np.nan_to_num(a, nan=-np.inf) >= threshold)) if a.size else float("nan")
    bpcer = float(np.mean(~(np.nan_to_num(b, nan=-np.inf) >= threshold))) if b.size else float("nan")
    return apcer, bpcer


def threshold_at_apcer(attack_scores: np.ndarray, apcer: float) -> float:
    """The lowest threshold whose APCER is at most ``apcer``: just above the (k+1)-th highest attack
    score, k = floor(apcer * attacks)."""
    a = np.sort(np.nan_to_num(np.asarray(attack_scores, np.float64), nan=-np.inf))[::-1]
    k = math.floor(apcer * a.size + 1e-9)
    if k >= a.size:
        return 0.0
    return float(np.nextafter(a[k], np.inf)) if np.isfinite(a[k]) else 0.0


def threshold_at_bpcer(live_scores: np.ndarray, bpcer: float) -> float:
    """The highest threshold whose BPCER is at most ``bpcer``: the (k+1)-th lowest live score."""
    b = np.sort(np.nan_to_num(np.asarray(live_scores, np.float64), nan=-np.inf))
    k = math.floor(bpcer * b.size + 1e-9)
    return float(b[min(k, b.size - 1)])


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def choose_threshold(live_scores: np.ndarray, attack_scores: np.ndarray, apcer: float = TARGET,
                     bpcer: float = TARGET) -> float:
    """The rule used to pick a threshold (fixed before any result was seen): where a window meets both
    goals (``t_a`` = lowest threshold with APCER <= ``apcer``, ``t_b`` = highest with BPCER <= ``bpcer``,
    ``t_a <= t_b``), its middle in log-odds, the widest margin on both sides; else ``t_a``: attacks first."""
    t_a = threshold_at_apcer(attack_scores, apcer)
    t_b = threshold_at_bpcer(live_scores, bpcer)
    if t_a <= t_b:
        mid = (_logit(t_a) + _logit(t_b)) / 2.0
        return float(1.0 / (1.0 + math.exp(-mid)))
    return t_a


def eer(live_scores: np.ndarray, attack_scores: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): where APCER and BPCER cross, over the observed scores."""
    cands = np.unique(np.concatenate([np.nan_to_num(live_scores, nan=0.0), np.nan_to_num(attack_scores, nan=0.0)]))
    best = (2.0, 0.0, 0.0)
    for t in cands:
        a, b = error_rates(live_scores, attack_scores, float(t))
        if abs(a - b) < best[0]:
            best = (abs(a - b), (a + b) / 2.0, float(t))
    return best[1], best[2]


def summarise(scores: np.ndarray, s: PadSet, threshold: float) -> dict[str, Any]:
    """Every figure at ``threshold`` and the threshold-free ones; see the module doc."""
    live_sc, att_sc = scores[s.live], scores[~s.live]
    species = sorted({sp for sp, lv in zip(s.species, s.live, strict=True) if not lv})
    sp_arr = np.array(s.species)
    apcer_by = {sp: error_rates(live_sc, scores[sp_arr == sp], threshold)[0] for sp in species}
    apcer, bpcer = max(apcer_by.values()), error_rates(live_sc, att_sc, threshold)[1]
    out: dict[str, Any] = {
        "threshold": threshold,
        "bona_fide": int(live_sc.size), "attacks": int(att_sc.size),
        "attacks_by_species": {sp: int((sp_arr == sp).sum()) for sp in species},
        "no_face": {"bona_fide": int(np.isnan(live_sc).sum()), "attacks": int(np.isnan(att_sc).sum())},
        "apcer": apcer, "apcer_by_species": apcer_by, "bpcer": bpcer, "acer": (apcer + bpcer) / 2.0,
        "accepted_attacks": int(np.sum(np.nan_to_num(att_sc, nan=-1) >= threshold)),
        "rejected_bona_fide": int(np.sum(~(np.nan_to_num(live_sc, nan=-1) >= threshold))),
    }
    for target in REPORT_APCERS:
        t = threshold_at_apcer(att_sc, target)
        out[f"bpcer_at_apcer_{target:g}"] = {"bpcer": error_rates(live_sc, att_sc, t)[1], "threshold": t}
    t = threshold_at_bpcer(live_sc, TARGET)
    out[f"apcer_at_bpcer_{TARGET:g}"] = {"apcer": error_rates(live_sc, att_sc, t)[0], "threshold": t}
    rate, t_eer = eer(live_sc, att_sc)
    out["eer"] = {"rate": rate, "threshold": t_eer}
    out["scores"] = {"bona_fide_median": float(np.nanmedian(live_sc)) if live_sc.size else None,
                     "attack_median": float(np.nanmedian(att_sc)) if att_sc.size else None}
    return out


def leave_one_subject_out(scores: np.ndarray, s: PadSet) -> dict[str, Any] | None:
    """Per subject: threshold by ``choose_threshold`` on the other subjects, errors on this one; pooled."""
    subjects = sorted({x for x in s.subjects if x})
    if len(subjects) < 2:
        return None
    subj = np.array(s.subjects)
    acc_att = rej_live = n_att = n_live = 0
    per: dict[str, Any] = {}
    for x in subjects:
        test = subj == x
        train = ~test & (subj != "")
        t = choose_threshold(scores[train & s.live], scores[train & ~s.live])
        a = np.nan_to_num(scores[test & ~s.live], nan=-1.0)
        b = np.nan_to_num(scores[test & s.live], nan=-1.0)
        per[x] = {"threshold": t, "attacks": int(a.size), "accepted_attacks": int((a >= t).sum()),
                  "bona_fide": int(b.size), "rejected_bona_fide": int((b < t).sum())}
        acc_att += int((a >= t).sum())
        rej_live += int((b < t).sum())
        n_att += a.size
        n_live += b.size
    return {"subjects": len(subjects), "rule": choose_threshold.__doc__.split("(")[0].strip() if
            choose_threshold.__doc__ else "", "apcer": acc_att / max(n_att, 1), "bpcer": rej_live / max(n_live, 1),
            "accepted_attacks": acc_att, "attacks": n_att, "rejected_bona_fide": rej_live, "bona_fide": n_live,
            "per_subject": per}


# ---------------------------------------------------------------- scoring through the product


def product_scores(s: PadSet, threads: int = 2, progress: bool = True, verifier: Any = None) -> np.ndarray:
    """The fused liveness score of each image's largest face, as the product computes it (NaN: no face;
    0.0: a face under the minimum size, which the product never counts live)."""
    from edge_verify.liveness import LivenessSettings
    from edge_verify.pipeline import FaceVerifier

    fv = verifier or FaceVerifier(state_dir="/nonexistent-unused", num_threads=threads, liveness=LivenessSettings())
    if fv.liveness is None:
        raise PadError("the verifier has liveness off")
    min_face = fv.liveness.min_face_px
    out = np.full(len(s.paths), np.nan)
    bar = Progress(len(s.paths), "liveness", every=100) if progress else None
    for i, p in enumerate(s.paths):
        faces = fv.process(p, max_faces=1).faces
        if faces and faces[0].liveness is not None:
            lv = faces[0].liveness
            out[i] = lv.score if faces[0].face.size >= min_face else 0.0
        if bar:
            bar.update(1)
    return out


def plot_det(scores: np.ndarray, s: PadSet, out: Path, title: str, threshold: float) -> None:
    from .plots import figure

    live_sc, att_sc = np.nan_to_num(scores[s.live], nan=-1), np.nan_to_num(scores[~s.live], nan=-1)
    ts = np.unique(np.concatenate([live_sc, att_sc, [threshold]]))
    rates = np.array([error_rates(live_sc, att_sc, float(t)) for t in ts])
    floor_a, floor_b = 0.5 / max(att_sc.size, 1), 0.5 / max(live_sc.size, 1)
    with figure(out, (5.5, 5)) as (_, ax):
        ax.loglog(np.clip(rates[:, 0], floor_a, 1), np.clip(rates[:, 1], floor_b, 1), label="DET")
        a, b = error_rates(live_sc, att_sc, threshold)
        ax.plot([max(a, floor_a)], [max(b, floor_b)], "o", label=f"threshold {threshold:.3f}")
        ax.set(xlabel=f"APCER ({att_sc.size} attacks; 0 drawn at {floor_a:.1g})",
               ylabel=f"BPCER ({live_sc.size} bona fide; 0 drawn at {floor_b:.1g})", title=title)


def format_report(r: dict[str, Any]) -> str:
    at = r["at_threshold"]
    pct = lambda v: f"{100 * v:.2f} %"  # noqa: E731
    rows = [("data", r["data"]), ("images", f"{at['bona_fide']} bona fide, {at['attacks']} attacks "
            f"({', '.join(f'{k} {v}' for k, v in at['attacks_by_species'].items())}); no face: "
            f"{at['no_face']['bona_fide']} bona fide, {at['no_face']['attacks']} attacks")]
    rows.append(("threshold", f"{at['threshold']:.4f} ({r['threshold_source']})"))
    rows.append(("APCER", f"{pct(at['apcer'])} ({at['accepted_attacks']}/{at['attacks']})"
                 + ("" if len(at["apcer_by_species"]) < 2 else "; by species " + ", ".join(
                     f"{k} {pct(v)}" for k, v in at["apcer_by_species"].items()))))
    rows.append(("BPCER", f"{pct(at['bpcer'])} ({at['rejected_bona_fide']}/{at['bona_fide']})"))
    rows.append(("ACER", pct(at["acer"])))
    for target in REPORT_APCERS:
        v = at[f"bpcer_at_apcer_{target:g}"]
        rows.append((f"BPCER @ APCER {target:g}", f"{pct(v['bpcer'])} (threshold {v['threshold']:.4f})"))
    v = at[f"apcer_at_bpcer_{TARGET:g}"]
    rows.append((f"APCER @ BPCER {TARGET:g}", f"{pct(v['apcer'])} (threshold {v['threshold']:.4f})"))
    rows.append(("EER", f"{pct(at['eer']['rate'])} (threshold {at['eer']['threshold']:.4f})"))
    lo = r.get("leave_one_subject_out")
    if lo:
        rows.append((f"LOSO ({lo['subjects']} subjects)", f"APCER {pct(lo['apcer'])} ({lo['accepted_attacks']}/"
                     f"{lo['attacks']}), BPCER {pct(lo['bpcer'])} ({lo['rejected_bona_fide']}/{lo['bona_fide']}): "
                     "threshold chosen on the other subjects"))
    if "chosen_threshold" in r:
        rows.append(("chosen on all", f"{r['chosen_threshold']:.4f} (in-sample)"))
    rows.append(("time", f"{r['seconds']:.1f} s, {r['threads']} threads"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def update_manifest_fields(fields: dict[str, Any], manifest: Path | None = None) -> Path:
    """Write ``fields`` into the liveness manifest (the bundled one by default), atomically."""
    from edge_verify.liveness import LIVENESS_MANIFEST

    path = manifest or LIVENESS_MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PadError(f"{path}: cannot read the liveness manifest: {exc}") from None
    data.update(fields)
    write_json_atomic(path, data)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converter.evaluate --pad", description=__doc__.split("\n\n")[0])
    p.add_argument("--pad", type=Path, required=True, metavar="DIR", help="folder with live/ and attack/")
    p.add_argument("--threshold", type=float, help="live when score >= T (default: the bundled manifest's)")
    p.add_argument("--json", type=Path, help="write the report as JSON (e.g. bench/results/liveness-nuaa.json)")
    p.add_argument("--plot", type=Path, help="write a DET plot (PNG)")
    p.add_argument("--no-loso", action="store_true", help="skip the leave-one-subject-out estimate")
    p.add_argument("--update-manifest", action="store_true",
                   help="write the threshold chosen on all subjects into models/liveness/liveness.json")
    p.add_argument("--threads", type=int, default=2, help="interpreter and OpenCV threads (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def run(args: argparse.Namespace) -> int:
    import cv2

    from edge_verify.liveness import read_manifest

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise PadError(f"--threshold must be within [0, 1], got {args.threshold}")
    cv2.setNumThreads(args.threads)
    s = read_pad_dir(args.pad)
    t0 = time.monotonic()
    scores = product_scores(s, args.threads, progress=not args.quiet)
    seconds = time.monotonic() - t0
    manifest = read_manifest()
    threshold = float(args.threshold if args.threshold is not None else manifest["threshold"])
    report: dict[str, Any] = {
        "data": str(args.pad), "models": manifest.get("models"), "min_face_px": manifest.get("min_face_px"),
        "threshold_source": "given on the command line" if args.threshold is not None else
        f"bundled manifest: {manifest.get('threshold_source', 'unknown')}",
        "threads": args.threads, "seconds": round(seconds, 1),
        "at_threshold": summarise(scores, s, threshold),
    }
    report["chosen_threshold"] = choose_threshold(scores[s.live], scores[~s.live])
    if not args.no_loso:
        report["leave_one_subject_out"] = leave_one_subject_out(scores, s)
    print(format_report(report))
    if args.plot:
        plot_det(scores, s, args.plot, f"liveness: {args.pad.name}", threshold)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.update_manifest:
        at = summarise(scores, s, report["chosen_threshold"])
        source = (f"converter.pad choose_threshold on {args.pad} (all {at['bona_fide']} bona fide, "
                  f"{at['attacks']} attack images; in-sample APCER {100 * at['apcer']:.2f} %, "
                  f"BPCER {100 * at['bpcer']:.2f} %)")
        lo = report.get("leave_one_subject_out")
        if lo:
            source += (f"; leave-one-subject-out over {lo['subjects']} subjects: APCER {100 * lo['apcer']:.2f} %, "
                       f"BPCER {100 * lo['bpcer']:.2f} %")
        path = update_manifest_fields({"threshold": round(report["chosen_threshold"], 6), "threshold_source": source})
        print(f"wrote threshold {report['chosen_threshold']:.4f} to {path}")
    return 0


if __name__ == "__main__":
    from converter.evaluate import main

    sys.exit(main(["--pad", *sys.argv[1:]] if "--pad" not in sys.argv else sys.argv[1:]))
