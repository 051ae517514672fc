"""For the door tests: a verifier that signs events as the daemon does (events.make_event + finalize with a
Signer), gpiozero's MockFactory, and reading a mock relay pin's history."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edge_verify import events
from edge_verify.decision import Verdict
from edge_verify.signing import Signer


class FakeVerifier:
    """A verifier device's signing side: numbered, signed event payloads, exactly as the daemon sends."""

    def __init__(self, device_id: str, signer: Signer | None = None, boot_id: str = "boot-1") -> None:
        self.device_id, self.boot_id = device_id, boot_id
        self.signer = signer or Signer.generate()
        self.seq = 0

    def event(self, event_type: str = "granted", person: str | None = "alice", *, age_s: float = 0.0,
              seq: int | None = None, delayed: bool = False, **fields: Any) -> dict[str, Any]:
        """A signed event as a dict (fields given here are set before signing)."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        now = time.time()
        e = events.make_event(Verdict(event_type, person, 0.7, 3), device_id=self.device_id, mode="identify",
                              tau=1.38, model="b" * 64, latency_ms={"embed": 12.5}, now=now - age_s)
        e.update(seq=seq, boot_id=self.boot_id, **fields)
        out: dict[str, Any] = json.loads(events.finalize(e, delayed=delayed, now=now, stale_after_s=10.0,
                                                         signer=self.signer))
        return out

    def payload(self, *args: Any, **kw: Any) -> bytes:
        return json.dumps(self.event(*args, **kw)).encode()


@pytest.fixture()
def mock_pins() -> Iterator[Any]:
    """gpiozero's real MockFactory as the pin factory for the test."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = saved


def pulses(pin: Any) -> list[float]:
    """The durations (s) of the high periods in a mock pin's history; a period still running counts
    until now."""
    out: list[float] = []
    t, start = 0.0, None
    for step in pin.states:
        t += step.timestamp
        if step.state and start is None:
            start = t
        elif not step.state and start is not None:
            out.append(t - start)
            start = None
    if start is not None:
        out.append(float("inf"))
    return out


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


class Publisher:
    """A plain MQTT client that publishes (QoS 1, waits for the PUBACK); TLS client certificates optional."""

    def __init__(self, host: str, port: int, *, ca_file: str | None = None, cert: str | None = None,
                 key: str | None = None, client_id: str = "", timeout: float = 10.0) -> None:
        import threading

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"pub-{id(self)}")
        if ca_file:
            self.client.tls_set(ca_certs=ca_file, certfile=cert, keyfile=key)
        self.connected = threading.Event()
        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            if not rc.is_failure:
                self.connected.set()

        self.client.on_connect = on_connect
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.close()
            raise RuntimeError("test publisher could not connect")

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
