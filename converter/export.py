"""Export a Keras face encoder to TFLite (full-integer int8, or fp32) with its JSON manifest.

Usage::

    python -m converter.export --int8 MODEL.keras [--calib DIR] [--out PATH] [--name NAME]
                               [--tau T --tau-far F] [--keep-prelu] [--no-bench]
    python -m converter.export --float MODEL.keras --out PATH

int8: ``TFLiteConverter.from_keras_model`` with a representative dataset of aligned faces
(``edge_verify.detect`` + ``edge_verify.align``), int8 input and output and
``TFLITE_BUILTINS_INT8`` only. Each PReLU is rewritten first (``converter.quantize.rewrite_prelu``)
so that XNNPACK takes the whole graph. Activation ranges are the median over calibration faces of
each face's min/max (``--ranges``; the calibrator's global min/max lost accuracy). The flatbuffer
is then inspected: the export fails if any float tensor remains. A validation report compares int8
and float encodings on held-out faces (LFW folds 2-10).

Default calibration: 400 images spread over LFW View 2 fold 1 (``--calib-lfw``), measured on SFace
(int8 vs float cosine on 225 faces of folds 2-10): min/max ranges 0.976, + Yale B 0.972, median
ranges 0.991; adding Extended Yale B faces (``--calib-yaleb``) lowered it.

Beside ``MODEL.keras`` the exporter reads, when present, ``MODEL.provenance.json`` (written by
``converter.import_onnx``) and ``MODEL.train.json`` (written by the trainer; becomes ``training``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converter import faces
from converter.errors import ConverterError
from converter.lfw import shared_dir
from edge_verify.models import sha256_file

log = logging.getLogger(__name__)

DEFAULT_TAU = 1.38
DEFAULT_TAU_FAR = 1e-3


class ExportError(ConverterError):
    """One-line export failure."""


@dataclass
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    report: dict[str, Any]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sidecar(model_path: Path, kind: str) -> Path:
    """``MODEL.<kind>.json`` beside ``MODEL.keras``."""
    return model_path.with_name(model_path.stem + f".{kind}.json")


def load_keras(path: Path) -> Any:
    """``converter.layers.load_encoder``, its failure as an ExportError."""
    from converter.layers import EncoderLoadError, load_encoder

    try:
        return load_encoder(path)
    except EncoderLoadError as exc:
        raise ExportError(str(exc)) from None


def fix_batch(model: Any) -> Any:
    """The model with batch size 1 (a free batch splits the XNNPACK delegate at Flatten)."""
    import keras

    if model.inputs[0].shape[0] == 1:
        return model
    if len(model.inputs) != 1:
        raise ExportError(f"expected one image input, the model has {len(model.inputs)}")
    inp = keras.Input(shape=tuple(model.inputs[0].shape[1:]), batch_size=1, name="image")
    try:  # the same layers (and weights) on a batch-1 input, flat so every PReLU stays visible
        return keras.models.clone_model(model, input_tensors=inp, clone_function=lambda layer: layer)
    except (ValueError, TypeError):
        return keras.Model(inp, model(inp), name=model.name)


def keras_embed(model: Any, crops: np.ndarray) -> np.ndarray:
    import keras

    out = [keras.ops.convert_to_numpy(model(crops[i:i + 1].astype(np.float32))) for i in range(len(crops))]
    return np.concatenate(out).astype(np.float32)


def rewrite_checked(model: Any) -> tuple[Any, int]:
    """``converter.quantize.rewrite_prelu`` of ``model`` (its error as an ExportError): (model, PReLUs rewritten)."""
    from converter.quantize import QuantizeError, rewrite_prelu

    try:
        return rewrite_prelu(model)
    except QuantizeError as exc:
        raise ExportError(str(exc)) from None


def rewrite_diff(conv_model: Any, crops: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference between the rewritten model's outputs on the first 8 ``crops`` and ``ref``
    (the original model's outputs, compared in ref's dtype); an ExportError above 1e-3."""
    d = float(np.abs(keras_embed(conv_model, crops[:8]).astype(ref.dtype) - ref[:8]).max())
    if d > 1e-3:
        raise ExportError(f"PReLU rewrite changed the float output by {d:.2g}")
    return d


