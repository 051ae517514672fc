"""The daemon demo: a local broker, ``edge-verify run`` on a replay of the bundled sample photos, and a
subscriber that prints each event as it arrives.

The broker is mosquitto when installed (/usr/sbin/mosquitto), else an embedded pure-Python amqtt broker
(the ``demo`` extra). People are enrolled from one or two sample photos each into a temporary state directory;
the "camera" is a directory where each probe photo stands for 3 frames, then a few frames without a face.

    python scripts/demo.py [--samples DIR] [--model PATH] [--broker auto|mosquitto|amqtt] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from edge_verify.demo import ENROL, PROBES, SAMPLES  # noqa: E402  (one list of sample photos)

MOSQUITTO = next((p for p in (shutil.which("mosquitto"), "/usr/sbin/mosquitto") if p and Path(p).is_file()),
                 None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no broker on port {port}")


class LocalBroker:
    def __init__(self, workdir: Path, kind: str = "auto") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.kind = ("mosquitto" if MOSQUITTO else "amqtt") if kind == "auto" else kind

    def start(self) -> None:
        if self.kind == "mosquitto":
            assert MOSQUITTO, "mosquitto is not installed"
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        else:
            threading.Thread(target=self._amqtt, daemon=True).start()
        wait_port(self.port)

    def _amqtt(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError:
            sys.exit("no MQTT broker: install mosquitto, or the demo extra (pip install 'edge-verify[demo]')")
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        config: dict[str, Any] = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                                  "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                                              {"allow_anonymous": True}}}
        broker = Broker(config, loop=self.loop)
        self.loop.run_until_complete(broker.start())
        self.loop.run_forever()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)


def make_camera(samples: Path, directory: Path, frames_per_probe: int = 3, blanks: int = 6) -> None:
    import cv2
    import numpy as np

    directory.mkdir()
    i = 0
    for probe in PROBES:
        for _ in range(frames_per_probe):
            (directory / f"{i:04d}_{probe}").symlink_to(samples / probe)
            i += 1
        for _ in range(blanks):
            cv2.imwrite(str(directory / f"{i:04d}_blank.png"), np.full((150, 150, 3), 90 + i, np.uint8))
            i += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=Path, default=SAMPLES)
    ap.add_argument("--model", help="encoder: bundled name or .tflite path (default: the bundled one)")
    ap.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    sys.path.insert(0, str(REPO))
    from edge_verify.pipeline import FaceVerifier

    work = Path(tempfile.mkdtemp(prefix="edge-verify-demo-"))
    broker = LocalBroker(work, args.broker)
    broker.start()
    print(f"broker: {broker.kind} on 127.0.0.1:{broker.port}", flush=True)
    state = work / "state"
    fv = FaceVerifier(model=args.model, state_dir=state, num_threads=2)
    for name, photos in ENROL.items():
        fv.enroll(name, [args.samples / p for p in photos])
        print(f"enrolled {name} from {', '.join(photos)}", flush=True)
    fv.close()
    from edge_verify import signing

    device_key = signing.Signer.load_or_create(state)  # the key the daemon will sign with (made at its first start)
    keys = {device_key.key_id: device_key.public}
    print(f"device key {device_key.key_id} (edge-verify keys show: {device_key.public_b64()})", flush=True)
    make_camera(args.samples, work / "camera")
    (work / "config.toml").write_text(f"""
[device]
id = "demo-door"
state_dir = "{state}"
[camera]
type = "directory"
source = "{work / 'camera'}"
fps = 5.0
[model]
name = "{args.model or ''}"
[decision]
k = 2
n = 3
window_s = 2.0
cooldown_s = 1.0
unknown_cooldown_s = 1.0
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[log]
level = "WARNING"
""")
    received: list[dict[str, Any]] = []

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic.endswith("/event"):
            e = json.loads(msg.payload)
            try:
                signing.verify(e, keys)
                sig = "signature ok"
            except signing.SignatureError as exc:
                sig = f"SIGNATURE REFUSED ({exc})"
            else:
                received.append(e)
            who = e["person"] or "-"
            print(f"  EVENT #{e['seq']} {e['event_type']:<12} person={who:<16} distance={e['distance']} "
                  f"frames={e['frames']} liveness={e.get('liveness')} "
                  f"latency={e['latency_ms'].get('total', 0):.0f} ms, {sig}", flush=True)
        elif msg.topic.endswith("/availability"):
            print(f"  availability: {msg.payload.decode()}", flush=True)

    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="demo-subscriber")
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("edge-verify/demo-door/#", qos=1)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    print("$ edge-verify run --config config.toml   (camera: a replay of the sample photos)", flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rc = subprocess.call([sys.executable, "-m", "edge_verify", "run", "--config", str(work / "config.toml")],
                         env=env, cwd=REPO)
    time.sleep(0.5)
    sub.loop_stop()
    broker.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    got = sorted((e["event_type"], e["person"] or "") for e in received)
    want = sorted([("granted", name) for name in ENROL] + [("unknown_face", "")])
    print(f"daemon exit {rc}; {len(received)} events received; "
          + ("all decisions as expected" if got == want else f"UNEXPECTED: {got}"), flush=True)
    return 0 if rc == 0 and got == want else 1


if __name__ == "__main__":
    sys.exit(main())
