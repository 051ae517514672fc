"""The daemon's memory with every model loaded: ``edge-verify run`` on a directory camera of LFW photos
(one face each), liveness on, MQTT to a local mosquitto when one is installed; peak RSS (VmHWM) and
current RSS after the replay, read from /proc.

    python -m bench.daemon_rss [--frames 200] [--name daemon-rss]

Goal (issue 13): daemon RSS <= 150 MB with the detector, the encoder and the liveness models loaded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.run import REPO, proc_status_kib, result_args, write_result
from tests.broker import Broker, find_mosquitto

GOAL_MB = 150.0


def measure(frames: int, threads: int) -> dict[str, Any]:
    from converter.lfw import shared_dir

    photos = sorted((shared_dir() / "data" / "lfw" / "images").glob("*_0001.jpg"))[:frames]
    with tempfile.TemporaryDirectory(prefix="ev-rss-") as tmp:
        work = Path(tmp)
        cam = work / "cam"
        cam.mkdir()
        for i, p in enumerate(photos):
            (cam / f"{i:05d}_{p.name}").symlink_to(p)
        broker = Broker(work / "broker").start() if find_mosquitto() else None
        mqtt = f'host = "{broker.host}"\nport = {broker.port}' if broker is not None else "enabled = false"
        (work / "c.toml").write_text(f"""
[device]
id = "rss"
state_dir = "{work / 'state'}"
[camera]
type = "directory"
source = "{cam}"
fps = 50.0
at_end = "wait"
[model]
threads = {threads}
[mqtt]
{mqtt}
[log]
level = "WARNING"
""")
        proc = subprocess.Popen([sys.executable, "-m", "edge_verify", "run", "--config", str(work / "c.toml")],
                                cwd=REPO, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            time.sleep(1.0 + len(photos) / 50.0)
            deadline, used = time.monotonic() + 180, _cpu_s(proc.pid)
            while time.monotonic() < deadline:  # until the replay is over: the daemon's CPU goes quiet
                time.sleep(1.0)
                now = _cpu_s(proc.pid)
                if now - used < 0.2:
                    break
                used = now
            st = proc_status_kib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
            if broker is not None:
                broker.stop()
    return {"frames": len(photos), "threads": threads, "mqtt": broker is not None, "liveness": True,
            "peak_rss_mb": round(st["VmHWM"] / 1024, 1), "rss_mb": round(st["VmRSS"] / 1024, 1),
            "goal_mb": GOAL_MB, "goal_met": st["VmHWM"] / 1024 <= GOAL_MB}


def _cpu_s(pid: int) -> float:
    """CPU seconds a process has used (utime + stime from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.daemon_rss", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    result_args(p, "daemon-rss")
    p.add_argument("--frames", type=int, default=200, help="LFW photos replayed (default 200)")
    args = p.parse_args(argv)
    r = measure(args.frames, args.threads)
    table = (f"daemon RSS after {r['frames']} frames ({r['threads']} threads, liveness on, "
             f"MQTT {'on' if r['mqtt'] else 'off'}): peak {r['peak_rss_mb']} MB, now {r['rss_mb']} MB\n"
             f"goal: daemon RSS <= {GOAL_MB:.0f} MB: {'met' if r['goal_met'] else 'NOT met'}")
    write_result(r, args.out, args.name, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