def time_per_face(report: dict[str, Any], out: Path, float_content: bytes, crops: np.ndarray,
                  with_float: bool = True) -> None:
    """Record ms per face of ``out`` (and, with ``with_float``, of the fp32 model) at 1 and 2 threads in ``report``."""
    from converter.quantize import benchmark

    with tempfile.TemporaryDirectory() as tmp:
        fpath = Path(tmp) / "float.tflite"
        fpath.write_bytes(float_content)
        for threads in (1, 2):
            report[f"ms_per_face_{threads}t"] = round(benchmark(str(out), crops, threads), 2)
            if with_float:
                report[f"float_ms_per_face_{threads}t"] = round(benchmark(str(fpath), crops, threads), 2)


def convert(model: Any, calib: np.ndarray | None, range_mode: str = "minmax") -> bytes:
    """TFLite flatbuffer of ``model``: fp32 when ``calib`` is None, else full-integer int8.

    int8: the converter calibrates only; ``converter.quantize.activation_ranges`` may then
    replace the activation ranges (``range_mode``) before the MLIR quantizer writes the int8 model.
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    from converter.quantize import activation_ranges

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if calib is not None:
        def representative() -> Iterator[list[np.ndarray]]:
            for crop in calib:
                yield [crop.astype(np.float32)[None]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        conv._experimental_calibrate_only = True
    try:
        content = bytes(conv.convert())
        if calib is not None:
            content = activation_ranges(content, calib, range_mode)
            content = bytes(mlir_quantize(content, fully_quantize=True, input_data_type=tf.int8,
                                          output_data_type=tf.int8))
    except Exception as exc:  # the converter raises many types, with multi-line messages
        lines = [ln for ln in str(exc).splitlines() if "error" in ln.lower()] or str(exc).splitlines() or [repr(exc)]
        raise ExportError(f"TFLite conversion failed: {lines[0].strip()}") from None
    return content


def check_int8(content: bytes) -> Any:
    """Inspect the flatbuffer; raise ExportError if a float tensor or non-int8 in/out remains."""
    from converter.quantize import inspect_tflite

    rep = inspect_tflite(content)
    if rep.float_tensors:
        shown = ", ".join(rep.float_tensors[:3])
        raise ExportError(f"int8 export left {len(rep.float_tensors)} float tensor(s): {shown}"
                          f"{' ...' if len(rep.float_tensors) > 3 else ''}")
    if rep.input_dtype != "int8" or rep.output_dtype != "int8":
        raise ExportError(f"int8 export has {rep.input_dtype} input / {rep.output_dtype} output")
    return rep


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from edge_verify.match import l2_normalize

    return np.asarray((l2_normalize(a, axis=1) * l2_normalize(b, axis=1)).sum(axis=1))


def tflite_embed(content: bytes, crops: np.ndarray) -> np.ndarray:
    """L2-normalised encodings of ``crops`` by the flatbuffer ``content`` (run by the runtime's Embedder)."""
    from edge_verify.embed import Embedder

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(content)
        return Embedder(path, num_threads=1).embed_batch(crops)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: unreadable JSON: {exc}") from None
    return data if isinstance(data, dict) else None


def build_manifest(*, name: str, out: Path, content: bytes, dtype: str, report: Any, tau: float,
                   tau_far: float, tau_source: str, validation: dict[str, Any], calibration: dict[str, Any],
                   provenance: dict[str, Any], training: Any, normalization: str) -> dict[str, Any]:
    import tensorflow as tf

    from edge_verify import __version__ as ev_version

    in_q = {"scale": report.input_quant[0], "zero_point": report.input_quant[1]} if dtype == "int8" else None
    out_q = {"scale": report.output_quant[0], "zero_point": report.output_quant[1]} if dtype == "int8" else None
    return {
        "schema": 1,
        "name": name,
        "file": out.name,
        "sha256": sha256_bytes(content),
        "dtype": dtype,
        "size_bytes": len(content),
        "input": {
            "shape": report.input_shape,
            "color_order": "BGR",
            "pixel_range": [0, 255],
            "normalization": normalization,
            "alignment": "edge_verify.align.TEMPLATE_112, 5-point similarity",
            "quantization": in_q,
        },
        "output": {"embedding_size": int(report.output_shape[-1]), "l2_normalized": True, "quantization": out_q},
        "metric": "squared_l2",
        "tau": tau,
        "tau_far": tau_far,
        "tau_source": tau_source,
        "validation": validation,
        "calibration": calibration,
        "provenance": provenance,
        "training": training,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "tools": {"tensorflow": tf.__version__, "edge_verify": ev_version},
    }


def describe_normalization(model: Any) -> str:
    from converter.layers import PixelNormalize

    for layer in model.layers:
        if isinstance(layer, PixelNormalize):
            return f"(x - {layer.mean:g}) * {layer.scale:g}, inside the model"
    return "inside the model"


def export(model_path: Path, out: Path, *, int8: bool = True, calib_dir: Path | None = None,
           name: str | None = None, tau: float | None = None, tau_far: float | None = None,
           tau_source: str | None = None, rewrite: bool = True, bench: bool = True,
           lfw_calib: int = 400, yaleb_calib: int = 0, flip: bool = False,
           range_mode: str = "p50") -> ExportResult:
    """Convert, check, validate and write ``out`` plus its manifest; returns what was written."""
    from converter.quantize import delegate_partitions

    model = fix_batch(load_keras(model_path))
    if len(model.outputs) != 1:
        raise ExportError(f"{model_path}: {len(model.outputs)} outputs, an encoder has one "
                          "(a face detector is exported with --detector)")
    shared = shared_dir()
    report: dict[str, Any] = {}

    # held-out faces (LFW folds 2-10) for validation and timing
    val_paths = faces.default_validation_paths(shared) if (shared / "data" / "lfw").is_dir() else []
    val, _ = faces.aligned_crops(val_paths) if val_paths else (np.zeros((0, 112, 112, 3), np.uint8), [])
    ref = keras_embed(model, val) if len(val) else None

    conv_model = model
    if rewrite:
        conv_model, n = rewrite_checked(model)
        report["prelu_rewritten"] = n
        if n and len(val):
            report["rewrite_max_abs_diff"] = rewrite_diff(conv_model, val, ref)  # type: ignore[arg-type]

    float_content = convert(conv_model, None)
    calibration: dict[str, Any]
    if int8:
        if calib_dir is not None:
            paths = faces.image_files(calib_dir)
            sources = [str(calib_dir)]
            folds: list[int] = []
        else:
            paths = faces.default_calibration_paths(shared, lfw_calib, yaleb_calib)
            sources = [f"LFW View 2 fold 1 ({lfw_calib} images spread over the fold)"]
            if yaleb_calib:
                sources.append(f"Extended Yale B ({yaleb_calib} images spread over all subjects and lightings)")
            folds = [1]
        calib, _ = faces.aligned_crops(paths)
        if len(calib) == 0:
            raise ExportError(f"no calibration faces found ({len(paths)} images searched)")
        if flip:
            calib = np.concatenate([calib, calib[:, :, ::-1]])
            sources.append("each face also horizontally flipped")
        log.info("calibrating on %d faces", len(calib))
        content = convert(conv_model, calib, range_mode)
        rep = check_int8(content)
        sources.append({"minmax": "activation ranges: min/max over all faces (TFLite calibrator)",
                        "mean": "activation ranges: mean over faces of each face's min/max",
                        "p50": "activation ranges: median over faces of each face's min/max"}.get(
                            range_mode, f"activation ranges: {range_mode} percentile of per-face min/max"))
        calibration = {"faces": len(calib), "sources": sources}
    else:
        content = float_content
        from converter.quantize import inspect_tflite

        rep = inspect_tflite(content)
        calibration = {"faces": 0, "sources": []}
        folds = []

    validation: dict[str, Any] = {"cosine_mean": None, "cosine_min": None, "faces": len(val),
                                  "float_size_bytes": len(float_content)}
    if len(val):
        cos = cosine(tflite_embed(content, val), ref)  # type: ignore[arg-type]
        validation["cosine_mean"] = round(float(cos.mean()), 5)
        validation["cosine_min"] = round(float(cos.min()), 5)

    provenance = _read_json(sidecar(model_path, "provenance")) or {}
    training = _read_json(sidecar(model_path, "train"))
    if training and isinstance(training.get("provenance"), dict) and not provenance:
        provenance = dict(training["provenance"])
    if training:  # the folds a trainer saw count as used
        data = training.get("data") if isinstance(training.get("data"), dict) else {}
        seen = list(training.get("lfw_folds_used", [])) + list(data.get("lfw_folds_used", []))  # type: ignore[union-attr]
        folds = sorted(set(folds) | {int(f) for f in seen})
    provenance = {
        "source": provenance.get("source", model_path.name),
        "source_sha256": provenance.get("source_sha256", sha256_file(model_path)),
        "license": provenance.get("license", "unknown"),
        "authors": provenance.get("authors", "unknown"),
        "training_data": provenance.get("training_data", "unknown"),
        "lfw_folds_used": sorted(set(provenance.get("lfw_folds_used", [])) | set(folds)),
    }

    old = _read_json(out.with_suffix(".json")) or {}
    if tau is None:
        tau = float(old.get("tau", DEFAULT_TAU))
        tau_far = float(old.get("tau_far", DEFAULT_TAU_FAR)) if tau_far is None else tau_far
        tau_source = tau_source or str(old.get("tau_source", "provisional"))
    tau_far = DEFAULT_TAU_FAR if tau_far is None else tau_far
    tau_source = tau_source or "given on the command line"

    name = name or out.stem.replace("_", "-")
    manifest = build_manifest(
        name=name, out=out, content=content, dtype="int8" if int8 else "float32", report=rep, tau=tau,
        tau_far=tau_far, tau_source=tau_source, validation=validation, calibration=calibration,
        provenance=provenance, training=training, normalization=describe_normalization(model))
    if old.get("sha256") == manifest["sha256"]:  # the same model again: its calibrated points still hold
        manifest.update({k: old[k] for k in ("operating_points", "operating_points_source") if k in old})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(content)
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")

    report.update(ops=rep.op_counts, size_bytes=len(content), float_size_bytes=len(float_content),
                  validation=validation)
    parts, n_ops = delegate_partitions(str(out))
    report["xnnpack"] = {"partitions": parts, "ops": n_ops}
    if bench and len(val):
        time_per_face(report, out, float_content, val, with_float=int8)
    return ExportResult(out, manifest, report)


def print_report(res: ExportResult) -> None:
    r, m = res.report, res.manifest
    v = m["validation"]
    print(f"wrote {res.path} ({m['size_bytes']:,} bytes, {m['dtype']}) and {res.path.with_suffix('.json').name}")
    print(f"  sha256 {m['sha256']}")
    print(f"  fp32 size {r['float_size_bytes']:,} bytes")
    if m["input"]["quantization"]:
        print(f"  input quantization {m['input']['quantization']}, output {m['output']['quantization']}")
    if v["cosine_mean"] is not None:
        print(f"  {m['dtype']} vs float Keras cosine on {v['faces']} held-out faces (LFW folds 2-10): "
              f"mean {v['cosine_mean']:.4f}, min {v['cosine_min']:.4f}")
    if "prelu_rewritten" in r:
        print(f"  PReLU rewritten: {r['prelu_rewritten']} (float max abs diff {r.get('rewrite_max_abs_diff', 0):.2g})")
    if "xnnpack" in r:
        x = r["xnnpack"]
        print(f"  XNNPACK: {x['partitions']} delegate partition(s) over {x['ops']} ops")
    for t in (1, 2):
        if f"ms_per_face_{t}t" in r:
            extra = f" (fp32 {r[f'float_ms_per_face_{t}t']} ms)" if f"float_ms_per_face_{t}t" in r else ""
            print(f"  {t} thread(s): {r[f'ms_per_face_{t}t']} ms/face{extra}")
    print("  ops: " + ", ".join(f"{k} x{n}" for k, n in sorted(r["ops"].items())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m converter.export", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="Keras encoder (.keras)")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--int8", action="store_true", help="full-integer int8 export")
    kind.add_argument("--float", action="store_true", help="fp32 export (for comparison)")
    p.add_argument("--calib", type=Path, help="folder of face images for calibration (default: LFW fold 1 + Yale B)")
    p.add_argument("--out", type=Path, help="output .tflite (default: MODEL_int8.tflite / MODEL_fp32.tflite)")
    p.add_argument("--name", help="model name in the manifest (default: output stem with '-')")
    p.add_argument("--tau", type=float,
                   help=f"squared-L2 threshold (default: kept from an existing manifest, else {DEFAULT_TAU})")
    p.add_argument("--tau-far", type=float, help="the FAR tau was calibrated at")
    p.add_argument("--tau-source", help="how tau was chosen (default 'provisional')")
    p.add_argument("--keep-prelu", action="store_true",
                   help="int8: do not rewrite PReLU (splits the XNNPACK delegate); --float never rewrites")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped calibration faces")
    p.add_argument("--calib-lfw", type=int, default=400, help="LFW fold-1 images for the default calibration")
    p.add_argument("--calib-yaleb", type=int, default=0, help="Yale B images added to the default calibration")
    p.add_argument("--ranges",
                   help="activation ranges: p50 (the encoder default: median over faces of each face's min/max), "
                        "pNN (NN-th percentile; p99 is the liveness default), mean, or minmax (the TFLite "
                        "calibrator's; the detector default)")
    p.add_argument("--liveness-scale", type=float, metavar="SCALE",
                   help="the model is a liveness classifier (MiniFASNet) that sees the face box enlarged "
                        "SCALE times: calibrate, validate and describe it as one (converter.export_liveness)")
    p.add_argument("--no-bench", action="store_true", help="skip the ms/face measurement")
    p.add_argument("--detector", action="store_true",
                   help="the model is an imported YuNet face detector (see converter.export_detector)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not args.model.is_file():
        print(f"error: model not found: {args.model}", file=sys.stderr)
        return 1
    out = args.out or args.model.with_name(args.model.stem + ("_int8.tflite" if args.int8 else "_fp32.tflite"))
    if args.detector:
        return _main_detector(args, out)
    if args.liveness_scale is not None:
        return _main_liveness(args, out)
    try:
        res = export(args.model, out, int8=args.int8, calib_dir=args.calib, name=args.name, tau=args.tau,
                     tau_far=args.tau_far, tau_source=args.tau_source, rewrite=args.int8 and not args.keep_prelu,
                     bench=not args.no_bench, lfw_calib=args.calib_lfw, yaleb_calib=args.calib_yaleb,
                     flip=args.flip, range_mode=args.ranges or "p50")
    except ConverterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print_report(res)
    return 0


def _main_detector(args: argparse.Namespace, out: Path) -> int:
    from converter.export_detector import export_detector
    from converter.export_detector import print_report as print_detector_report

    try:
        res = export_detector(args.model, out, int8=args.int8, name=args.name, bench=not args.no_bench,
                              range_mode=args.ranges or "minmax")
    except ConverterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print_detector_report(res)
    return 0


def _main_liveness(args: argparse.Namespace, out: Path) -> int:
    from converter import export_liveness as el

    if not args.int8:
        print("error: --liveness-scale needs --int8", file=sys.stderr)
        return 2
    try:
        res = el.export_liveness(args.model, out, args.liveness_scale, name=args.name,
                                 range_mode=args.ranges or el.DEFAULT_RANGES, bench=not args.no_bench)
    except ConverterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    el.print_report(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
