"""Export the imported YuNet face detector to TFLite (fp32 or full-integer int8) with its manifest.

    python -m converter.import_onnx YUNET.onnx build/yunet.keras --input-order BGR --input-size any --head raw
    python -m converter.export --detector --float build/yunet.keras --out edge_verify/models/yunet.tflite
    python -m converter.export --detector --int8 build/yunet.keras --out build/yunet_int8.tflite

The input stays resizable (``--input-size any``): the runtime (``edge_verify.yunet``) pads each image
to a multiple of 32 and resizes the interpreter when that size changes. int8 is calibrated on
door-distance scenes (``converter.scenes``: LFW View 2 fold 1 faces of 40-200 px in 640x480 frames,
downscaled to 320x240 as the daemon detects). Validation runs the exported file through the runtime
and compares it with ``cv2.FaceDetectorYN`` on held-out LFW images (folds 2-10) and scenes: faces
found by each, box IoU and landmark differences. Timing: ms per frame at the daemon's sizes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from converter.export import ExportError, ExportResult, check_int8, convert, load_keras, sha256_bytes
from converter.lfw import fold_images

log = logging.getLogger(__name__)

CALIB_SCENE = (640, 480)
CALIB_DETECT_SIDE = 320
TIMED_SIZES = ((320, 180), (320, 240), (640, 480))  # (w, h): daemon lores 16:9 and 4:3 at 320, and 640


def calibration_frames(shared: Path, count: int = 200, seed: int = 0) -> np.ndarray:
    """Scenes of LFW fold-1 faces (40-200 px in 640x480), downscaled to 320x240 and padded to 320x256."""
    import cv2

    from converter import faces, scenes
    from edge_verify.detect import FaceDetector
    from edge_verify.yunet import padded_size

    paths = faces.spread(fold_images(shared / "data" / "lfw", [1]), count)
    subs = scenes.subjects(paths, FaceDetector(backend="opencv"))
    rng = np.random.default_rng(seed)
    w, h = CALIB_DETECT_SIDE, CALIB_DETECT_SIDE * CALIB_SCENE[1] // CALIB_SCENE[0]
    pw, ph = padded_size(w, h)
    out = np.zeros((len(subs), ph, pw, 3), np.uint8)
    for i, s in enumerate(subs):
        scene = scenes.paste(s, int(rng.choice(scenes.FACE_SIZES)), CALIB_SCENE, rng)
        out[i, :h, :w] = cv2.resize(scene.image, (w, h), interpolation=cv2.INTER_AREA)
    return out


def agreement(candidate: Any, reference: Any, images: list[np.ndarray]) -> dict[str, Any]:
    """Faces found by two ``FaceDetector``s on the same images: images with a face by each, and for
    each reference face the best-overlapping candidate face (IoU, landmark error / face width)."""
    from converter.scenes import match_faces

    found = [0, 0]
    ious: list[float] = []
    marks: list[float] = []
    for img in images:
        a, b = candidate.detect(img), reference.detect(img)
        found[0] += bool(a)
        found[1] += bool(b)
        img_ious, img_marks = match_faces(a, b)
        ious += img_ious
        marks += img_marks
    arr = np.asarray(ious) if ious else np.zeros(1)
    lm = np.asarray(marks) if marks else np.zeros(1)
    return {
        "images": len(images), "with_face": found[0], "with_face_reference": found[1],
        "reference_faces": len(ious), "matched_iou_0.5": int((arr >= 0.5).sum()),
        "iou_median": round(float(np.median(arr)), 4), "iou_min": round(float(arr.min()), 4),
        "landmark_err_median": round(float(np.median(lm)), 4), "landmark_err_max": round(float(lm.max()), 4),
    }


def validate(model: Path, shared: Path, lfw_per_fold: int = 25, scene_count: int = 40) -> dict[str, Any]:
    """The exported detector (through the runtime) against ``cv2.FaceDetectorYN``."""
    from converter import faces, scenes
    from edge_verify.detect import FaceDetector
    from edge_verify.imageio import read_image

    ref = FaceDetector(backend="opencv")
    cand = FaceDetector(model, backend="litert")
    lfw = [read_image(p) for p in faces.default_validation_paths(shared, lfw_per_fold)]
    report = {"lfw_folds_2_10": agreement(cand, ref, lfw)}
    subs = scenes.subjects(faces.spread(fold_images(shared / "data" / "lfw", [2]), scene_count), ref)
    door = [s.image for s in scenes.scenes(subs, seed=1)]
    ref320 = FaceDetector(backend="opencv", max_side=320, pad_retry=False)
    cand320 = FaceDetector(model, backend="litert", max_side=320, pad_retry=False)
    report["door_scenes_at_320"] = agreement(cand320, ref320, door)
    report["door_scenes_at_320"]["what"] = (f"{len(subs)} LFW fold-2 faces x {len(scenes.FACE_SIZES)} sizes "
                                            f"{scenes.FACE_SIZES[0]}-{scenes.FACE_SIZES[-1]} px x 640x480 and "
                                            "1280x720 scenes, detection at 320 px")
    return report


def timing(model: Path, threads: int, runs: int = 40) -> dict[str, float]:
    """Median ms per frame (detection and decoding) at ``TIMED_SIZES``."""
    from edge_verify.yunet import LiteRTYuNet

    det = LiteRTYuNet(model, num_threads=threads)
    rng = np.random.default_rng(0)
    out = {}
    for w, h in TIMED_SIZES:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        det.run(img)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            det.run(img)
            times.append(time.perf_counter() - t0)
        out[f"{w}x{h}"] = round(float(np.median(times)) * 1000, 2)
    return out


def manifest_for(*, name: str, out: Path, content: bytes, int8: bool, rep: Any, xnnpack: tuple[int, int],
                 calibration: dict[str, Any], validation: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf

    from edge_verify import __version__ as ev_version
    from edge_verify.yunet import DIVISOR, OUTPUTS, STRIDES

    return {
        "schema": 1,
        "kind": "face_detector",
        "name": name,
        "file": out.name,
        "sha256": sha256_bytes(content),
        "dtype": "int8" if int8 else "float32",
        "size_bytes": len(content),
        "input": {
            "shape": [1, -1, -1, 3],
            "color_order": "BGR",
            "pixel_range": [0, 255],
            "normalization": "none (raw pixels, as cv2.FaceDetectorYN feeds them)",
            "padding": f"zeros on the right and bottom up to a multiple of {DIVISOR}; the input is resized to it",
            "quantization": ({"scale": rep.input_quant[0], "zero_point": rep.input_quant[1]} if int8 else None),
        },
        "outputs": list(OUTPUTS),
        "decode": {"module": "edge_verify.yunet", "strides": list(STRIDES), "score": "sqrt(cls * obj)",
                   "landmarks": "right eye, left eye, nose tip, right mouth corner, left mouth corner"},
        "xnnpack": {"partitions": xnnpack[0], "ops": xnnpack[1]},
        "validation": validation,
        "calibration": calibration,
        "provenance": provenance,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "tools": {"tensorflow": tf.__version__, "edge_verify": ev_version},
    }


def export_detector(model_path: Path, out: Path, *, int8: bool = False, name: str | None = None,
                    bench: bool = True, range_mode: str = "minmax", calib_count: int = 200,
                    validation_size: tuple[int, int] = (25, 40)) -> ExportResult:
    """Convert, check, validate against OpenCV and write ``out`` plus its manifest.

    ``validation_size``: LFW images per fold (folds 2-10) and fold-2 faces for the door scenes."""
    from converter.export import _read_json, sidecar
    from converter.lfw import shared_dir
    from converter.quantize import delegate_partitions, inspect_tflite
    from edge_verify.yunet import OUTPUTS

    model = load_keras(model_path)
    names = list(getattr(model, "output_names", []) or [])
    if sorted(names) != sorted(OUTPUTS):
        raise ExportError(f"{model_path}: not an imported YuNet (outputs {names}); import it with --head raw")
    shared = shared_dir()
    calibration: dict[str, Any] = {"frames": 0, "sources": []}
    if int8:
        calib = calibration_frames(shared, calib_count)
        if not len(calib):
            raise ExportError("no calibration frames (no face found in LFW fold 1)")
        content = convert(model, calib, range_mode)
        rep = check_int8(content)
        calibration = {"frames": len(calib), "range_mode": range_mode, "sources": [
            f"LFW View 2 fold 1 ({len(calib)} faces, 40-200 px, pasted into 640x480 scenes, detected at 320x240)"]}
    else:
        content = convert(model, None)
        rep = inspect_tflite(content)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(content)
    provenance = _read_json(sidecar(model_path, "provenance")) or {"source": model_path.name}
    provenance.pop("converted_by", None)
    name = name or out.stem.replace("_", "-")
    parts = delegate_partitions(str(out))
    man = out.with_suffix(".json")

    def write(validation: dict[str, Any]) -> dict[str, Any]:
        data = manifest_for(name=name, out=out, content=content, int8=int8, rep=rep, xnnpack=parts,
                            calibration=calibration, validation=validation, provenance=provenance)
        man.write_text(json.dumps(data, indent=2) + "\n")
        return data

    write({})  # the runtime needs the manifest (sha256) to load the file for validation
    validation = validate(out, shared, *validation_size) if (shared / "data" / "lfw").is_dir() else {}
    manifest = write(validation)
    report: dict[str, Any] = {"ops": rep.op_counts, "size_bytes": len(content),
                              "xnnpack": {"partitions": parts[0], "ops": parts[1]}}
    if bench:
        report["ms_per_frame"] = {f"{t}t": timing(out, t) for t in (1, 2)}
    return ExportResult(out, manifest, report)


def print_report(res: ExportResult) -> None:
    m, r = res.manifest, res.report
    print(f"wrote {res.path} ({m['size_bytes']:,} bytes, {m['dtype']}) and {res.path.with_suffix('.json').name}")
    print(f"  sha256 {m['sha256']}")
    print(f"  XNNPACK: {r['xnnpack']['partitions']} delegate partition(s) over {r['xnnpack']['ops']} ops")
    for what, v in m["validation"].items():
        print(f"  vs cv2.FaceDetectorYN, {what}: {v['with_face']}/{v['images']} images with a face "
              f"(cv2 {v['with_face_reference']}); {v['matched_iou_0.5']}/{v['reference_faces']} of cv2's faces "
              f"matched; IoU median {v['iou_median']}, min {v['iou_min']}; landmark error / face width "
              f"median {v['landmark_err_median']}, max {v['landmark_err_max']}")
    for t, sizes in r.get("ms_per_frame", {}).items():
        print(f"  {t}: " + ", ".join(f"{s} {ms} ms" for s, ms in sizes.items()))
    print("  ops: " + ", ".join(f"{k} x{n}" for k, n in sorted(r["ops"].items())))
