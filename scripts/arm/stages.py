"""The product's stages, one after the other, between marker system calls: what ``count.py`` counts.

Runs on x86 (under callgrind) and on aarch64 (under qemu with the ``insn_count`` plugin) alike. Models are
loaded and every stage is run once before the first marker (interpreter set-up, XNNPACK weight packing and
OpenCV's lazy init are not counted); then each stage runs ``--reps`` times between two markers. One thread
everywhere (LiteRT, OpenCV, BLAS): instruction counts are the work, not the parallelism.

    python scripts/arm/stages.py --fp32 build/sface_fp32.tflite --reps 3 [--json OUT]

A marker is ``getpgid(MARKER_BASE + k)``, which fails with ESRCH and touches nothing; the counters see the
system call (qemu plugin) or the libc function (callgrind ``--dump-before=getpgid``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

MARKER_BASE = 0x7E570000
STAGES = ("detect", "detect_opencv", "align", "embed_int8", "embed_fp32")
FRAME_W, FRAME_H = 640, 480
DETECT_MAX_SIDE = 320  # the daemon's default quality.detect_max_side
PHOTO = "Tony_Blair_0018.jpg"

# Linux aarch64 HWCAP/HWCAP2 bits that decide which kernels XNNPACK picks (asm/hwcap.h)
HWCAP_BITS = {"fp": 0, "asimd": 1, "fphp": 9, "asimdhp": 10, "asimddp": 20, "sve": 22}
HWCAP2_BITS = {"sve2": 1, "i8mm": 13, "bf16": 14}


def mark(k: int) -> None:
    try:
        os.getpgid(MARKER_BASE + k)
    except OSError:
        pass


def cpu_features() -> list[str]:
    """The aarch64 features the process is told about (what qemu's ``-cpu`` model gives); [] on x86."""
    if platform.machine() != "aarch64":
        return []
    getauxval = ctypes.CDLL(None).getauxval
    getauxval.restype = ctypes.c_ulong
    hw, hw2 = getauxval(16), getauxval(26)  # AT_HWCAP, AT_HWCAP2
    return [n for n, b in HWCAP_BITS.items() if hw >> b & 1] + [n for n, b in HWCAP2_BITS.items() if hw2 >> b & 1]


def door_frame(photo: np.ndarray) -> np.ndarray:
    """A 640x480 frame with the photo at 240 px (a face of about 90 px), on a plain noisy background."""
    rng = np.random.default_rng(0)
    frame = np.clip(110 + rng.integers(-12, 13, (FRAME_H, FRAME_W, 3)), 0, 255).astype(np.uint8)
    side = 240
    x, y = (FRAME_W - side) // 2, (FRAME_H - side) // 2
    frame[y : y + side, x : x + side] = cv2.resize(photo, (side, side), interpolation=cv2.INTER_LINEAR)
    return frame


def main(argv: list[str] | None = None) -> int:
    from edge_verify.align import align_face
    from edge_verify.detect import FaceDetector
    from edge_verify.embed import Embedder
    from edge_verify.imageio import read_image
    from edge_verify.models import resolve_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32", type=Path, required=True, help="the fp32 encoder (make build/sface_fp32.tflite)")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("EDGE_VERIFY_SHARED", "../shared")))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write what was run (stage order, reps, features) here")
    args = ap.parse_args(argv)

    cv2.setNumThreads(1)
    frame = door_frame(read_image(args.shared / "data" / "lfw" / "images" / PHOTO))
    detector = FaceDetector(max_side=DETECT_MAX_SIDE, pad_retry=False, num_threads=1)  # the default: LiteRT
    opencv = FaceDetector(max_side=DETECT_MAX_SIDE, pad_retry=False, backend="opencv")
    int8 = Embedder(resolve_encoder().model_path, num_threads=1)
    fp32 = Embedder(args.fp32, num_threads=1)

    faces = detector.detect(frame)
    if not faces:
        print(f"no face found in the frame made from {PHOTO}", file=sys.stderr)
        return 1
    crop = align_face(frame, faces[0].landmarks)
    work: dict[str, Callable[[], object]] = {
        "detect": lambda: detector.detect(frame),
        "detect_opencv": lambda: opencv.detect(frame),
        "align": lambda: align_face(frame, faces[0].landmarks),
        "embed_int8": lambda: int8.embed(crop),
        "embed_fp32": lambda: fp32.embed(crop),
    }
    for fn in work.values():  # warm-up, not counted
        fn()
    cos = float(int8.embed(crop) @ fp32.embed(crop))

    mark(0)
    for k, name in enumerate(STAGES, start=1):
        for _ in range(args.reps):
            work[name]()
        mark(k)
    info = {"stages": list(STAGES), "reps": args.reps, "machine": platform.machine(), "features": cpu_features(),
            "python": platform.python_version(), "interpreter": int8.interpreter, "detector": detector.runner,
            "photo": PHOTO,
            "frame": [FRAME_W, FRAME_H], "detect_max_side": DETECT_MAX_SIDE, "faces": len(faces),
            "int8_fp32_cosine": round(cos, 5), "numpy": np.__version__, "opencv": cv2.__version__}
    text = json.dumps(info)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
