"""``edge-verify doctor``: what is installed, which interpreter runs, a model self-test, the cameras."""

from __future__ import annotations

import argparse
import glob
import importlib
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from . import __version__
from .errors import EdgeVerifyError, NoGalleryError

SAMPLES = Path(__file__).resolve().parent / "samples"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cameras() -> list[str]:
    """Cameras that can be listed without opening them: libcamera (picamera2) and V4L2 nodes."""
    found = []
    try:
        picamera2 = importlib.import_module("picamera2")
        for info in picamera2.Picamera2.global_camera_info():
            found.append(f"libcamera: {info.get('Model', '?')} ({info.get('Id', '?')})")
    except Exception:  # picamera2 only exists on Raspberry Pi OS; any failure means no libcamera cameras
        pass
    found.extend(f"v4l2: {dev}" for dev in sorted(glob.glob("/dev/video*")))
    return found


def run_doctor(args: argparse.Namespace) -> int:
    from .embed import load_interpreter_class
    from .models import bundled_manifests

    ok = True
    print(f"edge-verify {__version__} on Python {platform.python_version()} ({platform.machine()}, {sys.platform})")
    for dist in ("numpy", "opencv-python-headless", "paho-mqtt", "ai-edge-litert", "tflite-runtime", "picamera2"):
        print(f"  {dist:24s} {_version(dist)}")
    try:
        _, interp = load_interpreter_class()
        print(f"interpreter: {interp}")
    except EdgeVerifyError as exc:
        print(f"interpreter: MISSING: {exc}")
        ok = False
    for name, m in bundled_manifests().items():
        print(f"model {name}: {m.model_path.name}, tau {m.tau} (FAR {m.tau_far})")
    try:
        from .pipeline import FaceVerifier

        fv = FaceVerifier(model=args.model, state_dir=args.state_dir, tau=args.tau, num_threads=args.threads,
                          create_gallery=False)
        t0 = time.perf_counter()
        a = fv.encode_one(SAMPLES / "tiger_woods_0002.jpg")
        b = fv.encode_one(SAMPLES / "tiger_woods_0003.jpg")
        c = fv.encode_one(SAMPLES / "jennifer_garner_0001.jpg")
        ms = (time.perf_counter() - t0) * 1000 / 3
        same, other = float(((a - b) ** 2).sum()), float(((a - c) ** 2).sum())
        passed = same < fv.tau <= other
        ok &= passed
        print(f"self-test {'passed' if passed else 'FAILED'}: model {fv.manifest.name} (sha256 "
              f"{fv.model_sha256[:12]}..., {fv.embedder.interpreter}, {fv.embedder.num_threads} threads): "
              f"same person d={same:.3f}, different people d={other:.3f}, tau={fv.tau:.3f}, {ms:.1f} ms/photo")
        print(f"detector: {fv.detector.runner} ({fv.detector.model_path.name})")
        try:
            print(f"gallery: {fv.gallery.path}: {len(fv.people())} people")
        except NoGalleryError as exc:
            print(f"gallery: {exc}")
    except EdgeVerifyError as exc:
        print(f"self-test FAILED: {exc}")
        ok = False
    cams = cameras()
    print("cameras: " + (", ".join(cams) if cams else "none found"))
    return 0 if ok else 2
