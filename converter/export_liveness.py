"""Export an imported liveness classifier (MiniFASNet) to full-integer int8 TFLite, with its manifest.

    python -m converter.export --int8 build/minifasnet_v2.keras --liveness-scale 2.7 \\
        --out edge_verify/models/liveness/minifasnet_v2_int8.tflite

The int8 recipe is the encoder's (``converter.export``: PReLU rewritten so that XNNPACK takes the whole
graph, int8 in and out, no float tensor left) with the calibration and validation of a classifier:

- calibration: LFW View 2 fold 1 photos and synthetic print / screen / angled attacks made from the same
  photos (``converter.attacks``), each cut around the YuNet face box by the runtime's own
  ``edge_verify.liveness.liveness_crop`` at the model's scale;
- activation ranges: ``p99`` of the per-image min/max by default. Chosen on agreement with the float
  model over held-out crops (LFW folds 2-10 and their synthetic attacks); the encoder's ``p50``
  clipped the logits to +-2 (docs/LIVENESS.md has the comparison);
- validation (in the manifest): live probability and logits of int8 vs the float Keras model on those
  held-out crops. Agreement with the ONNX source on NUAA, through the product, is measured by
  ``python -m converter.pad --compare-onnx`` (it needs both models).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converter.export import (
    ExportError,
    ExportResult,
    _read_json,
    check_int8,
    convert,
    fix_batch,
    keras_embed,
    load_keras,
    rewrite_checked,
    rewrite_diff,
    sha256_bytes,
    sidecar,
    time_per_face,
)
from edge_verify.liveness import LIVE_CLASS, liveness_crop

log = logging.getLogger(__name__)

DEFAULT_RANGES = "p99"
CALIB_PHOTOS = 150  # LFW fold-1 photos; with one attack of each kind per photo: 600 calibration images
VALIDATION_PHOTOS = 100  # LFW folds 2-10


def lfw_crops(photos: Sequence[Path], scale: float, size: tuple[int, int], with_attacks: bool = True,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Liveness crops of ``photos`` (and of one synthetic attack of each kind per photo): (crops, is_live).

    The face is the photo's subject (``converter.faces.pick_subject``) found by the runtime's detector;
    frames without a face are skipped."""
    import cv2

    from converter.attacks import KINDS, make_attack
    from converter.faces import pick_subject
    from edge_verify.detect import FaceDetector

    det = FaceDetector()
    rng = np.random.default_rng(seed)
    crops, live = [], []
    for p in photos:
        photo = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if photo is None:
            continue
        frames = [(photo, True)] + ([(make_attack(photo, k, rng), False) for k in KINDS] if with_attacks else [])
        for frame, is_live in frames:
            face = pick_subject(det.detect(frame), frame.shape)
            if face is not None:
                crops.append(liveness_crop(frame, face.bbox, scale, size))
                live.append(is_live)
    if not crops:
        return np.zeros((0, size[1], size[0], 3), np.uint8), np.zeros(0, bool)
    return np.stack(crops), np.array(live)


def single_output(model: Any) -> Any:
    """The model with its one output as a plain tensor (``import_onnx --head raw`` names outputs in a dict)."""
    import keras

    if len(model.outputs) != 1:
        raise ExportError(f"a liveness classifier has one output (class logits); this model has {len(model.outputs)}")
    if isinstance(model.output, (dict, list, tuple)):
        return keras.Model(model.inputs, model.outputs[0], name=model.name)
    return model


def tflite_logits(path: Path, crops: np.ndarray, threads: int = 1) -> np.ndarray:
    from edge_verify.embed import Embedder

    runner = Embedder(path, num_threads=threads)
    return np.stack([runner.run(c) for c in crops]).astype(np.float64)


def live_probability(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e[:, LIVE_CLASS] / e.sum(axis=1))


