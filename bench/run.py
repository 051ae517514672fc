"""Benchmarks: per-stage latency on 640x480 frames, int8 vs fp32, peers side by side, 1:N matching,
peak memory and start-up time.

    python -m bench.run [--name NAME] [--threads 2] [--repeat 5] [--accuracy] [--pipelines ...]

Each pipeline runs in its own subprocess (so its peak RSS is its own) with the same thread count
(interpreter threads, cv2.setNumThreads, OMP/OpenBLAS threads). Frames are LFW photos placed on a
640x480 canvas at three scales and positions. Results: a table on stdout and bench/results/NAME.json.
Goals checked: the product's per-frame time <= 0.5x OpenCV's YuNet + SFace pipeline detecting at the
same resolution (``opencv320``; ``opencv`` detects at 640 as OpenCV's samples do), and 1:N over 100k
templates <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converter.lfw import parse_folds, shared_dir

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DEFAULT_MODEL = REPO / "edge_verify" / "models" / "sface_int8.tflite"
DEFAULT_FP32 = REPO / "build" / "sface_fp32.tflite"  # `make bench` builds it there
PIPELINES = ("product", "fp32", "opencv", "opencv320", "dlib")
WORKERS = (*PIPELINES, "match")
STAGES = ("detect", "align", "embed", "match", "total")
GOAL_FRAME_RATIO = 0.5
GOAL_1N_MS = 5.0
MATCH_GALLERY = 1000  # templates in the gallery of the per-frame match stage


def stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    return {
        "median": round(float(np.median(a)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "n": int(a.size),
    }


def proc_status_kib(pid: int | str = "self") -> dict[str, int]:
    """VmHWM and VmRSS (kB) of a process from /proc/PID/status, in the file's order."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def write_result(res: dict[str, Any], out_dir: Path, name: str, table: str) -> Path:
    """Print ``table`` and write ``res`` as OUT_DIR/NAME.json (the bench modules' result files)."""
    print(table)
    out = out_dir / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return out


def result_args(p: argparse.ArgumentParser, name: str) -> None:
    """--name, --out and --threads, as every bench module takes them."""
    p.add_argument("--name", default=name, help=f"result name: bench/results/NAME.json (default {name})")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")


def rss_mib(kib: int) -> float:
    return round(kib / 1024.0, 1)  # ru_maxrss is in KiB on Linux


# ------------------------------------------------------------------------------ worker (one pipeline)


def worker(args: argparse.Namespace) -> int:
    import cv2

    from bench import pipelines as pl

    cv2.setNumThreads(args.threads)
    frames = list(np.load(args.frames)["frames"])
    t0 = time.perf_counter()
    gallery = pl.Gallery(MATCH_GALLERY)
    pipe: Any
    if args.worker in ("product", "fp32"):
        pipe = pl.ProductPipeline(Path(args.model), args.threads, gallery, args.worker, args.max_side)
    elif args.worker in ("opencv", "opencv320"):
        max_side = pl.DETECT_MAX_SIDE if args.worker == "opencv320" else None
        pipe = pl.OpenCVPipeline(shared_dir() / "models", args.threads, gallery, max_side)
    else:
        pipe = pl.DlibPipeline(args.threads, gallery)
    load_s = time.perf_counter() - t0
    for frame in frames[:3]:
        pipe.run_frame(frame)  # warm-up
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    found = 0
    for r in range(args.repeat):
        for frame in frames:
            stages, emb = pipe.run_frame(frame)
            found += int(emb is not None) if r == 0 else 0
            for k, v in stages.items():
                times[k].append(v)
            times["total"].append(sum(stages.values()))
    out: dict[str, Any] = {
        "pipeline": args.worker,
        "runner": pipe.runner,
        "threads": args.threads,
        "load_s": round(load_s, 3),
        "frames": len(frames),
        "repeat": args.repeat,
        "faces_found": found,
        "ms": {k: stats(v) for k, v in times.items() if v},
    }
    if args.accuracy:
        from converter.evaluate import evaluate, read_lfw_pairs

        pairs = read_lfw_pairs(shared_dir() / "data" / "lfw", args.accuracy_folds)
        report, _ = evaluate(pipe.accuracy_pipeline(), pairs, 1e-3, progress=True)
        keep = ("accuracy", "best_threshold", "tar_at_far", "eer", "auc", "detection", "pairs", "seconds")
        out["lfw"] = {k: report[k] for k in keep if k in report}
    out["peak_rss_mib"] = peak_rss_self()
    print(json.dumps(out))
    return 0


