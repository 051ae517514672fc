"""Measurements behind the liveness defaults (docs/LIVENESS.md), on a live/attack folder such as NUAA.

    python -m converter.pad_study onnx DIR [--json OUT]      int8 (bundled) vs the ONNX source models
    python -m converter.pad_study sizes DIR [--json OUT] [--sizes 32,40,...] [--update-manifest]
    python -m converter.pad_study motion DIR [--json OUT]    temporal cues over NUAA sequences

- ``onnx``: the same faces and crops through the bundled int8 models and through the ONNX files they
  were converted from (``../shared/models/minifasnet``, found by the sha256 in each manifest's
  provenance, run by onnxruntime): score agreement per model and fused, and the decisions that differ
  at the bundled threshold (flips).
- ``sizes``: every frame downscaled (area interpolation, as a farther face or a smaller sensor would
  give) so that its detected face measures N px, then scored through the product with no size floor.
  ``min_face_px`` is the smallest measured N from which on, at every larger N, APCER <= 1 % and BPCER
  <= 2 % at the bundled threshold (``--update-manifest`` writes it).
- ``motion``: NUAA names frames ``ID_glasses_pos_session_pic``; the frames of one (class, ID, glasses,
  pos, session) form a sequence. Per pair of consecutive frames: the residual of a homography fitted to
  the 5 landmarks (a photo moved as a plane fits one; a turning head should not), of an affine fit,
  the landmark motion and the change of the aligned face's appearance, all relative to the eye
  distance; per sequence their medians; how well each separates live from attack sequences (AUC).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from converter.pad import PadError, PadSet, error_rates, read_pad_dir
from edge_verify.imageio import read_image

log = logging.getLogger(__name__)

DEFAULT_SIZES = (24, 32, 40, 48, 56, 64, 80, 96, 112, 128)
SIZE_APCER, SIZE_BPCER = 0.01, 0.02


def _verifier(threads: int, min_face: float | None = None) -> Any:
    from edge_verify.liveness import LivenessSettings
    from edge_verify.pipeline import FaceVerifier

    return FaceVerifier(state_dir="/nonexistent-unused", num_threads=threads,
                        liveness=LivenessSettings(min_face_px=min_face))


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties one half."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(gt / (pos.size * neg.size))


# ---------------------------------------------------------------- int8 vs ONNX


def onnx_sources(checker: Any, models_dir: Path) -> list[Any]:
    """An onnxruntime session per bundled model, on the ONNX file its provenance names (sha256-checked)."""
    from converter.import_onnx import onnxruntime_session
    from edge_verify.models import sha256_file

    sessions = []
    for m in checker.models:
        prov = m.manifest.get("provenance", {})
        path = models_dir / str(prov.get("source", ""))
        if not path.is_file() or sha256_file(path) != prov.get("source_sha256"):
            raise PadError(f"{m.name}: its ONNX source {path} is missing or differs from the provenance sha256")
        sessions.append(onnxruntime_session(path))
    return sessions


def compare_onnx(s: PadSet, threads: int, models_dir: Path) -> dict[str, Any]:
    from edge_verify.liveness import liveness_crop, softmax

    fv = _verifier(threads)
    checker = fv.liveness
    sessions = onnx_sources(checker, models_dir)
    q_scores: list[list[float]] = []
    f_scores: list[list[float]] = []
    live: list[bool] = []
    for p, is_live in zip(s.paths, s.live, strict=True):
        res = fv.process(p, max_faces=1)
        if not res.faces:
            continue
        img = read_image(p)
        face = res.faces[0].face
        q_scores.append(checker.scores(img, face))
        fs = []
        for m, sess in zip(checker.models, sessions, strict=True):
            crop = liveness_crop(img, face.bbox, m.crop_scale, m.runner.input_size)
            z = sess.run(None, {sess.get_inputs()[0].name: crop.astype(np.float32).transpose(2, 0, 1)[None]})[0][0]
            fs.append(float(softmax(z)[m.live_index]))
        f_scores.append(fs)
        live.append(bool(is_live))
    q, f, lv = np.array(q_scores), np.array(f_scores), np.array(live)
    t = checker.threshold
    qf, ff = q.mean(axis=1), f.mean(axis=1)
    out: dict[str, Any] = {"faces": len(lv), "threshold": t, "per_model": {}}
    for j, m in enumerate(checker.models):
        d = np.abs(q[:, j] - f[:, j])
        out["per_model"][m.name] = {"abs_diff_mean": float(d.mean()), "abs_diff_max": float(d.max())}
    d = np.abs(qf - ff)
    flips = (qf >= t) != (ff >= t)
    out["fused"] = {"abs_diff_mean": float(d.mean()), "abs_diff_p99": float(np.percentile(d, 99)),
                    "abs_diff_max": float(d.max()), "flips": int(flips.sum()),
                    "flips_bona_fide": int((flips & lv).sum()), "flips_attack": int((flips & ~lv).sum())}
    for name, sc in (("int8", qf), ("onnx", ff)):
        a, b = error_rates(sc[lv], sc[~lv], t)
        out[name] = {"apcer": a, "bpcer": b, "auc": _auc(sc[lv], sc[~lv])}
    return out


# ---------------------------------------------------------------- face size


def size_study(s: PadSet, threads: int, sizes: Sequence[int]) -> dict[str, Any]:
    """Scores with every face downscaled to each size (see the module doc)."""
    fv = _verifier(threads, min_face=0.0)
    t = fv.liveness.threshold
    full: list[tuple[np.ndarray, float, bool]] = []
    for p, is_live in zip(s.paths, s.live, strict=True):
        img = read_image(p)
        faces = fv.detector.detect(img)
        if faces:
            full.append((img, faces[0].size, bool(is_live)))
    rows = []
    for n in sorted(sizes):
        sc, lv = [], []
        for img, size, is_live in full:
            if size < n:
                continue
            f = n / size
            small = img if f >= 1 else cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            faces = fv.process(small, max_faces=1).faces
            sc.append(faces[0].liveness.score if faces and faces[0].liveness else np.nan)
            lv.append(is_live)
        sc_a, lv_a = np.array(sc), np.array(lv, bool)
        a, b = error_rates(sc_a[lv_a], sc_a[~lv_a], t)
        rows.append({"face_px": n, "bona_fide": int(lv_a.sum()), "attacks": int((~lv_a).sum()),
                     "no_face_bona_fide": int(np.isnan(sc_a[lv_a]).sum()),
                     "no_face_attacks": int(np.isnan(sc_a[~lv_a]).sum()),
                     "apcer": a, "bpcer": b, "bona_fide_median": float(np.nanmedian(sc_a[lv_a])),
                     "attack_p99": float(np.nanpercentile(sc_a[~lv_a], 99))})
        log.info("face %d px: APCER %.3f BPCER %.3f", n, a, b)
    ok = [r["apcer"] <= SIZE_APCER and r["bpcer"] <= SIZE_BPCER for r in rows]
    min_face = None
    for i in range(len(rows)):
        if all(ok[i:]):
            min_face = rows[i]["face_px"]
            break
    return {"threshold": t, "rule": f"smallest size from which on APCER <= {SIZE_APCER:g} and "
            f"BPCER <= {SIZE_BPCER:g} at every larger measured size", "min_face_px": min_face, "sizes": rows}


# ---------------------------------------------------------------- motion over sequences


def nuaa_sequences(s: PadSet) -> dict[tuple[bool, str], list[tuple[int, Path]]]:
    """Frames grouped by (live, ID_glasses_pos_session), in frame order; names that do not parse are left out."""
    seqs: dict[tuple[bool, str], list[tuple[int, Path]]] = defaultdict(list)
    for p, is_live in zip(s.paths, s.live, strict=True):
        parts = p.stem.split("_")
        if len(parts) == 5 and parts[4].isdigit():
            seqs[(bool(is_live), "_".join(parts[:4]))].append((int(parts[4]), p))
    return {k: sorted(v) for k, v in seqs.items() if len(v) >= 2}


def pair_cues(lm_a: np.ndarray, lm_b: np.ndarray, crop_a: np.ndarray, crop_b: np.ndarray) -> dict[str, float]:
    """Residuals and motion between two frames' 5 landmarks, relative to the eye distance in the second."""
    a, b = np.asarray(lm_a, np.float32), np.asarray(lm_b, np.float32)
    iod = float(np.linalg.norm(b[0] - b[1])) or 1.0
    h, _ = cv2.findHomography(a, b, 0)
    proj = cv2.perspectiveTransform(a[None], h)[0] if h is not None else a
    ones: np.ndarray = np.hstack([a, np.ones((a.shape[0], 1), np.float32)])
    aff, *_ = np.linalg.lstsq(ones, b, rcond=None)

    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(((x - b) ** 2).sum(axis=1).mean()) / iod)

    ga, gb = (cv2.cvtColor(c, cv2.COLOR_BGR2GRAY)[16:96, 16:96].astype(np.float32) for c in (crop_a, crop_b))
    ga, gb = (ga - ga.mean()) / (ga.std() + 1e-6), (gb - gb.mean()) / (gb.std() + 1e-6)
    return {"homography_residual": rms(proj), "affine_residual": rms(ones @ aff),
            "landmark_motion": float(np.abs(a - b).mean() / iod), "appearance_change": float(np.abs(ga - gb).mean())}


