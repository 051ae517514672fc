"""Facts about the models that do not depend on the CPU: multiply-accumulates (MACs) per inference,
weights, activation memory (all activation tensors, and the peak of those alive at once, which bounds
the interpreter's tensor arena from below), and the peak RSS each stage adds in a fresh process.

    python -m bench.model_facts [--name model_facts] [--model extra.tflite ...]

MACs are counted from the TFLite graph (no delegate): CONV_2D H*W*Cout*kh*kw*Cin, DEPTHWISE_CONV_2D
H*W*C*kh*kw, FULLY_CONNECTED out*in; other ops are counted as elements written. The detector is
counted at the sizes it runs at (padded to a multiple of 32). Runs on a Pi as well (no TensorFlow).
Results: a table on stdout and bench/results/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the RSS worker measures the runtime's imports itself: nothing of it is imported here
    from edge_verify.detect import DetectorBackend

DETECTOR_SIZES = ((320, 192), (320, 256), (640, 480))  # padded (w, h): lores 320x180, 320x240, 640x480
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _interpreter(path: Path, size: tuple[int, int] | None) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        interp = Interpreter(model_path=str(path),
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except ImportError:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]

        interp = Interpreter(model_path=str(path))
    if size is not None:
        w, h = size
        interp.resize_tensor_input(interp.get_input_details()[0]["index"], [1, h, w, 3])
    interp.allocate_tensors()
    return interp


def graph_facts(path: Path, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """MACs, op counts and activation bytes of one ``.tflite`` (at ``size`` (w, h) if resizable)."""
    interp = _interpreter(path, size)
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the op list with tensor indices (used by converter.quantize too)

    def shape(i: int) -> tuple[int, ...]:
        return tuple(int(v) for v in tensors[i]["shape"])

    def nbytes(i: int) -> int:
        return int(np.prod(shape(i))) * np.dtype(tensors[i]["dtype"]).itemsize

    macs = 0
    elements = 0
    counts: dict[str, int] = {}
    produced: dict[int, int] = {}
    last_use: dict[int, int] = {}
    inputs = [int(d["index"]) for d in interp.get_input_details()]
    outputs = {int(d["index"]) for d in interp.get_output_details()}
    for k, op in enumerate(ops):
        name = str(op["op_name"])
        counts[name] = counts.get(name, 0) + 1
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        out = shape(int(op["outputs"][0]))
        if name == "CONV_2D":
            cout, kh, kw, cin = shape(ins[1])
            macs += int(np.prod(out[:-1])) * cout * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":
            _, kh, kw, _ = shape(ins[1])
            macs += int(np.prod(out)) * kh * kw
        elif name == "FULLY_CONNECTED":
            units, depth = shape(ins[1])
            macs += int(np.prod(out[:-1])) * units * depth
        else:
            elements += int(np.prod(out))
        for i in ins:
            last_use[i] = k
        for o in op["outputs"]:
            produced[int(o)] = k
    activations = set(produced) | set(inputs)
    live_peak = 0
    for k in range(len(ops)):
        live = [t for t in activations
                if produced.get(t, -1) <= k and (last_use.get(t, -1) >= k or t in outputs)]
        live_peak = max(live_peak, sum(nbytes(t) for t in live))
    in_shape = [int(v) for v in interp.get_input_details()[0]["shape"]]
    return {
        "model": path.name, "input": in_shape, "macs": macs, "gmacs": round(macs / 1e9, 4),
        "other_op_elements": elements, "ops": len(ops), "op_counts": counts,
        "file_bytes": path.stat().st_size,
        "activation_bytes_total": sum(nbytes(t) for t in activations),
        "activation_bytes_peak_live": live_peak,
    }


# ------------------------------------------------------------------------ peak RSS per stage (worker)

def _vm() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MiB."""
    from bench.run import proc_status_kib

    fields = proc_status_kib()
    return round(fields["VmRSS"] / 1024.0, 1), round(fields["VmHWM"] / 1024.0, 1)


