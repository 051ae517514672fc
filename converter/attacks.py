"""Synthetic presentation attacks made from face photos (LFW), for tests, calibration and evaluation.

    python -m converter.attacks OUT [--lfw DIR] [--folds 2-10] [--n 200] [--kinds print,screen,angle]
                                    [--seed 0]

writes ``OUT/live/*.jpg`` (the photos as they are: camera captures of live people) and
``OUT/attack/<kind>/*.jpg``, the layout ``python -m converter.evaluate --pad OUT`` reads. Images are
made on the fly from the shared data and are never committed.

Each attack is a 640x480 "camera frame" of the photo presented to a camera:
- ``print``: the photo printed on paper (compressed tonal range, raised black level, a colour cast,
  halftone dots, a white border), held flat in front of a background;
- ``screen``: the photo on a phone (a black bezel, a backlit screen: raised blacks, blue cast, glare,
  and moire from the screen's pixel grid re-sampled by the camera);
- ``angle``: a print or a screen re-photographed at an angle (a perspective tilt of 20-40 degrees).
Every frame then goes through a camera model: defocus, sensor noise and JPEG compression.
They model what a print or replay does to an image; they are not real captures (NUAA is).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

KINDS = ("print", "screen", "angle")
FRAME = (640, 480)  # w, h


def _background(rng: np.random.Generator, size: tuple[int, int] = FRAME) -> np.ndarray:
    """A plain indoor-looking background: a smooth two-colour gradient with low-frequency texture."""
    w, h = size
    a, b = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    t = np.linspace(0.0, 1.0, w)[None, :, None] * rng.uniform(0.3, 1.0) + \
        np.linspace(0.0, 1.0, h)[:, None, None] * rng.uniform(0.0, 0.7)
    img = np.asarray(a + (b - a) * np.clip(t, 0, 1), np.float32)
    texture = cv2.resize(rng.normal(0, 12, (h // 16, w // 16)).astype(np.float32), (w, h))
    return np.clip(img + texture[..., None], 0, 255).astype(np.uint8)


def _printed(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo as a print: tonal range compressed, blacks raised, a colour cast, halftone dots, a border."""
    x: np.ndarray = cv2.resize(photo, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC).astype(np.float64)
    black, white = rng.uniform(25, 55), rng.uniform(205, 240)
    x = black + x * (white - black) / 255.0
    x = x * rng.uniform(0.92, 1.06, 3)  # ink / paper colour cast
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.6, 0.9)  # prints are less saturated
    period = rng.uniform(2.5, 4.0)
    yy, xx = np.mgrid[0:x.shape[0], 0:x.shape[1]].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    dots = np.cos(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period) * \
        np.cos(2 * np.pi * (-xx * np.sin(angle) + yy * np.cos(angle)) / period)
    x = x + dots[..., None] * rng.uniform(6, 14)
    border = int(rng.integers(8, 24))
    paper = rng.uniform(225, 250)
    return cv2.copyMakeBorder(np.clip(x, 0, 255).astype(np.uint8), border, border, border, border,
                              cv2.BORDER_CONSTANT, value=(paper, paper, paper))


