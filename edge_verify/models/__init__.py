"""The bundled models (the files in this package directory): where they are, what their manifests say,
and a sha256 check at load."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..match import OperatingPoints

MODEL_DIR = Path(__file__).resolve().parent
DEFAULT_ENCODER = "sface-int8"
DETECTOR_FILE = "face_detection_yunet_2023mar_int8bq.onnx"  # OpenCV's YuNet: cv2.FaceDetectorYN runs it
DETECTOR_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
DETECTOR_MANIFEST = "yunet.json"  # the same YuNet imported for LiteRT (edge_verify.yunet), `make detector`
ENCODER = "encoder"
DETECTOR = "face_detector"


@lru_cache(maxsize=16)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file (cached by path, size and mtime)."""
    p = Path(path)
    st = p.stat()
    return _sha256(p.resolve(), st.st_mtime_ns, st.st_size)


def check_sha256(path: Path, expected: str) -> str:
    """Raise ModelError when a model file is missing or its sha256 is not ``expected``."""
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"{path.name}: sha256 {actual[:12]}... does not match its manifest ({expected[:12]}...); "
            "the file is damaged or was replaced: reinstall edge-verify or re-export the model"
        )
    return actual


@dataclass(frozen=True)
class Manifest:
    """What the exporter wrote about an encoder (see docs/DESIGN.md)."""

    path: Path  # the manifest file
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data.get("name", self.path.stem))

    @property
    def model_path(self) -> Path:
        return self.path.parent / str(self.data.get("file", self.path.stem + ".tflite"))

    @property
    def sha256(self) -> str:
        return str(self.data["sha256"])

    @property
    def tau(self) -> float:
        return float(self.data["tau"])

    @property
    def tau_far(self) -> float | None:
        far = self.data.get("tau_far")
        return None if far is None else float(far)

    @property
    def loosest_tau(self) -> float:
        """The largest tau of the calibrated operating points (the manifest's ``tau`` and any
        ``operating_points``): a tau above it accepts more than any measured false-match rate."""
        points = [self.tau] + [float(p["tau"]) for p in self.data.get("operating_points", [])
                               if isinstance(p, dict) and "tau" in p]
        return max(points)

    def tau_warning(self, tau: float) -> str | None:
        """A warning when ``tau`` is looser than every calibrated point, else None."""
        if tau > self.loosest_tau:
            return (f"tau {tau:.4f} is looser than the model's loosest calibrated point ({self.loosest_tau:.4f}): "
                    "strangers will be accepted more often than any measured false-match rate")
        return None

    @property
    def operating_points(self) -> OperatingPoints:
        """The calibrated (FMR, tau) points (``converter.evaluate --all-pairs --update-manifest``)."""
        try:
            return OperatingPoints.from_manifest(self.data)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{self.path}: unusable operating points: {exc}") from None

    @property
    def margin(self) -> float:
        """How much nearer than the second-best person the best must be (squared L2, ``fusion.confirm``):
        the manifest's ``decision.margin`` (``python -m bench.door_sim --update-manifest``), else 0."""
        return float(self.data.get("decision", {}).get("margin", 0.0))

    @property
    def fusion(self) -> str:
        """How a visit's agreeing frames are fused (``fusion.FUSIONS``): ``decision.fusion``, else encoding."""
        return str(self.data.get("decision", {}).get("fusion", "encoding"))

    @property
    def embedding_size(self) -> int:
        return int(self.data.get("output", {}).get("embedding_size", 128))

    @property
    def color_order(self) -> str:
        return str(self.data.get("input", {}).get("color_order", "BGR"))


def read_manifest_json(path: str | Path, what: str = "model") -> dict[str, Any]:
    """A JSON manifest as a dict; ModelError (one line) when it is missing, unreadable or not an object."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelError(f"{what} manifest not found: {p}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{p}: unreadable {what} manifest: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{p}: {what} manifest is not a JSON object")
    return data


def load_manifest(path: str | Path) -> Manifest:
    """Read and sanity-check a model manifest."""
    p = Path(path)
    data = read_manifest_json(p)
    required = ("sha256", "tau") if data.get("kind", ENCODER) == ENCODER else ("sha256",)
    for key in required:
        if key not in data:
            raise ModelError(f"{p}: model manifest has no {key!r}")
    return Manifest(p, data)


def bundled_manifests() -> dict[str, Manifest]:
    """Every bundled encoder, by name."""
    found = {}
    for p in sorted(MODEL_DIR.glob("*.json")):
        try:
            m = load_manifest(p)
        except ModelError:
            continue
        if m.data.get("kind", ENCODER) == ENCODER:
            found[m.name] = m
    return found


def resolve_encoder(model: str | Path | None = None) -> Manifest:
    """A bundled encoder by name, or a ``.tflite``/manifest path; the model's sha256 is checked."""
    if model is None:
        model = DEFAULT_ENCODER
    text = str(model)
    bundled = bundled_manifests()
    if text in bundled:
        manifest = bundled[text]
    else:
        p = Path(text)
        if p.suffix == ".tflite":
            p = p.with_suffix(".json")
        elif p.suffix != ".json":
            names = ", ".join(sorted(bundled)) or "none"
            raise ModelError(f"unknown model {text!r}: give a bundled name ({names}) or a .tflite path")
        manifest = load_manifest(p)
    check_sha256(manifest.model_path, manifest.sha256)
    return manifest


def detector_path() -> Path:
    """The bundled YuNet file, sha256-checked."""
    path = MODEL_DIR / DETECTOR_FILE
    check_sha256(path, DETECTOR_SHA256)
    return path


def resolve_detector(manifest: str | Path | None = None) -> Manifest:
    """The LiteRT face detector's manifest (bundled by default, or a ``.json``/``.tflite`` path), its
    model file sha256-checked."""
    p = MODEL_DIR / DETECTOR_MANIFEST if manifest is None else Path(manifest)
    if p.suffix == ".tflite":
        p = p.with_suffix(".json")
    m = load_manifest(p)
    if m.data.get("kind") != DETECTOR:
        raise ModelError(f"{p}: not a face detector manifest (kind {m.data.get('kind', ENCODER)!r})")
    check_sha256(m.model_path, m.sha256)
    return m
