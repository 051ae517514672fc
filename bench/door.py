"""Door benchmarks: signing + verifying one event, and the time from a valid event's arrival at the lock
controller to the relay switching on (through a real mosquitto, gpiozero's MockFactory as the pins).

    python -m bench.door [--name NAME] [--events 2000] [--grants 100]

Goals (issue 10): sign + verify <= 1 ms per event; relay on within 50 ms of a valid event's arrival.
"Arrival" is the entry of paho's on_message in the controller; "relay on" is the moment gpiozero sets the
pin (a MockPin that records time.perf_counter at each change). Also given: publish-to-relay through the
broker, and where the time goes (parse + checks + signature, the replay store's fsync'd commit).
Results: a table on stdout and bench/results/NAME.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.run import RESULTS, write_result
from edge_verify.signing import Signer, verify

GOAL_SIGN_VERIFY_MS = 1.0
GOAL_RELAY_MS = 50.0


def _stats(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"n": len(s), "median_ms": round(statistics.median(s), 4),
            "p95_ms": round(s[min(len(s) - 1, int(0.95 * len(s)))], 4), "max_ms": round(s[-1], 4)}


def bench_signing(n: int) -> dict[str, Any]:
    from tests.door_helpers import FakeVerifier

    cam = FakeVerifier("cam1")
    signer = Signer.generate()
    keys = {signer.key_id: signer.public}
    evs = [cam.event("granted", "alice") for _ in range(n)]
    sign, ver, both = [], [], []
    for e in evs:
        t0 = time.perf_counter()
        signed = signer.sign(e)
        t1 = time.perf_counter()
        verify(signed, keys)
        t2 = time.perf_counter()
        sign.append((t1 - t0) * 1e3)
        ver.append((t2 - t1) * 1e3)
        both.append((t2 - t0) * 1e3)
    return {"sign": _stats(sign), "verify": _stats(ver), "sign_verify": _stats(both)}


def bench_relay(grants: int) -> dict[str, Any]:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPin

    from edge_verify.door import config as door_config
    from edge_verify.door.controller import DoorController
    from tests.broker import Broker
    from tests.door_helpers import FakeVerifier, Publisher

    on_at: list[float] = []

    class TimedPin(MockPin):  # the real MockPin, noting when the relay goes on
        def _change_state(self, value: bool) -> bool:
            changed = bool(super()._change_state(value))
            if changed and value:
                on_at.append(time.perf_counter())
            return changed

    Device.pin_factory = MockFactory(pin_class=TimedPin)
    cam = FakeVerifier("cam1")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker").start()
        cfg = door_config.parse({"door": {"id": "front", "state_dir": f"{tmp}/door", "unlock_s": 60},
                                 "verifiers": {"cam1": cam.signer.public_b64()},
                                 "mqtt": {"host": broker.host, "port": broker.port, "discovery": False}})
        door = DoorController(cfg)
        door.start()
        pub = Publisher(broker.host, broker.port)
        arrival, e2e, direct, gate_ms = [], [], [], []
        try:
            assert door.wait_connected(10)
            time.sleep(0.3)
            for _ in range(grants):  # through the broker
                payload = cam.payload("granted", "alice")
                n = len(on_at)
                t0 = time.perf_counter()
                pub.publish("edge-verify/cam1/event", payload)
                deadline = time.monotonic() + 5
                while len(on_at) == n and time.monotonic() < deadline:
                    time.sleep(0.0005)
                if len(on_at) == n or door.last_arrival is None:
                    raise RuntimeError(f"the relay did not switch on: refused {dict(door.refused)}")
                arrival.append((on_at[-1] - door.last_arrival) * 1e3)
                e2e.append((on_at[-1] - t0) * 1e3)
                door.lock.lock_now()
            for _ in range(grants):  # in process: the controller's path without the network
                payload = cam.payload("granted", "alice")
                n = len(on_at)
                t0 = time.perf_counter()
                door.handle("edge-verify/cam1/event", payload, False)
                direct.append((on_at[-1] - t0) * 1e3 if len(on_at) > n else float("inf"))
                t1 = time.perf_counter()
                door.gate.check("edge-verify/cam1/event", cam.payload("denied", None), False, time.time())
                gate_ms.append((time.perf_counter() - t1) * 1e3)
                door.lock.lock_now()
        finally:
            pub.close()
            door.stop()
            broker.stop()
            Device.pin_factory.reset()
    return {"arrival_to_relay": _stats(arrival), "publish_to_relay": _stats(e2e),
            "handle_to_relay": _stats(direct), "gate_check_with_commit": _stats(gate_ms)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.door", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default=f"door-{platform.node() or 'host'}")
    p.add_argument("--events", type=int, default=2000, help="events signed and verified")
    p.add_argument("--grants", type=int, default=100, help="valid grants sent to the controller")
    p.add_argument("--note", default="", help="recorded with the results (e.g. 'machine loaded')")
    args = p.parse_args(argv)
    os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
    signing = bench_signing(args.events)
    relay = bench_relay(args.grants)
    goals = {
        "sign_verify_ms<=1": signing["sign_verify"]["median_ms"] <= GOAL_SIGN_VERIFY_MS,
        "arrival_to_relay_ms<=50 (p95)": relay["arrival_to_relay"]["p95_ms"] <= GOAL_RELAY_MS,
    }
    result = {"name": args.name, "machine": f"{platform.machine()} {os.cpu_count()} cores",
              "python": platform.python_version(), "load_avg": os.getloadavg(), "note": args.note,
              "signing": signing, "relay": relay, "goals": goals}
    print(f"{'measure':<28}{'n':>6}{'median ms':>12}{'p95 ms':>10}{'max ms':>10}")
    for group in (signing, relay):
        for k, s in group.items():
            print(f"{k:<28}{s['n']:>6}{s['median_ms']:>12.3f}{s['p95_ms']:>10.3f}{s['max_ms']:>10.3f}")
    for goal, ok in goals.items():
        print(f"goal {goal}: {'met' if ok else 'NOT met'}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    write_result(result, RESULTS, args.name, "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
