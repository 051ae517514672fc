"""Detection recall and agreement of the two YuNet backends: LiteRT (the product's default,
``edge_verify.yunet``) and OpenCV's ``cv2.FaceDetectorYN`` (the reference).

    python -m bench.detect_recall [--name detect_recall] [--door-photos 300] [--lfw-step 1] [--threads 2]

Three sets, each run through ``edge_verify.detect.FaceDetector`` with either backend:
- LFW: every image (7,701, 150x150) as photos are detected (``max_side`` 640, padded retry): images
  with a face, and the subject's box (``converter.faces.pick_subject``) compared between backends;
- the bench frames (``bench.frames``: LFW photos on a 640x480 canvas at three scales) detected at
  320 px as the daemon does (no retry);
- door distances (``converter.scenes``): LFW faces of folds 2-10 scaled to 40-200 px box width and
  pasted into 640x480 and 1280x720 scenes, detected at 320 px (and, for the LiteRT backend, at 640):
  recall = the pasted face found (IoU >= 0.5 with its known box), by face size.
Agreement: for each face OpenCV finds, the best-overlapping LiteRT face: IoU and the largest landmark
difference over the face width. Results: a table on stdout and bench/results/NAME.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from bench.run import result_args, write_result
from converter.lfw import shared_dir
from edge_verify.detect import DetectorBackend

BACKENDS: tuple[DetectorBackend, ...] = ("litert", "opencv")
HIT_IOU = 0.5


def detectors(max_side: int, pad_retry: bool, threads: int) -> dict[str, Any]:
    from edge_verify.detect import FaceDetector

    return {b: FaceDetector(backend=b, max_side=max_side, pad_retry=pad_retry, num_threads=threads) for b in BACKENDS}


def run_set(items: Iterable[tuple[np.ndarray, Any, str]], dets: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per image: per backend faces found, time, hit (a face with IoU >= 0.5 with the known
    box, when there is one), and the agreement of the two backends' faces."""
    from converter.faces import pick_subject
    from converter.scenes import iou, match_faces

    records = []
    for image, truth, group in items:
        rec: dict[str, Any] = {"group": group}
        found = {}
        for name, det in dets.items():
            t0 = time.perf_counter()
            faces = det.detect(image)
            rec[f"{name}_ms"] = (time.perf_counter() - t0) * 1000
            found[name] = faces
            rec[f"{name}_faces"] = len(faces)
            if truth is not None:
                rec[f"{name}_hit"] = any(iou(f.bbox, truth) >= HIT_IOU for f in faces)
            else:
                rec[f"{name}_hit"] = pick_subject(faces, image.shape) is not None
        ious, marks = match_faces(found["litert"], found.get("opencv", [])) if "litert" in found else ([], [])
        rec["iou"], rec["landmark_err"] = ious, marks
        records.append(rec)
    return records


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    out: dict[str, Any] = {"images": n}
    for b in BACKENDS:
        if f"{b}_hit" not in records[0]:
            continue
        hits = sum(bool(r[f"{b}_hit"]) for r in records)
        out[b] = {"found": hits, "recall": round(hits / n, 4) if n else None,
                  "faces": sum(r[f"{b}_faces"] for r in records),
                  "ms_median": round(float(np.median([r[f"{b}_ms"] for r in records])), 2)}
    ious = [v for r in records for v in r["iou"]]
    marks = [v for r in records for v in r["landmark_err"]]
    if ious:
        a = np.asarray(ious)
        out["agreement"] = {
            "opencv_faces": len(ious), "matched_iou_0.5": int((a >= 0.5).sum()),
            "iou_median": round(float(np.median(a)), 4), "iou_min": round(float(a.min()), 4),
            "landmark_err_median": round(float(np.median(marks)), 5) if marks else None,
            "landmark_err_max": round(float(np.max(marks)), 5) if marks else None,
        }
    return out


def lfw_items(step: int) -> Iterable[tuple[np.ndarray, Any, str]]:
    from edge_verify.imageio import read_image

    for p in sorted((shared_dir() / "data" / "lfw" / "images").glob("*.jpg"))[::step]:
        yield read_image(p), None, "lfw"


def bench_frame_items(photos: int) -> Iterable[tuple[np.ndarray, Any, str]]:
    from bench.frames import make_frames, pick_images
    from edge_verify.imageio import read_image

    paths = pick_images(shared_dir() / "data" / "lfw" / "images", photos)
    for f in make_frames([read_image(p) for p in paths]):
        yield f, None, "bench_frames"


