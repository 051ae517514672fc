"""The web console and enrolment at the door: page render times, the console's memory, and how long
``edge-verify enroll NAME --camera`` takes on a replay camera of real photos.

    python -m bench.web [--name NAME] [--people 50] [--events 2000] [--repeat 30]

The console runs as a real ``edge-verify web`` process (uvicorn) on a loopback port over a state
directory holding ``--people`` people and ``--events`` logged events; each page is fetched ``--repeat``
times by a logged-in client (wall time of the whole HTTP request). Memory: VmRSS and VmHWM of the web
process after the pages, and again after an enrolment from an uploaded photo (done by a child process,
so the console's own memory must not grow by a model). Enrolment: a replay camera of one LFW person's
photos at 10 fps, without a daemon (the model is loaded by the command) and through a running daemon.
Goals: a page <= 200 ms, the console <= 80 MB RSS, ``enroll --camera`` <= 10 s.
Results: a table on stdout and bench/results/NAME.json.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import platform
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_VERIFY_SHARED", REPO.parent / "shared"))

from bench.run import RESULTS, proc_status_kib, write_result  # noqa: E402
from tests.broker import free_port  # noqa: E402

LFW = SHARED / "data" / "lfw" / "images"
CAMERA_PERSON = "Gerhard_Schroeder"
PASSWORD = "bench password"
PAGES = ("/people", "/events", "/events?type=granted&since=2020-01-01", "/health", "/api/events")
GOAL_PAGE_MS, GOAL_RSS_MB, GOAL_ENROL_S = 200.0, 80.0, 10.0


def _state(state: Path, people: int, events: int) -> None:
    """A gallery of ``people`` (random encodings: the console never compares them) and an event log."""
    from edge_verify.decision import Verdict
    from edge_verify.eventlog import EventLog
    from edge_verify.events import make_event
    from edge_verify.gallery import Gallery
    from edge_verify.models import resolve_encoder
    from edge_verify.web.auth import write_password

    g = Gallery(state, resolve_encoder(None).sha256)
    rng = np.random.default_rng(0)
    for i in range(people):
        g.add(f"person {i:03d}", rng.normal(size=(2, 128)).astype(np.float32))
    g.close()
    log = EventLog(state)
    now = time.time()
    kinds = ("granted", "unknown_face", "denied", "granted")
    for i in range(events):
        kind = kinds[i % 4]
        person = f"person {i % people:03d}" if kind != "unknown_face" else None
        e = make_event(Verdict(kind, person, 0.5, 3, None), device_id="bench", mode="identify", tau=1.3, model="m",
                       latency_ms={"total": 40.0}, now=now - (events - i) * 30)
        log.record({**e, "seq": i + 1})
    log.close()
    write_password(state / "web-password", PASSWORD)


def _rss(pid: int) -> dict[str, float]:
    return {k: round(v / 1024, 1) for k, v in proc_status_kib(pid).items()}


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as r:
            return str(r.read().decode())

    def post(self, path: str, data: bytes, ctype: str) -> str:
        req = urllib.request.Request(self.base + path, data=data, headers={"Content-Type": ctype})
        with self.opener.open(req, timeout=120) as r:
            return str(r.read().decode())

    def login(self) -> None:
        token = re.search(r'name="csrf" value="([^"]+)"', self.get("/login"))
        assert token
        body = urllib.parse.urlencode({"csrf": token.group(1), "password": PASSWORD}).encode()
        self.post("/login", body, "application/x-www-form-urlencoded")

    def upload(self, name: str, photo: Path) -> str:
        csrf = re.search(r'name="csrf" value="([^"]+)"', self.get("/people"))
        assert csrf
        b = uuid.uuid4().hex
        parts = [f'--{b}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf.group(1)}\r\n'.encode(),
                 f'--{b}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'.encode(),
                 f'--{b}\r\nContent-Disposition: form-data; name="photos"; filename="{photo.name}"\r\n'
                 f'Content-Type: image/jpeg\r\n\r\n'.encode() + photo.read_bytes() + b"\r\n", f"--{b}--\r\n".encode()]
        return self.post("/people/photos", b"".join(parts), f"multipart/form-data; boundary={b}")


def bench_console(people: int, events: int, repeat: int) -> dict[str, Any]:
    with TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        _state(state, people, events)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "edge_verify", "web", "--state-dir", str(state), "--listen",
                                 f"127.0.0.1:{port}"], env=env, stderr=subprocess.PIPE)
        try:
            c = Client(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 60
            while True:
                try:
                    c.get("/login")
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the console did not start") from None
                    time.sleep(0.1)
            c.login()
            started = _rss(proc.pid)
            pages: dict[str, dict[str, float]] = {}
            for page in PAGES:
                c.get(page)  # warm: templates compiled
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    c.get(page)
                    times.append((time.perf_counter() - t0) * 1000)
                pages[page] = {"p50_ms": round(float(np.percentile(times, 50)), 1),
                               "p95_ms": round(float(np.percentile(times, 95)), 1),
                               "max_ms": round(max(times), 1)}
            after_pages = _rss(proc.pid)
            t0 = time.perf_counter()
            html = c.upload("Tony", sorted(LFW.glob("Tony_Blair_*.jpg"))[0])
            upload_s = time.perf_counter() - t0
            assert "enrolled" in html, html[:300]
            after_upload = _rss(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    return {"people": people, "events": events, "repeat": repeat, "pages": pages,
            "rss_mb": {"after_login": started, "after_pages": after_pages, "after_upload_enrolment": after_upload},
            "upload_enrolment_s": round(upload_s, 2)}


def bench_camera_enrolment() -> dict[str, Any]:
    with TemporaryDirectory() as tmp:
        cam = Path(tmp) / "cam"
        cam.mkdir()
        for src in sorted(LFW.glob(f"{CAMERA_PERSON}_*.jpg")):
            (cam / src.name).symlink_to(src)
        cfg = Path(tmp) / "c.toml"
        cfg.write_text(f'[device]\nstate_dir = "{Path(tmp) / "state"}"\n[camera]\ntype = "directory"\n'
                       f'source = "{cam}"\nfps = 10\nat_end = "loop"\n[mqtt]\nenabled = false\n')
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        run = [sys.executable, "-m", "edge_verify", "enroll", "--camera", "--config", str(cfg), "--new", "--json"]
        t0 = time.perf_counter()
        subprocess.run([*run, "alone"], check=True, env=env, capture_output=True)
        alone = time.perf_counter() - t0
        daemon = subprocess.Popen([sys.executable, "-m", "edge_verify", "run", "--config", str(cfg)], env=env,
                                  stderr=subprocess.PIPE, text=True)
        try:
            assert daemon.stderr is not None
            for line in daemon.stderr:
                if "ready: first frame" in line:
                    break
            subprocess.run([sys.executable, "-m", "edge_verify", "people", "forget", "alone", "--state-dir",
                            str(Path(tmp) / "state")], check=True, env=env, capture_output=True)
            t0 = time.perf_counter()
            subprocess.run([*run, "through-daemon"], check=True, env=env, capture_output=True)
            through = time.perf_counter() - t0
        finally:
            daemon.terminate()
            daemon.wait(20)
    return {"camera": f"directory of {CAMERA_PERSON} photos at 10 fps, looping", "frames_kept": 5,
            "without_daemon_s": round(alone, 2), "through_daemon_s": round(through, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default=f"web-{platform.node() or 'local'}")
    p.add_argument("--people", type=int, default=50)
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--note", default="", help="a note stored with the results (e.g. 'machine loaded')")
    args = p.parse_args(argv)
    res: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "note": args.note,
                           "console": bench_console(args.people, args.events, args.repeat),
                           "enroll_camera": bench_camera_enrolment()}
    con, enr = res["console"], res["enroll_camera"]
    print(f"{'page':<42} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for page, t in con["pages"].items():
        print(f"{page:<42} {t['p50_ms']:>8} {t['p95_ms']:>8} {t['max_ms']:>8}")
    rss = con["rss_mb"]
    print(f"console RSS: {rss['after_pages']['VmRSS']} MB after the pages (peak {rss['after_pages']['VmHWM']}), "
          f"{rss['after_upload_enrolment']['VmRSS']} MB after an upload enrolment "
          f"({con['upload_enrolment_s']} s, done by a child process)")
    print(f"enroll --camera: {enr['without_daemon_s']} s without the daemon (model load included), "
          f"{enr['through_daemon_s']} s through the running daemon")
    worst = max(t["p95_ms"] for t in con["pages"].values())
    res["goals"] = {"page_p95_ms<=200": worst <= GOAL_PAGE_MS,
                    "rss_mb<=80": rss["after_upload_enrolment"]["VmHWM"] <= GOAL_RSS_MB,
                    "enroll_camera_s<=10": max(enr["without_daemon_s"], enr["through_daemon_s"]) <= GOAL_ENROL_S}
    print("goals:", ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in res["goals"].items()))
    write_result(res, RESULTS, args.name, "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
