"""What liveness costs: ms per face for the two bundled models (crops included), and the per-frame time of
``FaceVerifier.process`` with liveness on and off, on the same frames.

    python -m bench.liveness [--threads 2] [--repeat 5] [--frames nuaa|lfw] [--json OUT]

``make bench`` runs ``measure`` on its LFW frames (one column in its table); alone it uses NUAA webcam
frames by default. Goal (issue 9): <= 3 ms per face on 2 threads, <= +15 % per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

GOAL_MS_PER_FACE = 3.0
GOAL_FRAME_INCREASE = 0.15

def measure(frames: Sequence[np.ndarray], threads: int = 2, repeat: int = 5) -> dict[str, Any]:
    """Per-face liveness ms and per-frame ms with liveness off/on, medians over ``repeat`` passes."""
    import cv2

    from bench.pipelines import DETECT_MAX_SIDE  # the daemon's default quality.detect_max_side, as the main bench
    from bench.run import stats
    from edge_verify.detect import FaceDetector
    from edge_verify.liveness import LivenessChecker
    from edge_verify.pipeline import FaceVerifier

    cv2.setNumThreads(threads)
    checker = LivenessChecker(num_threads=threads)
    detector = FaceDetector(max_side=DETECT_MAX_SIDE)
    off = FaceVerifier(state_dir="/nonexistent-unused", num_threads=threads, detector=detector)
    on = FaceVerifier(state_dir="/nonexistent-unused", num_threads=threads, detector=detector, liveness=checker)
    found = [(f, detector.detect(f)[:1]) for f in frames]
    faces = [(f, d[0]) for f, d in found if d]
    for f, face in faces[:3]:  # warm-up
        checker.check(f, face)
        on.process(f, max_faces=1)
    per_face, frame_off, frame_on = [], [], []
    for _ in range(repeat):
        for f, face in faces:
            t0 = time.perf_counter()
            checker.check(f, face)
            per_face.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            off.process(f, max_faces=1)
            t1 = time.perf_counter()
            on.process(f, max_faces=1)
            frame_off.append((t1 - t0) * 1000)
            frame_on.append((time.perf_counter() - t1) * 1000)
    res: dict[str, Any] = {
        "threads": threads, "faces": len(faces), "repeat": repeat, "runner": checker.models[0].runner.interpreter,
        "ms_per_face": stats(per_face), "frame_ms_off": stats(frame_off), "frame_ms_on": stats(frame_on)}
    res["frame_increase"] = round(res["frame_ms_on"]["median"] / res["frame_ms_off"]["median"] - 1.0, 4)
    return res


def format_line(r: dict[str, Any]) -> str:
    return (f"liveness ({r['threads']} threads, {r['faces']} faces x {r['repeat']}): "
            f"{r['ms_per_face']['median']:.2f} / {r['ms_per_face']['p95']:.2f} ms per face (median / p95); "
            f"frame {r['frame_ms_off']['median']:.1f} -> {r['frame_ms_on']['median']:.1f} ms "
            f"(+{100 * r['frame_increase']:.0f} %)")


def goals(r: dict[str, Any]) -> list[dict[str, str]]:
    ms, inc = r["ms_per_face"]["median"], r["frame_increase"]
    return [{"goal": f"liveness <= {GOAL_MS_PER_FACE} ms per face ({r['threads']} threads)",
             "measured": f"{ms:.2f} ms median", "verdict": "PASS" if ms <= GOAL_MS_PER_FACE else "FAIL"},
            {"goal": f"liveness <= +{100 * GOAL_FRAME_INCREASE:.0f} % per frame",
             "measured": f"+{100 * inc:.1f} %", "verdict": "PASS" if inc <= GOAL_FRAME_INCREASE else "FAIL"}]


def _frames(kind: str, count: int) -> list[np.ndarray]:
    from converter.lfw import shared_dir
    from edge_verify.imageio import read_image

    shared = shared_dir()
    if kind == "lfw":
        from bench.frames import make_frames, pick_images

        return make_frames([read_image(p) for p in pick_images(shared / "data" / "lfw" / "images", count)])
    paths = sorted((shared / "data" / "nuaa").rglob("*.jpg"))
    step = max(1, len(paths) // count)
    return [read_image(p) for p in paths[::step][:count]]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.liveness", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--frames", choices=("nuaa", "lfw"), default="nuaa", help="NUAA webcam frames or LFW canvases")
    p.add_argument("--count", type=int, default=24, help="frames (default 24)")
    p.add_argument("--json", type=Path, help="write the result as JSON")
    args = p.parse_args(argv)
    res = measure(_frames(args.frames, args.count), args.threads, args.repeat)
    res.update(frames=args.frames, load_avg_at_start=[round(v, 2) for v in os.getloadavg()], goals=goals(res))
    print(format_line(res))
    for g in res["goals"]:
        print(f"goal: {g['goal']}: {g['measured']} -> {g['verdict']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
