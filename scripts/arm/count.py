"""Instructions per stage (detect, align, int8 and fp32 encoder) on aarch64 and x86, and Pi fps estimates.

    python scripts/arm/count.py --rootfs ROOTFS --venv /opt/edge-verify --fp32 build/sface_fp32.tflite \
        --json bench/results/arm-instructions.json

aarch64: ``scripts/arm/stages.py`` in the emulated Debian arm64 under Debian's plugin-capable
``qemu-aarch64`` (package qemu-user) with our own TCG plugin ``insn_count.c``, once per CPU model: Cortex-A72
(Raspberry Pi 4: Armv8.0, no dot product) and Cortex-A76 (Pi 5: Armv8.2 with dot product), since XNNPACK
picks its kernels from the CPU features. x86_64: the same script under ``valgrind --tool=callgrind`` with a
profile dumped at each marker (valgrind shows no AVX-512 to its guest: AVX2 kernels are counted).

Counts are instructions, not time: the fps figures divide a clock rate times an assumed IPC by them, and
stay estimates until a Pi measures them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = Path(os.environ.get("EDGE_VERIFY_SHARED", REPO.parent / "shared")).resolve()
STAGES = ("detect", "detect_opencv", "align", "embed_int8", "embed_fp32")
CPUS = {"cortex-a72": "Raspberry Pi 4", "cortex-a76": "Raspberry Pi 5"}
# Single-core clock and the IPC assumed for this NEON-heavy inference code (low, central, high). Published
# sustained IPC of the A72 on integer and SIMD loads is ~1-1.5 and of the A76 ~1.5-2.5; multiply-accumulate
# throughput differs between the two (the A72 issues integer SIMD multiplies on one pipe only), so the
# ranges are wide on purpose.
CLOCK_HZ = {"cortex-a72": 1.8e9, "cortex-a76": 2.4e9}
IPC = {"cortex-a72": (0.8, 1.1, 1.5), "cortex-a76": (1.2, 1.8, 2.5)}


def per_stage(counts: list[int], reps: int) -> dict[str, int]:
    """``counts``: instructions between consecutive markers, the first being start-up (not a stage)."""
    if len(counts) != len(STAGES) + 1:
        raise RuntimeError(f"expected {len(STAGES) + 1} marker counts, got {len(counts)}")
    return {name: round(c / reps) for name, c in zip(STAGES, counts[1:], strict=True)}


def run_aarch64(cpu: str, rootfs: Path, venv: str, plugin: Path, fp32: Path, reps: int, work: Path) -> dict:
    out, info = work / f"{cpu}.txt", work / f"{cpu}.json"
    python = f"{venv}/bin/python"
    cmd = ["qemu-aarch64", "-cpu", cpu, "-L", str(rootfs), "-0", python, "-plugin", f"{plugin},out={out}",
           str(rootfs / "usr/bin/python3.11"), str(HERE / "stages.py"), "--fp32", str(fp32.resolve()),
           "--shared", str(SHARED), "--reps", str(reps), "--json", str(info)]
    # an Arm /proc/cpuinfo for this CPU model (qemu 7.2 shows the host's; LiteRT >= 2.2 crashes on it), bound
    # over the rootfs's in a private mount namespace; qemu -L finds it there before the host's
    cpuinfo = subprocess.run([str(HERE / "rootfs.sh"), "--cpuinfo", cpu], check=True, capture_output=True,
                             text=True).stdout.strip()
    cmd = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
           'mount --bind "$1" "$2/proc/cpuinfo" && shift 2 && exec "$@"', "sh", cpuinfo, str(rootfs), *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_"))}
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd="/", env=env)  # "/": no host package first
    counts = [int(line.split()[1]) for line in out.read_text().splitlines() if not line.startswith("total")]
    return {"cpu": cpu, "board": CPUS[cpu], "per_stage": per_stage(counts, reps),
            "run": json.loads(info.read_text()), "wall_s": round(time.monotonic() - t0, 1)}


def run_x86(fp32: Path, reps: int, work: Path) -> dict:
    info = work / "x86.json"
    cmd = ["valgrind", "--tool=callgrind", "--dump-before=getpgid", f"--callgrind-out-file={work}/cg.out",
           sys.executable, str(HERE / "stages.py"), "--fp32", str(fp32.resolve()), "--shared", str(SHARED),
           "--reps", str(reps), "--json", str(info)]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dumps = sorted(work.glob("cg.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    counts = []
    for d in dumps[: len(STAGES) + 1]:
        m = re.search(r"^(?:totals|summary): (\d+)", d.read_text(errors="replace"), re.M)
        if not m:
            raise RuntimeError(f"{d}: no instruction total")
        counts.append(int(m.group(1)))
    return {"cpu": "x86_64 (callgrind, AVX2 kernels)", "per_stage": per_stage(counts, reps),
            "run": json.loads(info.read_text()), "wall_s": round(time.monotonic() - t0, 1)}


def estimates(arm: dict) -> dict:
    cpu, s = arm["cpu"], arm["per_stage"]
    out = {}
    for enc in ("int8", "fp32"):
        frame = s["detect"] + s["align"] + s[f"embed_{enc}"]
        lo, mid, hi = (CLOCK_HZ[cpu] * ipc / frame for ipc in IPC[cpu])
        out[enc] = {"instructions_per_frame": frame, "fps_one_core": [round(lo, 1), round(mid, 1), round(hi, 1)],
                    "ms_per_frame_one_core": [round(1000 / hi, 1), round(1000 / mid, 1), round(1000 / lo, 1)]}
    return out


def table(report: dict) -> str:
    rows = ["| stage | " + " | ".join(r["cpu"] for r in report["runs"]) + " |",
            "|---|" + "---|" * len(report["runs"])]
    for name in STAGES:
        rows.append(f"| {name} | " + " | ".join(f"{r['per_stage'][name] / 1e6:.1f} M" for r in report["runs"]) + " |")
    rows.append("| int8 gain (fp32 / int8 encoder instructions) | "
                + " | ".join(f"{r['int8_gain']:.2f}x" for r in report["runs"]) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs", type=Path, required=True)
    ap.add_argument("--venv", default="/opt/edge-verify", help="the venv's path inside the rootfs")
    ap.add_argument("--plugin", type=Path, default=REPO / "build" / "arm" / "libinsn_count.so")
    ap.add_argument("--fp32", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--cpus", default=",".join(CPUS))
    ap.add_argument("--no-x86", action="store_true", help="skip the callgrind run")
    ap.add_argument("--x86-from", type=Path, help="take the x86 run from this earlier report instead of callgrind")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    runs = []
    with tempfile.TemporaryDirectory(prefix="arm-count-") as tmp:
        work = Path(tmp)
        for cpu in [c for c in args.cpus.split(",") if c]:
            print(f"counting on aarch64 {cpu} (qemu TCG plugin)...", file=sys.stderr, flush=True)
            runs.append(run_aarch64(cpu, args.rootfs, args.venv, args.plugin, args.fp32, args.reps, work))
        if args.x86_from:
            runs += [r for r in json.loads(args.x86_from.read_text())["runs"] if r["cpu"].startswith("x86")]
        elif not args.no_x86:
            print("counting on x86_64 (callgrind)...", file=sys.stderr, flush=True)
            runs.append(run_x86(args.fp32, args.reps, work))
    for r in runs:
        r["int8_gain"] = round(r["per_stage"]["embed_fp32"] / r["per_stage"]["embed_int8"], 3)
    report = {
        "what": "instructions per stage on one 640x480 frame with one face (detection at 320 px), one thread, "
                "counted after a warm-up; aarch64 under qemu-user with a TCG plugin, x86_64 under callgrind",
        "note": "instruction counts, not time: the fps figures are estimates from an assumed IPC until a Pi "
                "measures them",
        "reps": args.reps, "runs": runs,
        "ipc_assumed": {cpu: {"low_central_high": IPC[cpu], "clock_hz": CLOCK_HZ[cpu]} for cpu in CPUS},
        "estimates": {r["board"]: estimates(r) for r in runs if r["cpu"] in CPUS},
    }
    print(table(report))
    for board, est in report["estimates"].items():
        for enc, e in est.items():
            lo, mid, hi = e["fps_one_core"]
            print(f"{board} {enc}: {e['instructions_per_frame'] / 1e6:.0f} M instructions/frame -> "
                  f"~{mid:.0f} fps on one core (range {lo:.0f}-{hi:.0f}), estimate")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
