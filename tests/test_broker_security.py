"""The shipped broker security (examples/mosquitto/: make-certs.sh, edge-verify.conf, acl) on a real
mosquitto: only certificates of the CA get in, a verifier publishes only under its own prefix, the door
controller only reads events and writes its own lock topics, and no one else can publish an event."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_verify.door import config as door_config
from edge_verify.door.controller import DoorController
from tests.broker import Broker, find_mosquitto
from tests.door_helpers import FakeVerifier, Publisher, mock_pins, pulses, wait_for

from .conftest import REPO

pytestmark = pytest.mark.skipif(find_mosquitto() is None or shutil.which("openssl") is None,
                                reason="needs mosquitto and openssl")
__all__ = ["mock_pins"]
EXAMPLES = REPO / "examples" / "mosquitto"
EVENT = "edge-verify/front-cam/event"


def make_certs(d: Path, *clients: str) -> Path:
    subprocess.run(["sh", str(EXAMPLES / "make-certs.sh"), str(d), "localhost,127.0.0.1", *clients],
                   check=True, capture_output=True, timeout=60)
    return d


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = make_certs(tmp_path_factory.mktemp("pki"), "front-cam", "back-cam", "front-door", "homeassistant")
    make_certs(d / "rogue", "front-cam")  # another CA, the same CN
    return d


@pytest.fixture()
def broker(pki: Path, tmp_path: Path) -> Iterator[Broker]:
    conf = (EXAMPLES / "edge-verify.conf").read_text().replace("/etc/mosquitto/edge-verify/", f"{pki}/")
    conf = "\n".join(line for line in conf.splitlines() if not line.startswith("listener "))
    shutil.copy(EXAMPLES / "acl", pki / "acl")
    b = Broker(tmp_path / "broker", extra=conf).start()
    yield b
    b.stop()


def client(b: Broker, pki: Path, name: str) -> Publisher:
    return Publisher(b.host, b.port, ca_file=str(pki / "ca.crt"), cert=str(pki / f"{name}.crt"),
                     key=str(pki / f"{name}.key"), client_id=f"{name}-{time.monotonic_ns()}")


class Watcher(Publisher):
    """Home Assistant's view: everything under edge-verify/."""

    def __init__(self, b: Broker, pki: Path) -> None:
        self.seen: list[tuple[str, bytes]] = []
        super().__init__(b.host, b.port, ca_file=str(pki / "ca.crt"), cert=str(pki / "homeassistant.crt"),
                         key=str(pki / "homeassistant.key"), client_id="ha")
        self.client.on_message = lambda c, u, m: self.seen.append((m.topic, bytes(m.payload)))
        self.client.subscribe("edge-verify/#", qos=1)
        time.sleep(0.3)

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p in self.seen if t == topic]


def test_acl_and_client_certificates(broker: Broker, pki: Path, tmp_path: Path, mock_pins: Any) -> None:
    cam, back = FakeVerifier("front-cam"), FakeVerifier("back-cam")
    cfg = door_config.parse({
        "door": {"id": "front-door", "state_dir": str(tmp_path / "door"), "unlock_s": 0.3},
        "verifiers": {"front-cam": cam.signer.public_b64()},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": True, "ca_file": str(pki / "ca.crt"),
                 "cert_file": str(pki / "front-door.crt"), "key_file": str(pki / "front-door.key"),
                 "reconnect_min_s": 1, "reconnect_max_s": 1}})
    door = DoorController(cfg)
    door.start()
    ha = Watcher(broker, pki)
    try:
        assert door.wait_connected(10)
        time.sleep(0.3)
        # the door's own topics reach Home Assistant
        assert wait_for(lambda: bool(ha.on("edge-verify/front-door/lock")), 5)
        assert ha.on("edge-verify/front-door/availability") == [b"online"]

        # no one but front-cam can publish front-cam's events: the door, another verifier, Home Assistant
        for name, payload in [("front-door", cam.payload("granted", seq=50)),
                              ("back-cam", back.payload("granted")), ("homeassistant", cam.payload("granted", seq=51))]:
            c = client(broker, pki, name)
            c.publish(EVENT, payload)
            c.close()
        # and front-cam cannot write the door's lock state nor another verifier's topics
        c = client(broker, pki, "front-cam")
        c.publish("edge-verify/front-door/lock", b'{"state": "unlocked"}', retain=True)
        c.publish("edge-verify/back-cam/event", cam.payload("granted", seq=52))
        c.publish(EVENT, cam.payload("denied", None, seq=60))  # a marker: front-cam may publish this
        assert wait_for(lambda: len(ha.on(EVENT)) == 1, 5)
        assert wait_for(lambda: door.accepted == 1, 5)
        time.sleep(0.2)
        assert ha.on("edge-verify/back-cam/event") == []
        assert all(b"unlocked" not in p for p in ha.on("edge-verify/front-door/lock"))
        assert not door.refused and door.lock.unlocks == 0  # the forbidden events never reached the door

        # the real verifier's grant opens the door, once
        c.publish(EVENT, cam.payload("granted", "alice", seq=61))
        c.close()
        assert wait_for(lambda: door.lock.unlocks == 1, 5)
        assert wait_for(lambda: not mock_pins.pin(17).state, 5)
        assert len(pulses(mock_pins.pin(17))) == 1

        # without a certificate of this CA, or without TLS, no connection at all
        for kwargs in [{"ca_file": str(pki / "ca.crt")},  # TLS but no client certificate
                       {"ca_file": str(pki / "ca.crt"), "cert": str(pki / "rogue" / "front-cam.crt"),
                        "key": str(pki / "rogue" / "front-cam.key")},  # the right CN from another CA
                       {}]:  # plain MQTT on the TLS port
            with pytest.raises(RuntimeError, match="could not connect"):
                Publisher(broker.host, broker.port, client_id="intruder", timeout=1.5, **kwargs)
    finally:
        ha.close()
        door.stop()