# ------------------------------------------------------------------------------ parent


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_worker(name: str, args: argparse.Namespace, frames: Path, model: Path | None) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "bench.run",
        "--worker",
        name,
        "--frames",
        str(frames),
        "--threads",
        str(args.threads),
        "--repeat",
        str(args.repeat),
    ]
    if model is not None:
        cmd += ["--model", str(model)]
    if args.max_side:
        cmd += ["--max-side", str(args.max_side)]
    if args.accuracy:
        cmd += ["--accuracy"] + (
            ["--accuracy-folds", args.accuracy_folds_text] if args.accuracy_folds_text else []
        )
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env=thread_env(args.threads), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"pipeline": name, "error": f"worker exited {proc.returncode}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def bench_1n(sizes: Sequence[int], threads: int, runs: int = 50) -> list[dict[str, Any]]:
    """Time one query against N templates: cached float matrix (what the gallery serves) and int8
    templates dequantised for each query; identical decisions are checked."""
    from bench.pipelines import Gallery
    from edge_verify.match import l2_normalize

    rng = np.random.default_rng(1)
    out = []
    for n in sizes:
        g = Gallery(n)
        queries = l2_normalize(rng.standard_normal((runs, 128)).astype(np.float32))
        row: dict[str, Any] = {
            "templates": n,
            "blas_threads": threads,
            "people": g.people,
            "gallery_mib": {
                "int8": round(g.int8.nbytes / 2**20, 2),
                "float32": round(g.cached.nbytes / 2**20, 2),
            },
        }
        for label, fn in (("float32_cached", g.match), ("int8_dequantised", g.match_int8)):
            fn(queries[0])
            times = []
            for q in queries:
                t0 = time.perf_counter()
                fn(q)
                times.append((time.perf_counter() - t0) * 1000.0)
            row[label] = stats(times)
        # float32 templates never quantised, as a reference for the int8 storage's effect on ranking
        agree = np.mean([np.argmin(g.match(q)) == np.argmin(g.match(q, g.float32)) for q in queries[:10]])
        row["top1_agreement_int8_vs_float"] = float(agree)
        out.append(row)
    return out


