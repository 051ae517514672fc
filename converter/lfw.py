"""LFW View 2: the shared data folder, fold lists, ``pairs.txt`` and image paths (one implementation).

``pairs.txt`` starts with ``<folds> <n>``; then each fold has ``n`` same-person lines ``name i j``
followed by ``n`` different-person lines ``name1 i name2 j``. Images are ``images/<name>_<i:04d>.jpg``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from converter.errors import ConverterError

MAX_FOLDS = 10  # View 2 has ten folds

# One person under two LFW names (spellings, a married name, a title): found among the closest
# cross-person pairs of the all-pairs run and checked against the public record. The door simulation
# and the open-set run merge them (a "stranger" who is the enrolled person is no false accept); the
# all-pairs figures keep LFW's labels as they are, so that they compare with published ones.
ALIASES = {
    "Hassan_Wirajuda": "Hasan_Wirayuda",
    "Dai_Chul_Chyung": "Chyung_Dai-chul",
    "Mireya_Elisa_Moscoso_Rodriguez": "Mireya_Moscoso",
    "Wang_Nan": "Nan_Wang",
    "Sepp_Blatter": "Joseph_Blatter",
    "Prince_Felipe": "Felipe_De_Borbon",
    "Odai_Hussein": "Uday_Hussein",
    "Cristina_Kirchner": "Cristina_Fernandez",
    "John_Gruden": "Jon_Gruden",
}


class LfwError(ConverterError):
    """LFW data or a fold list cannot be used as given (one-line message)."""


def shared_dir() -> Path:
    """``$EDGE_VERIFY_SHARED``, else the ``shared`` folder beside the repository."""
    env = os.environ.get("EDGE_VERIFY_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"


def parse_folds(text: str) -> list[int]:
    """``"1-5"`` -> [1, 2, 3, 4, 5]; ``"6,8-10"`` -> [6, 8, 9, 10]; folds are 1..10."""
    folds: set[int] = set()
    for part in text.split(","):
        if not part.strip():
            continue
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise LfwError(f"bad fold list {text!r}: use e.g. 1-5 or 1,3,6-10")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if not 1 <= lo <= hi <= MAX_FOLDS:
            raise LfwError(f"bad fold list {text!r}: folds are 1..{MAX_FOLDS}")
        folds.update(range(lo, hi + 1))
    if not folds:
        raise LfwError(f"bad fold list {text!r}: no fold")
    return sorted(folds)


def folds_arg(text: str) -> list[int]:
    """argparse type for a fold list: ``parse_folds`` with argparse's error message."""
    import argparse

    try:
        return parse_folds(text)
    except LfwError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class Pair:
    """One line of ``pairs.txt``; ``same`` follows from its place in the fold (the first half)."""

    fold: int  # 1..n_folds
    name1: str
    i1: int
    name2: str
    i2: int
    same: bool


def image_path(images_dir: Path, name: str, i: int) -> Path:
    return images_dir / f"{name}_{i:04d}.jpg"


def person_of(path: str | Path) -> str:
    """The person an LFW image shows, from its name (the reverse of ``image_path``):
    ``.../Abel_Pacheco_0001.jpg`` -> ``Abel_Pacheco``."""
    return Path(path).stem.rsplit("_", 1)[0]


def read_pairs(pairs_file: Path, folds: Iterable[int] | None = None) -> list[Pair]:
    """The pairs of ``pairs_file`` in file order, only those of ``folds`` (1-based) when given."""
    try:
        text = pairs_file.read_text()
    except OSError as exc:
        raise LfwError(f"{pairs_file}: cannot read: {exc.strerror or exc}") from None
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    try:
        n_folds, per_fold = (int(v) for v in lines[0][1])
    except (IndexError, ValueError):
        raise LfwError(f"{pairs_file}: first line must be '<folds> <pairs per fold>'") from None
    rows = lines[1:]
    if len(rows) != n_folds * 2 * per_fold:
        raise LfwError(f"{pairs_file}: expected {n_folds} x 2 x {per_fold} pairs, found {len(rows)} lines")
    wanted = set(range(1, n_folds + 1)) if folds is None else set(folds)
    unknown = wanted - set(range(1, n_folds + 1))
    if unknown:
        raise LfwError(f"{pairs_file} has folds 1-{n_folds}; no fold {min(unknown)}")
    pairs: list[Pair] = []
    for k, (line_no, f) in enumerate(rows):
        fold = k // (2 * per_fold) + 1
        if fold not in wanted:
            continue
        same = k % (2 * per_fold) < per_fold
        try:
            if same and len(f) == 3:
                pairs.append(Pair(fold, f[0], int(f[1]), f[0], int(f[2]), True))
            elif not same and len(f) == 4:
                pairs.append(Pair(fold, f[0], int(f[1]), f[2], int(f[3]), False))
            else:
                raise ValueError
        except ValueError:
            kind = "'name i j'" if same else "'name1 i name2 j'"
            raise LfwError(f"{pairs_file}:{line_no}: expected {kind}, got {' '.join(f)!r}") from None
    return pairs


def person_folds(pairs: Iterable[Pair]) -> dict[str, int]:
    """The fold of each person named in the pairs (a person appears in one fold only)."""
    out: dict[str, int] = {}
    for p in pairs:
        for name in (p.name1, p.name2):
            if out.setdefault(name, p.fold) != p.fold:
                raise LfwError(f"{name} appears in folds {out[name]} and {p.fold}")
    return out


def fold_images(lfw_dir: Path, folds: Iterable[int]) -> list[Path]:
    """Unique image paths used by the given folds, fold by fold in the given order, in ``pairs.txt`` order."""
    folds = list(folds)
    pairs = read_pairs(lfw_dir / "pairs.txt", folds)
    seen: dict[Path, None] = {}
    for fold in folds:
        for p in pairs:
            if p.fold == fold:
                seen[image_path(lfw_dir / "images", p.name1, p.i1)] = None
                seen[image_path(lfw_dir / "images", p.name2, p.i2)] = None
    return list(seen)