def _on_screen(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo on a phone: backlit (blacks raised, blue cast), an RGB pixel grid, glare, a black bezel."""
    scale = int(rng.integers(3, 5))
    x = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x = 20.0 + x * rng.uniform(0.8, 0.92)
    x = x * np.array([rng.uniform(1.02, 1.12), 1.0, rng.uniform(0.88, 0.98)])  # BGR: bluish white point
    grid = np.full_like(x, 0.55)  # each screen pixel: B, G, R stripes; the gaps between them are dark
    for c in range(3):
        grid[:, c::3, c] = 1.0
    grid[1::3, :, :] *= 0.75
    x = x * grid * rng.uniform(1.3, 1.5)
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    x = x + rng.uniform(15, 45) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.35 * w) ** 2))[..., None]
    screen = np.clip(x, 0, 255).astype(np.uint8)
    bezel = int(rng.integers(10, 22))
    out = cv2.copyMakeBorder(screen, bezel, 3 * bezel, bezel, 3 * bezel, cv2.BORDER_CONSTANT,
                             value=(15, 15, 18))
    return out


def _place(frame: np.ndarray, item: np.ndarray, rng: np.random.Generator, tilt_deg: float = 0.0) -> np.ndarray:
    """Paste ``item`` into ``frame``, scaled to 45-80 % of the frame height, rotated a little in plane and,
    when ``tilt_deg`` > 0, tilted about a vertical or horizontal axis (a perspective warp)."""
    fh, fw = frame.shape[:2]
    ih, iw = item.shape[:2]
    s = rng.uniform(0.45, 0.8) * fh / ih
    w, h = iw * s, ih * s
    src = np.array([[0, 0], [iw, 0], [iw, ih], [0, ih]], np.float32)
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], np.float32)
    if tilt_deg:
        t = np.sin(np.radians(tilt_deg)) * 0.5
        if rng.random() < 0.5:  # about the vertical axis: one side nearer (taller), the other farther
            sign = rng.choice([-1.0, 1.0])
            corners[:, 1] *= 1.0 + sign * t * np.sign(corners[:, 0])
            corners[:, 0] *= np.cos(np.radians(tilt_deg))
        else:
            sign = rng.choice([-1.0, 1.0])
            corners[:, 0] *= 1.0 + sign * t * np.sign(corners[:, 1])
            corners[:, 1] *= np.cos(np.radians(tilt_deg))
    roll = np.radians(rng.uniform(-8, 8))
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]], np.float32)
    corners = np.asarray(corners @ rot.T, np.float32)
    half = np.abs(corners).max(axis=0)
    centre = np.array([rng.uniform(half[0], max(half[0], fw - half[0])),
                       rng.uniform(half[1], max(half[1], fh - half[1]))], np.float32)
    m = cv2.getPerspectiveTransform(src, (corners + centre).astype(np.float32))
    warped = cv2.warpPerspective(item, m, (fw, fh), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((ih, iw), 255, np.uint8), m, (fw, fh), flags=cv2.INTER_LINEAR)
    a = (mask.astype(np.float32) / 255.0)[..., None]
    shade = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.1), fw, dtype=np.float32)[None, :, None]
    out = frame.astype(np.float32) * (1 - a) + warped.astype(np.float32) * shade * a
    return np.clip(out, 0, 255).astype(np.uint8)


def _camera(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a webcam adds: a little defocus, sensor noise, JPEG compression."""
    x = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.4, 1.1)).astype(np.float32)
    x = x + rng.normal(0, rng.uniform(1.5, 4.0), x.shape)
    ok, buf = cv2.imencode(".jpg", np.clip(x, 0, 255).astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 92))])
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if out is None:
        raise ValueError("JPEG round trip failed")
    return np.asarray(out)


def make_attack(photo: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One 640x480 BGR camera frame of ``photo`` (BGR uint8) presented as a ``kind`` attack."""
    if kind not in KINDS:
        raise ValueError(f"unknown attack kind {kind!r} (one of {', '.join(KINDS)})")
    if kind == "angle":
        item = _printed(photo, rng) if rng.random() < 0.5 else _on_screen(photo, rng)
        tilt = rng.uniform(20, 40)
    else:
        item = _printed(photo, rng) if kind == "print" else _on_screen(photo, rng)
        tilt = 0.0
    return _camera(_place(_background(rng), item, rng, tilt), rng)


def attack_set(photos: Sequence[Path], out: Path, kinds: Sequence[str] = KINDS, seed: int = 0) -> dict[str, int]:
    """Write ``out/live/`` (the photos) and ``out/attack/<kind>/`` (one attack per photo and kind)."""
    rng = np.random.default_rng(seed)
    counts = {"live": 0, **{k: 0 for k in kinds}}
    (out / "live").mkdir(parents=True, exist_ok=True)
    for k in kinds:
        (out / "attack" / k).mkdir(parents=True, exist_ok=True)
    for p in photos:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("skipping unreadable %s", p)
            continue
        cv2.imwrite(str(out / "live" / p.name), img)
        counts["live"] += 1
        for k in kinds:
            cv2.imwrite(str(out / "attack" / k / p.name), make_attack(img, k, rng))
            counts[k] += 1
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    from converter.faces import spread
    from converter.lfw import LfwError, fold_images, parse_folds, shared_dir

    p = argparse.ArgumentParser(prog="python -m converter.attacks", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="output folder (live/ and attack/<kind>/)")
    p.add_argument("--lfw", type=Path, help="LFW folder (default: shared/data/lfw)")
    p.add_argument("--folds", type=parse_folds, default=list(range(2, 11)),
                   help="LFW folds to take photos from (default 2-10; fold 1 calibrates the int8 models)")
    p.add_argument("--n", type=int, default=200, help="photos, spread over the folds (default 200)")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma list of " + ", ".join(KINDS))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        print(f"error: unknown attack kind(s) {bad or kinds}: use {', '.join(KINDS)}", file=sys.stderr)
        return 2
    lfw_dir = args.lfw or shared_dir() / "data" / "lfw"
    try:
        photos = spread(fold_images(lfw_dir, args.folds), args.n)
    except LfwError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = attack_set(photos, args.out, kinds, args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