def rss_worker(threads: int, backend: DetectorBackend) -> dict[str, Any]:
    """Load and run each stage in turn in this (fresh) process; the peak RSS after each."""
    stages: list[dict[str, Any]] = []

    def mark(stage: str, t0: float) -> None:
        rss, hwm = _vm()
        stages.append({"stage": stage, "rss_mib": rss, "peak_rss_mib": hwm,
                       "ms": round((time.perf_counter() - t0) * 1000, 1)})

    t0 = time.perf_counter()
    mark("python + numpy", t0)
    t0 = time.perf_counter()
    import cv2

    import edge_verify.pipeline  # noqa: F401  (imported for the memory it takes)

    mark("import edge_verify (cv2, LiteRT)", t0)
    from edge_verify.align import align_face
    from edge_verify.detect import FaceDetector
    from edge_verify.embed import Embedder
    from edge_verify.imageio import read_image
    from edge_verify.models import resolve_encoder

    photo = read_image(Path(__file__).resolve().parent.parent / "edge_verify" / "samples" / "jennifer_garner_0001.jpg")
    frame = np.full((720, 1280, 3), 110, np.uint8)
    frame[200:200 + 3 * photo.shape[0], 500:500 + 3 * photo.shape[1]] = cv2.resize(photo, None, fx=3, fy=3)
    lores = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA)
    mark("a 1280x720 frame and its 640x360 lores", time.perf_counter())
    t0 = time.perf_counter()
    det = FaceDetector(max_side=320, pad_retry=False, num_threads=threads, backend=backend)
    mark(f"detector loaded ({det.runner})", t0)
    t0 = time.perf_counter()
    faces = det.detect(lores)
    mark("first detection (640x360 lores at 320)", t0)
    t0 = time.perf_counter()
    enc = Embedder(resolve_encoder().model_path, num_threads=threads)
    mark("encoder loaded (sface-int8)", t0)
    crop = align_face(frame, faces[0].scaled(2.0).landmarks) if faces else np.zeros((112, 112, 3), np.uint8)
    t0 = time.perf_counter()
    enc.embed(crop)
    mark("first encoding", t0)
    return {"threads": threads, "backend": backend, "faces_found": len(faces), "stages": stages}


def format_table(res: dict[str, Any]) -> str:
    lines = ["model facts (MACs per inference; activation memory: all tensors / peak alive at once):"]
    for g in res["graphs"]:
        size = "x".join(str(v) for v in g["input"][1:3])
        act, peak = g["activation_bytes_total"] / 2**20, g["activation_bytes_peak_live"] / 2**20
        lines.append(f"  {g['model']:<22} input {size:>8}  {g['gmacs'] * 1000:8.1f} M MACs  {g['ops']:>4} ops  "
                     f"weights file {g['file_bytes'] / 1e6:6.2f} MB  activations {act:6.2f} / {peak:5.2f} MiB")
    for rss in res.get("rss", []):
        if "stages" not in rss:
            lines.append(f"peak RSS: {rss}")
            continue
        lines.append(f"peak RSS per stage, fresh process, {rss['backend']} detector, {rss['threads']} threads "
                     "(MiB; delta to the previous stage):")
        prev = 0.0
        for s in rss["stages"]:
            if "peak_rss_mib" not in s:
                lines.append(f"  {s['stage']:<48} {s.get('note', '')}")
                continue
            delta = s["peak_rss_mib"] - prev
            lines.append(f"  {s['stage']:<48} {s['peak_rss_mib']:7.1f}  (+{delta:5.1f})  {s['ms']:7.1f} ms")
            prev = s["peak_rss_mib"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.run import result_args

    p = argparse.ArgumentParser(prog="python -m bench.model_facts", description=__doc__.split("\n\n")[0])
    result_args(p, "model_facts")
    p.add_argument("--model", type=Path, action="append", default=[], help="another .tflite to count")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(rss_worker(args.threads, args.worker)))
        return 0
    from bench.run import write_result
    from edge_verify.models import resolve_detector, resolve_encoder

    graphs = [graph_facts(resolve_detector().model_path, s) for s in DETECTOR_SIZES]
    graphs.append(graph_facts(resolve_encoder().model_path))
    graphs += [graph_facts(m) for m in args.model]
    rss = []
    for backend in ("litert", "opencv"):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.model_facts", "--worker", backend, "--threads", str(args.threads)],
            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
        ok = proc.returncode == 0 and proc.stdout.strip()
        rss.append(json.loads(proc.stdout.strip().splitlines()[-1]) if ok else {"error": proc.stderr[-300:]})
    res = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "graphs": graphs, "rss": rss}
    write_result(res, args.out, args.name, format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