def door_subjects(count: int) -> list[Any]:
    from converter.faces import spread
    from converter.lfw import fold_images
    from converter.scenes import subjects
    from edge_verify.detect import FaceDetector

    lfw = shared_dir() / "data" / "lfw"
    paths = spread(fold_images(lfw, list(range(2, 11))), count)
    return subjects(paths, FaceDetector(backend="opencv"))


def door_items(subs: list[Any], seed: int) -> Iterable[tuple[np.ndarray, Any, str]]:
    from converter.scenes import scenes

    for s in scenes(subs, seed=seed):
        h, w = s.image.shape[:2]
        yield s.image, s.bbox, f"{w}x{h}/{s.face_px}"


def by_group(records: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["group"], []).append(r)
    return {g: summarise(rs) for g, rs in groups.items()}


def agreement_text(ag: dict[str, Any]) -> str:
    return (f"{ag['matched_iou_0.5']}/{ag['opencv_faces']} OpenCV faces matched, IoU median {ag['iou_median']} "
            f"min {ag['iou_min']}, landmark err/face width max {ag['landmark_err_max']}")


def format_table(res: dict[str, Any]) -> str:
    lines = [f"detection recall, LiteRT (edge_verify.yunet) vs OpenCV (cv2.FaceDetectorYN), {res['threads']} "
             f"threads; machine load at start {res['load_avg_at_start']}"]
    for key, title in (("lfw", "LFW, every image (max_side 640, padded retry)"),
                       ("bench_frames", "bench frames 640x480, detection at 320")):
        s = res[key]
        ag = s.get("agreement", {})
        lines.append(f"{title}: {s['images']} images")
        for b in BACKENDS:
            lines.append(f"  {b:<7} found {s[b]['found']:>5} ({100 * s[b]['recall']:.2f} %)  faces {s[b]['faces']:>5}  "
                         f"{s[b]['ms_median']:.2f} ms/image")
        if ag:
            lines.append("  agreement: " + agreement_text(ag))
    door = res["door"]
    lines.append(f"door distances: {door['subjects']} LFW faces pasted per size; recall (IoU >= {HIT_IOU} with the "
                 "pasted face), detection at 320 px (LiteRT also at 640)")
    lines.append(f"  {'scene/face px':<16}" + "".join(f"{b + '@320':>12}" for b in BACKENDS) + f"{'litert@640':>12}")
    for g, s in door["at_320"].items():
        s640 = door["litert_at_640"].get(g, {}).get("litert", {})
        lines.append(f"  {g:<16}" + "".join(f"{100 * s[b]['recall']:>11.1f}%" for b in BACKENDS)
                     + (f"{100 * s640['recall']:>11.1f}%" if s640 else ""))
    ag = door["overall_at_320"].get("agreement", {})
    if ag:
        lines.append("  agreement at 320: " + agreement_text(ag))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import os

    import cv2

    p = argparse.ArgumentParser(prog="python -m bench.detect_recall", description=__doc__.split("\n\n")[0])
    result_args(p, "detect_recall")
    p.add_argument("--lfw-step", type=int, default=1, help="every Nth LFW image (default 1: all)")
    p.add_argument("--bench-photos", type=int, default=100, help="LFW photos for the bench frames (3 frames each)")
    p.add_argument("--door-photos", type=int, default=300, help="LFW faces per door-distance size")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cv2.setNumThreads(args.threads)
    res: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "threads": args.threads,
                           "load_avg_at_start": [round(v, 2) for v in os.getloadavg()],
                           "note": "times are medians on a shared, loaded machine: indicative only"}
    photo = detectors(640, True, args.threads)
    daemon = detectors(320, False, args.threads)
    res["runners"] = {b: photo[b].runner for b in BACKENDS}
    print("detect_recall: LFW ...", file=sys.stderr, flush=True)
    res["lfw"] = summarise(run_set(lfw_items(args.lfw_step), photo))
    print("detect_recall: bench frames ...", file=sys.stderr, flush=True)
    res["bench_frames"] = summarise(run_set(bench_frame_items(args.bench_photos), daemon))
    print("detect_recall: door distances ...", file=sys.stderr, flush=True)
    subs = door_subjects(args.door_photos)
    recs = run_set(door_items(subs, args.seed), daemon)
    from edge_verify.detect import FaceDetector

    lite640 = {"litert": FaceDetector(backend="litert", max_side=640, pad_retry=False, num_threads=args.threads)}
    recs640 = run_set(door_items(subs, args.seed), lite640)
    res["door"] = {"subjects": len(subs), "face_sizes_px": "box width in the scene",
                   "at_320": by_group(recs), "overall_at_320": summarise(recs),
                   "litert_at_640": {g: {"litert": s["litert"]} for g, s in by_group(recs640).items()}}
    write_result(res, args.out, args.name, format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
