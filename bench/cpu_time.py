"""CPU time per frame of the pipelines, one thread each, interleaved frame by frame in one process.

    python -m bench.cpu_time [--repeat 5] [--photos 8]

On a shared, loaded machine wall-clock medians of pipelines run one after the other drift with the
load; CPU time of single-threaded runs taken in turn on the same frame does much less. Pipelines:
``product`` (``FaceVerifier.process``, LiteRT detection at 320 px + int8 encoder), ``product_cv2det``
(the same with OpenCV's detector), ``opencv`` (YuNet at 640 + SFace) and ``opencv320`` (YuNet at
320 + SFace, equal detection work). Prints medians; no JSON (``bench.run`` is the benchmark of record).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench import pipelines as pl  # noqa: E402
from bench.frames import make_frames, pick_images  # noqa: E402
from bench.run import DEFAULT_MODEL  # noqa: E402
from converter.lfw import shared_dir  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    from edge_verify.imageio import read_image

    p = argparse.ArgumentParser(prog="python -m bench.cpu_time", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--photos", type=int, default=8)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    frames = make_frames([read_image(f) for f in pick_images(shared_dir() / "data" / "lfw" / "images", args.photos)])
    gallery = pl.Gallery(1000)
    cv2det = pl.ProductPipeline(args.model, 1, gallery, "product_cv2det", backend="opencv")
    pipes: dict[str, pl.ProductPipeline | pl.OpenCVPipeline] = {
        "product": pl.ProductPipeline(args.model, 1, gallery),
        "product_cv2det": cv2det,
        "opencv": pl.OpenCVPipeline(shared_dir() / "models", 1, gallery),
        "opencv320": pl.OpenCVPipeline(shared_dir() / "models", 1, gallery, pl.DETECT_MAX_SIDE),
    }
    for pipe in pipes.values():
        for f in frames[:3]:
            pipe.run_frame(f)
    cpu: dict[str, list[float]] = {k: [] for k in pipes}
    for _ in range(args.repeat):
        for f in frames:
            for name, pipe in pipes.items():
                t0 = time.process_time()
                pipe.run_frame(f)
                cpu[name].append((time.process_time() - t0) * 1000)
    med = {k: float(np.median(v)) for k, v in cpu.items()}
    print(f"CPU ms per 640x480 frame, 1 thread, median of {len(frames) * args.repeat} "
          f"(load average at end {os.getloadavg()[0]:.1f}):")
    for name, ms in med.items():
        print(f"  {name:<15} {ms:6.1f} ms   {ms / med['opencv320']:.2f}x opencv320   {ms / med['opencv']:.2f}x opencv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