def agreement(ref_logits: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """How close int8 logits are to float ones: live-probability differences and logit correlation."""
    p, q = live_probability(ref_logits), live_probability(logits)
    d = np.abs(p - q)
    return {"crops": len(p), "p_live_abs_diff_mean": round(float(d.mean()), 5),
            "p_live_abs_diff_max": round(float(d.max()), 5),
            "logit_corr": round(float(np.corrcoef(ref_logits.ravel(), logits.ravel())[0, 1]), 5)}


def export_liveness(model_path: Path, out: Path, crop_scale: float, *, name: str | None = None,
                    range_mode: str = DEFAULT_RANGES, calib_photos: int = CALIB_PHOTOS,
                    validation_photos: int = VALIDATION_PHOTOS, bench: bool = True) -> ExportResult:
    """Convert, check and validate a liveness classifier; write ``out`` and its manifest."""
    import tensorflow as tf

    from converter.faces import spread
    from converter.lfw import fold_images, shared_dir
    from converter.quantize import delegate_partitions
    from edge_verify import __version__ as ev_version

    if not 1.0 <= crop_scale <= 10.0:
        raise ExportError(f"crop scale must be within [1, 10], got {crop_scale}")
    model = single_output(fix_batch(load_keras(model_path)))
    shape = tuple(int(d) for d in model.inputs[0].shape)
    n_classes = int(model.outputs[0].shape[-1])
    if len(shape) != 4 or shape[3] != 3 or n_classes <= LIVE_CLASS:
        raise ExportError(f"expected an NHWC 3-channel classifier with > {LIVE_CLASS} classes, "
                          f"got input {shape} and {n_classes} outputs")
    size = (shape[2], shape[1])
    lfw_dir = shared_dir() / "data" / "lfw"
    if not lfw_dir.is_dir():
        raise ExportError(f"LFW not found at {lfw_dir}: calibration needs it (set EDGE_VERIFY_SHARED)")
    calib, calib_live = lfw_crops(spread(fold_images(lfw_dir, [1]), calib_photos), crop_scale, size, seed=1)
    held_paths: list[Path] = []
    for fold in range(2, 11):
        held_paths += spread(fold_images(lfw_dir, [fold]), max(1, validation_photos // 9))
    held, held_live = lfw_crops(held_paths, crop_scale, size, seed=2)
    if len(calib) == 0:
        raise ExportError("no calibration faces found")
    log.info("calibrating on %d crops (%d live photos, %d synthetic attacks)", len(calib),
             int(calib_live.sum()), int((~calib_live).sum()))

    conv_model, n_prelu = rewrite_checked(model)
    ref = keras_embed(model, held).astype(np.float64)
    rewrite_max_abs_diff = rewrite_diff(conv_model, held, ref)
    float_content = convert(conv_model, None)
    content = convert(conv_model, calib, range_mode)
    rep = check_int8(content)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(content)
    validation = {"held_out": "LFW View 2 folds 2-10 photos and one synthetic print, screen and angled "
                              "attack of each (converter.attacks, seed 2)",
                  "live_crops": int(held_live.sum()), "attack_crops": int((~held_live).sum()),
                  **agreement(ref, tflite_logits(out, held)), "float_size_bytes": len(float_content)}
    prov = _read_json(sidecar(model_path, "provenance")) or {}
    manifest = {
        "schema": 1,
        "kind": "liveness",
        "name": name or out.stem.replace("_", "-"),
        "file": out.name,
        "sha256": sha256_bytes(content),
        "dtype": "int8",
        "size_bytes": len(content),
        "input": {
            "shape": rep.input_shape, "color_order": "BGR", "pixel_range": [0, 255], "normalization": "none",
            "crop": {"scale": crop_scale, "rule": "edge_verify.liveness.crop_box: the detector box enlarged "
                     "about its centre, shifted inside the frame, resized (bilinear) to the input size"},
            "quantization": {"scale": rep.input_quant[0], "zero_point": rep.input_quant[1]},
        },
        "output": {"classes": n_classes, "kind": "logits", "live_index": LIVE_CLASS,
                   "quantization": {"scale": rep.output_quant[0], "zero_point": rep.output_quant[1]}},
        "validation": validation,
        "calibration": {"images": len(calib), "sources": [
            f"LFW View 2 fold 1 ({calib_photos} photos spread over the fold) and one synthetic print, "
            "screen and angled attack of each (converter.attacks, seed 1)",
            f"activation ranges: {range_mode} of each image's min/max"]},
        "provenance": {k: prov.get(k, "unknown") for k in ("source", "source_sha256", "license", "authors",
                                                            "training_data")}
        | {"lfw_folds_used": [1]},
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "tools": {"tensorflow": tf.__version__, "edge_verify": ev_version},
    }
    import json

    out.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
    report: dict[str, Any] = {"prelu_rewritten": n_prelu, "rewrite_max_abs_diff": rewrite_max_abs_diff,
                              "ops": rep.op_counts, "size_bytes": len(content),
                              "float_size_bytes": len(float_content), "validation": validation}
    parts, n_ops = delegate_partitions(str(out))
    report["xnnpack"] = {"partitions": parts, "ops": n_ops}
    if bench:
        time_per_face(report, out, float_content, held)
    return ExportResult(out, manifest, report)


def print_report(res: ExportResult) -> None:
    r, m, v = res.report, res.manifest, res.manifest["validation"]
    print(f"wrote {res.path} ({m['size_bytes']:,} bytes, int8, crop scale {m['input']['crop']['scale']}) "
          f"and {res.path.with_suffix('.json').name}")
    print(f"  sha256 {m['sha256']}")
    print(f"  fp32 size {r['float_size_bytes']:,} bytes; input quantization {m['input']['quantization']}, "
          f"output {m['output']['quantization']}")
    print(f"  int8 vs float on {v['crops']} held-out crops ({v['live_crops']} live photos, {v['attack_crops']} "
          f"synthetic attacks): |p_live diff| mean {v['p_live_abs_diff_mean']:.4f}, max "
          f"{v['p_live_abs_diff_max']:.4f}; logit correlation {v['logit_corr']:.4f}")
    print(f"  PReLU rewritten: {r['prelu_rewritten']} (float max abs diff {r['rewrite_max_abs_diff']:.2g})")
    print(f"  XNNPACK: {r['xnnpack']['partitions']} delegate partition(s) over {r['xnnpack']['ops']} ops")
    for t in (1, 2):
        if f"ms_per_face_{t}t" in r:
            print(f"  {t} thread(s): {r[f'ms_per_face_{t}t']} ms/face (fp32 {r[f'float_ms_per_face_{t}t']} ms)")
    print("  ops: " + ", ".join(f"{k} x{n}" for k, n in sorted(r["ops"].items())))
