"""Synthetic 640x480 camera frames with one real face: LFW photos placed on a plain, noisy canvas."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from converter.lfw import person_of

FRAME_W, FRAME_H = 640, 480
SCALES = (160, 240, 360)  # the pasted photo's side in pixels: faces of roughly 60, 90 and 140 px
POSITIONS = ((0.5, 0.5), (0.25, 0.4), (0.75, 0.6))  # photo centre as fractions of the frame


def pick_images(lfw_images: Path, count: int, seed: int = 0) -> list[Path]:
    """A seeded choice of ``count`` LFW photos of different people."""
    by_person: dict[str, Path] = {}
    for p in sorted(lfw_images.glob("*.jpg")):
        by_person.setdefault(person_of(p), p)
    people = sorted(by_person)
    order = np.random.default_rng(seed).permutation(len(people))
    return [by_person[people[i]] for i in order[:count]]


def place(photo: np.ndarray, side: int, centre: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """One 640x480 BGR frame: a grey, slightly noisy background with the photo resized to ``side``."""
    frame = np.full((FRAME_H, FRAME_W, 3), 110, np.uint8)
    noise = rng.integers(-12, 13, size=frame.shape, dtype=np.int16)
    frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    img = cv2.resize(
        photo, (side, side), interpolation=cv2.INTER_LINEAR if side > photo.shape[0] else cv2.INTER_AREA
    )
    x = int(np.clip(centre[0] * FRAME_W - side / 2, 0, FRAME_W - side))
    y = int(np.clip(centre[1] * FRAME_H - side / 2, 0, FRAME_H - side))
    frame[y : y + side, x : x + side] = img
    return frame


def make_frames(photos: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Every photo at every scale, each at a position that rotates with the scale."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, photo in enumerate(photos):
        for s, side in enumerate(SCALES):
            frames.append(place(photo, side, POSITIONS[(k + s) % len(POSITIONS)], rng))
    return frames