PEAK_WRAPPER = """
import atexit, runpy, sys
def _peak():
    try:
        with open("/proc/self/status") as f:
            kib = [line.split()[1] for line in f if line.startswith("VmHWM:")][0]
        sys.stderr.write("VmHWM_KIB " + kib + "\\n")
    except (OSError, IndexError):
        pass
atexit.register(_peak)
target = sys.argv[1]
sys.argv = sys.argv[1:]
if target.endswith(".py"):
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def peak_rss_self() -> float:
    """This process's peak RSS in MiB: VmHWM (reset by exec, unlike ru_maxrss), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return rss_mib(int(line.split()[1]))
    except OSError:
        pass
    return rss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run_measured(target: str, args: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS MiB, exit code, stdout) of ``python -m target args`` (or a .py file).

    The child reports its own VmHWM at exit: ``ru_maxrss`` from wait4 would include the parent's
    memory at fork time.
    """
    cmd = [sys.executable, "-c", PEAK_WRAPPER, target, *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("VmHWM_KIB ")]
    return wall, rss_mib(int(peak[-1])) if peak else float("nan"), proc.returncode, proc.stdout


API_SNIPPET = """
import sys, time, json
t0 = time.perf_counter()
from edge_verify.pipeline import FaceVerifier
fv = FaceVerifier(model=sys.argv[4], state_dir=sys.argv[2], num_threads=int(sys.argv[3]))
faces = fv.embed(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t0, "faces": len(faces)}))
"""


def bench_startup(image: Path, model: Path, threads: int, runs: int = 3) -> dict[str, Any]:
    env = thread_env(threads)
    out: dict[str, Any] = {"image": image.name}
    with tempfile.TemporaryDirectory() as state:
        cli = ["embed", "--json", str(image), "--state-dir", state, "--model", str(model)]
        cli += ["--threads", str(threads)]
        walls, rss = [], []
        for _ in range(runs):
            wall, peak, rc, stdout = run_measured("edge_verify.cli", cli, env)
            if rc != 0 or '"bbox"' not in stdout:
                out["cli"] = {"error": f"exit {rc}, output {stdout.strip()[:200]!r}"}
                break
            walls.append(wall * 1000)
            rss.append(peak)
        else:
            out["cli"] = {
                "command": "python -m edge_verify.cli embed --json IMG",
                "ms": stats(walls),
                "peak_rss_mib": max(rss),
            }
        script = Path(state) / "first_result.py"
        script.write_text(API_SNIPPET)
        walls, inner, rss = [], [], []
        for _ in range(runs):
            wall, peak, rc, stdout = run_measured(
                str(script), [str(image), state, str(threads), str(model)], env
            )
            if rc != 0:
                out["api"] = {"error": f"exit {rc}"}
                break
            walls.append(wall * 1000)
            rss.append(peak)
            inner.append(json.loads(stdout.strip().splitlines()[-1])["seconds"] * 1000)
        else:
            out["api"] = {
                "what": "import + FaceVerifier() + first embed (in process)",
                "ms": stats(inner),
                "process_ms": stats(walls),
                "peak_rss_mib": max(rss),
            }
    return out


def machine() -> dict[str, Any]:
    import cv2

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
    for mod in ("ai_edge_litert", "dlib"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_avg_at_start": [round(v, 2) for v in os.getloadavg()],
        "versions": versions,
    }


def fmt_ms(s: dict[str, float] | None) -> str:
    return "-" if not s else f"{s['median']:.1f} / {s['p95']:.1f}"


def format_table(res: dict[str, Any]) -> str:
    lines = [
        f"edge-verify bench '{res['name']}' on {res['machine']['cpu']} ({res['machine']['cpus']} cpus), "
        f"{res['threads']} threads each, {res['frames']['count']} frames 640x480 x {res['repeat']} runs",
        "per frame, ms median / p95:",
        f"{'pipeline':<9} {'runner':<44} "
        + " ".join(f"{s:>13}" for s in STAGES)
        + f" {'RSS MiB':>8}"
        + f" {'faces':>6}",
    ]
    for p in res["pipelines"]:
        if "error" in p:
            lines.append(f"{p['pipeline']:<9} {p['error']}")
            continue
        lines.append(
            f"{p['pipeline']:<9} {p['runner'][:44]:<44} "
            + " ".join(f"{fmt_ms(p['ms'].get(s)):>13}" for s in STAGES)
            + f" {p['peak_rss_mib']:>8.0f} {p['faces_found']:>3}/{p['frames']}"
        )
    acc = [p for p in res["pipelines"] if "lfw" in p]
    if acc:
        lines.append("LFW (threshold from the other folds; TAR at FAR 1e-3; EER; AUC):")
        for p in acc:
            lfw = p["lfw"]
            a = lfw.get("accuracy")
            acc_text = (
                f"{100 * a['mean']:.2f} ± {100 * a['std']:.2f} %"
                if a
                else f"{100 * lfw['best_threshold']['accuracy']:.2f} % (one fold: best threshold)"
            )
            lines.append(
                f"  {p['pipeline']:<9} {acc_text}"
                f"  TAR {100 * lfw['tar_at_far']['0.001']['tar']:.2f} %  EER {100 * lfw['eer']['rate']:.2f} %"
                f"  AUC {lfw['auc']:.5f}  no face: {lfw['detection']['no_face']}"
            )
    lines.append(
        "1:N match, one query, ms median / p95 (float32 = the gallery's cached matrix; int8 = "
        "dequantised per query):"
    )
    for row in res["one_to_n"]:
        lines.append(
            f"  {row['templates']:>7} templates, {row['blas_threads']} BLAS thr: "
            f"float32 {fmt_ms(row['float32_cached']):>13}   "
            f"int8 {fmt_ms(row['int8_dequantised']):>13}   "
            f"({row['gallery_mib']['int8']} MiB int8, {row['gallery_mib']['float32']} MiB float32)"
        )
    st = res.get("startup", {})
    if st:
        cli, api = st.get("cli", {}), st.get("api", {})
        lines.append(
            "start-up to first result, ms median / p95: "
            + (
                f"CLI process {fmt_ms(cli.get('ms'))} (peak RSS {cli.get('peak_rss_mib')} MiB)"
                if "ms" in cli
                else f"CLI {cli.get('error')}"
            )
            + (
                "; " + f"API in process {fmt_ms(api.get('ms'))}"
                if "ms" in api
                else f"; API {api.get('error')}"
            )
        )
    if res.get("liveness"):
        from bench.liveness import format_line

        lines.append(format_line(res["liveness"]))
    for goal in res["goals"]:
        lines.append(f"goal: {goal['goal']}: {goal['measured']} -> {goal['verdict']}")
    return "\n".join(lines)


def goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    by = {p["pipeline"]: p for p in res["pipelines"] if "error" not in p}
    out = []
    # the goal is against OpenCV detecting at the product's resolution (equal work); the ratio to
    # OpenCV detecting at 640 (as its samples do) is reported beside it, not judged
    for peer, what in (("opencv320", "at equal detection resolution (320 px)"), ("opencv", "detecting at 640")):
        if "product" not in by or peer not in by:
            continue
        ours, theirs = by["product"]["ms"]["total"]["median"], by[peer]["ms"]["total"]["median"]
        ratio = ours / theirs
        verdict = ("PASS" if ratio <= GOAL_FRAME_RATIO else "FAIL") if peer == "opencv320" else "reference"
        out.append(
            {
                "goal": f"per frame <= {GOAL_FRAME_RATIO}x OpenCV YuNet+SFace {what}",
                "measured": f"{ours:.1f} ms vs {theirs:.1f} ms = {ratio:.2f}x",
                "verdict": verdict,
            }
        )
    big = [r for r in res["one_to_n"] if r["templates"] == 100_000]
    if big:
        best = min(big, key=lambda r: r["float32_cached"]["median"])
        ms = best["float32_cached"]["median"]
        out.append(
            {
                "goal": f"1:N over 100k templates <= {GOAL_1N_MS} ms",
                "measured": f"{ms:.2f} ms median ({best['blas_threads']} BLAS threads)",
                "verdict": "PASS" if ms <= GOAL_1N_MS else "FAIL",
            }
        )
    if res.get("liveness"):
        from bench.liveness import goals as liveness_goals

        out += liveness_goals(res["liveness"])
    return out


def parent(args: argparse.Namespace) -> int:
    from bench.frames import make_frames, pick_images
    from bench.pipelines import dlib_available
    from edge_verify.imageio import read_image

    lfw = shared_dir() / "data" / "lfw" / "images"
    photos = pick_images(lfw, args.photos, args.seed)
    frames = make_frames([read_image(p) for p in photos], args.seed)
    res: dict[str, Any] = {
        "name": args.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "threads": args.threads,
        "repeat": args.repeat,
        "frames": {"count": len(frames), "size": [640, 480], "photos": [p.name for p in photos]},
        "pipelines": [],
    }
    wanted = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = Path(tmp) / "frames.npz"
        np.savez(frames_file, frames=np.stack(frames))
        for name in wanted:
            if name == "product":
                model = args.model
                if not model.is_file():
                    res["pipelines"].append({"pipeline": name, "error": f"model not found: {model}"})
                    continue
            elif name == "fp32":
                model = args.fp32
                if not model.is_file():
                    res["pipelines"].append({"pipeline": name, "error": f"fp32 model not found: {model}"})
                    continue
            elif name == "dlib":
                why = dlib_available()
                if why:
                    res["pipelines"].append({"pipeline": name, "error": why})
                    continue
                model = None
            elif name in ("opencv", "opencv320"):
                model = None
            else:
                print(
                    f"error: unknown pipeline {name!r} (choose from {', '.join(PIPELINES)})", file=sys.stderr
                )
                return 2
            res["pipelines"].append(run_worker(name, args, frames_file, model))
    print("bench: 1:N ...", file=sys.stderr, flush=True)
    res["one_to_n"] = []
    for threads in sorted({1, args.threads}):  # BLAS threads are fixed at numpy import: one process each
        cmd = [sys.executable, "-m", "bench.run", "--worker", "match", "--threads", str(threads)]
        cmd += ["--sizes", ",".join(str(n) for n in args.sizes)]
        proc = subprocess.run(cmd, cwd=REPO, env=thread_env(threads), stdout=subprocess.PIPE, text=True)
        if proc.returncode == 0:
            res["one_to_n"] += json.loads(proc.stdout.strip().splitlines()[-1])
    if "product" in wanted:  # the liveness column: bench/liveness.py
        from bench import liveness

        print("bench: liveness ...", file=sys.stderr, flush=True)
        res["liveness"] = liveness.measure(frames, args.threads, args.repeat)
    if args.model.is_file() and not args.no_startup:
        print("bench: start-up ...", file=sys.stderr, flush=True)
        res["startup"] = bench_startup(photos[0], args.model, args.threads)
    res["goals"] = goals(res)
    write_result(res, args.out, args.name, format_table(res))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default=platform.node() or "local", help="result name: bench/results/NAME.json")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    p.add_argument("--threads", type=int, default=2, help="threads for every pipeline (default 2)")
    p.add_argument("--repeat", type=int, default=5, help="passes over the frames (default 5)")
    p.add_argument("--photos", type=int, default=8, help="LFW photos, 3 frames each (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the product's encoder (.tflite)")
    p.add_argument("--fp32", type=Path, default=DEFAULT_FP32, help="fp32 encoder to compare (.tflite)")
    p.add_argument("--pipelines", default=",".join(PIPELINES), help="comma list of " + ", ".join(PIPELINES))
    p.add_argument(
        "--sizes",
        type=lambda s: [int(v) for v in s.split(",")],
        default=[1000, 10_000, 100_000],
        help="1:N gallery sizes (default 1000,10000,100000)",
    )
    p.add_argument("--accuracy", action="store_true", help="also LFW accuracy of each pipeline (slow)")
    p.add_argument("--accuracy-folds", dest="accuracy_folds_text", help="LFW folds for --accuracy, e.g. 1-3")
    p.add_argument(
        "--max-side",
        type=int,
        help="the product detector's max_side (default 320, the daemon's quality.detect_max_side)",
    )
    p.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    p.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    p.add_argument("--frames", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.accuracy_folds = parse_folds(args.accuracy_folds_text) if args.accuracy_folds_text else None
    if args.worker == "match":
        print(json.dumps(bench_1n(args.sizes, args.threads)))
        return 0
    if args.worker:
        return worker(args)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