def motion_study(s: PadSet) -> dict[str, Any]:
    from edge_verify.align import align_face
    from edge_verify.detect import FaceDetector

    det = FaceDetector()
    per_seq: list[dict[str, Any]] = []
    for (is_live, key), frames in sorted(nuaa_sequences(s).items()):
        lms, crops = [], []
        for _, p in frames:
            img = read_image(p)
            faces = det.detect(img)
            if faces:
                lms.append(faces[0].landmarks)
                crops.append(align_face(img, faces[0].landmarks))
        cues = [pair_cues(lms[i], lms[i + 1], crops[i], crops[i + 1]) for i in range(len(lms) - 1)]
        if cues:
            per_seq.append({"live": is_live, "sequence": key, "frames": len(lms),
                            **{k: float(np.median([c[k] for c in cues])) for k in cues[0]}})
    out: dict[str, Any] = {"sequences": {"live": sum(r["live"] for r in per_seq),
                                         "attack": sum(not r["live"] for r in per_seq)}, "cues": {}}
    for k in ("homography_residual", "affine_residual", "landmark_motion", "appearance_change"):
        lv = np.array([r[k] for r in per_seq if r["live"]])
        at = np.array([r[k] for r in per_seq if not r["live"]])
        out["cues"][k] = {"live_median": float(np.median(lv)), "live_range": [float(lv.min()), float(lv.max())],
                          "attack_median": float(np.median(at)), "attack_range": [float(at.min()), float(at.max())],
                          "auc_live_higher": _auc(lv, at)}
    # a planarity verdict: "planar" (attack) when the residual is below r; r set to flag half the attacks
    res_live = np.array([r["homography_residual"] for r in per_seq if r["live"]])
    res_att = np.array([r["homography_residual"] for r in per_seq if not r["live"]])
    r50 = float(np.median(res_att))
    out["planarity_verdict_at_half_the_attacks"] = {
        "residual_below": r50, "attack_sequences_flagged": int((res_att < r50).sum()),
        "live_sequences_flagged": int((res_live < r50).sum())}
    out["per_sequence"] = per_seq
    return out


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m converter.pad_study", description=__doc__.split("\n\n")[0])
    p.add_argument("study", choices=("onnx", "sizes", "motion"))
    p.add_argument("dir", type=Path, help="folder with live/ and attack/ (e.g. ../shared/data/nuaa)")
    p.add_argument("--json", type=Path, help="write the result as JSON")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="face sizes for the sizes study")
    p.add_argument("--onnx-dir", type=Path, help="folder of the ONNX sources (default: shared/models/minifasnet)")
    p.add_argument("--update-manifest", action="store_true", help="sizes: write min_face_px into liveness.json")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cv2.setNumThreads(args.threads)
    try:
        s = read_pad_dir(args.dir)
        if args.study == "onnx":
            from converter.lfw import shared_dir

            res = compare_onnx(s, args.threads, args.onnx_dir or shared_dir() / "models" / "minifasnet")
        elif args.study == "sizes":
            res = size_study(s, args.threads, [int(x) for x in args.sizes.split(",") if x])
        else:
            res = motion_study(s)
    except PadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res = {"data": str(args.dir), "study": args.study, **res}
    shown = {k: v for k, v in res.items() if k != "per_sequence"}
    print(json.dumps(shown, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if args.study == "sizes" and args.update_manifest:
        if res["min_face_px"] is None:
            print("error: no size meets the rule; manifest unchanged", file=sys.stderr)
            return 1
        from converter.pad import update_manifest_fields

        path = update_manifest_fields({"min_face_px": res["min_face_px"], "min_face_source":
                                       f"converter.pad_study sizes on {args.dir}: {res['rule']}"})
        print(f"wrote min_face_px {res['min_face_px']} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
