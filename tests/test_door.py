"""`edge-verify door` against a real mosquitto and gpiozero's MockFactory: a valid `granted` gives exactly
one relay pulse of `unlock_s`; forged, replayed, reordered, stale, delayed, unsigned, wrong-key,
wrong-device, old, retained and hostile messages give none; a restart does not accept a used event."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_verify.door import config as door_config
from edge_verify.door.controller import DoorController
from edge_verify.signing import Signer
from tests.broker import Broker
from tests.conftest import needs_broker
from tests.door_helpers import FakeVerifier, Publisher, mock_pins, pulses, wait_for
from tests.mqtt_helpers import Subscriber

pytestmark = needs_broker  # the broker fixture is conftest's
__all__ = ["mock_pins"]  # the fixture, imported for pytest

UNLOCK_S = 0.3
EVENT = "edge-verify/cam1/event"


@pytest.fixture()
def cam1() -> FakeVerifier:
    return FakeVerifier("cam1")


@pytest.fixture()
def cam2() -> FakeVerifier:
    return FakeVerifier("cam2")


def make_cfg(b: Broker, state: Path, *verifiers: FakeVerifier, **door: Any) -> door_config.DoorConfig:
    return door_config.parse({
        "door": {"id": "front", "state_dir": str(state), "unlock_s": UNLOCK_S, **door},
        "relay": {"pin": "GPIO17"},
        "verifiers": {v.device_id: v.signer.public_b64() for v in verifiers},
        "mqtt": {"host": b.host, "port": b.port, "reconnect_min_s": 1, "reconnect_max_s": 1, "keepalive": 5},
    })


@pytest.fixture()
def door(broker: Broker, tmp_path: Path, cam1: FakeVerifier, cam2: FakeVerifier,
         mock_pins: Any) -> Iterator[DoorController]:
    c = DoorController(make_cfg(broker, tmp_path / "door-state", cam1, cam2))
    c.start()
    assert c.wait_connected(10)
    time.sleep(0.2)  # the subscriptions are made
    yield c
    c.stop()


def relay_pin(factory: Any) -> Any:
    return factory.pin(17)


def settle(door: DoorController, n: int, timeout: float = 10.0) -> None:
    """Wait until the controller has decided on ``n`` event messages in all."""
    assert wait_for(lambda: door.accepted + sum(door.refused.values()) >= n, timeout), (
        door.accepted, dict(door.refused))


def test_valid_granted_gives_exactly_one_pulse(broker: Broker, door: DoorController, cam1: FakeVerifier,
                                               mock_pins: Any) -> None:
    sub = Subscriber(broker.host, broker.port, ["edge-verify/front/#"])
    pub = Publisher(broker.host, broker.port)
    try:
        assert sub.wait(lambda: bool(sub.on("edge-verify/front/lock")))  # retained: subscribed
        pub.publish(EVENT, cam1.payload("granted", "alice"))
        pin = relay_pin(mock_pins)
        assert wait_for(lambda: pin.state)
        assert wait_for(lambda: not pin.state)
        time.sleep(0.2)
        assert len(pulses(pin)) == 1
        assert UNLOCK_S - 0.02 <= pulses(pin)[0] <= UNLOCK_S + 1.0  # (slack for a loaded machine)
        assert door.lock.unlocks == 1 and door.accepted == 1 and not door.refused
        assert sub.wait(lambda: [m["state"] for m in sub.json("edge-verify/front/lock")][-2:] ==
                        ["unlocked", "locked"])
    finally:
        sub.close()
        pub.close()


def test_attacks_and_hostile_payloads_unlock_nothing(broker: Broker, door: DoorController, cam1: FakeVerifier,
                                                     cam2: FakeVerifier, mock_pins: Any) -> None:
    pub = Publisher(broker.host, broker.port)
    stranger = FakeVerifier("cam1")  # a key no one configured, claiming to be cam1
    forged = cam1.event("denied", None)
    forged.update(event_type="granted", person="mallory")  # changed after signing
    unsigned = cam1.event("granted")
    del unsigned["sig"], unsigned["key_id"]
    first = cam1.event("denied", None, seq=100)  # accepted: seq 100 is now the last for cam1/boot-1
    cases: list[tuple[str, str, bytes]] = [
        ("accepted", EVENT, json.dumps(first).encode()),
        ("replayed", EVENT, json.dumps(first).encode()),  # the same message again
        ("replayed", EVENT, cam1.payload("granted", seq=100)),  # a new event with a used seq
        ("replayed", EVENT, cam1.payload("granted", seq=99)),  # reordered: older than the last
        ("bad_signature", EVENT, json.dumps(forged).encode()),
        ("unsigned", EVENT, json.dumps(unsigned).encode()),
        ("unknown_key", EVENT, stranger.payload("granted", seq=500)),
        ("wrong_key", EVENT, FakeVerifier("cam1", cam2.signer).payload("granted", seq=501)),  # cam2's key
        ("wrong_device", EVENT, cam1.payload("granted", seq=502, device_id="cam2")),  # signed, other device
        ("wrong_device", "edge-verify/cam3/event", cam1.payload("granted", seq=503)),  # not configured
        ("stale", EVENT, cam1.payload("granted", seq=504, age_s=30)),  # marked stale by the sender
        ("delayed", EVENT, cam1.payload("granted", seq=505, delayed=True)),
        ("too_old", EVENT, cam1.payload("granted", seq=506, age_s=8, stale=False)),
        ("from_future", EVENT, cam1.payload("granted", seq=507, age_s=-60)),
        ("too_large", EVENT, b"{" + b" " * 5000 + b"}"),
        ("malformed", EVENT, b"[" * 2000 + b"]" * 2000),
        ("malformed", EVENT, b'{"seq": 1' + b"0" * 4000 + b"}"),
        ("malformed", EVENT, b'{"seq": 1e999}'),
        ("malformed", EVENT, b'{"seq": NaN}'),
        ("malformed", EVENT, b"\xff\xfe not utf-8"),
        ("malformed", EVENT, b'"a string"'),
        ("malformed", EVENT, b'{"event_type": "denied", "event_type": "granted"}'),
        ("malformed", EVENT, json.dumps({**cam1.event("granted", seq=508), "x": {"a": [1]}}).encode()),
        ("malformed", EVENT, b""),
    ]
    for _, topic, payload in cases:
        pub.publish(topic, payload)
    settle(door, len(cases) - 1)  # (cam3's topic is not subscribed: the broker never delivers it)
    pub.close()
    expected: dict[str, int] = {}
    for reason, topic, _ in cases:
        if reason != "accepted" and topic == EVENT:
            expected[reason] = expected.get(reason, 0) + 1
    assert dict(door.refused) == expected
    assert door.accepted == 1
    assert pulses(relay_pin(mock_pins)) == [] and door.lock.unlocks == 0
    # a message on a topic the door does not subscribe to is refused by the gate too
    assert door.handle("edge-verify/cam3/event", cam1.payload("granted"), False).reason == "wrong_device"
    # after all that the controller still works: a valid grant opens, once
    p2 = Publisher(broker.host, broker.port)
    p2.publish(EVENT, cam1.payload("granted", "alice", seq=1000))
    p2.close()
    assert wait_for(lambda: door.lock.unlocks == 1)


def test_retained_event_is_refused(broker: Broker, tmp_path: Path, cam1: FakeVerifier, mock_pins: Any) -> None:
    pub = Publisher(broker.host, broker.port)
    pub.publish(EVENT, cam1.payload("granted"), retain=True)  # valid, fresh, but retained
    pub.close()
    c = DoorController(make_cfg(broker, tmp_path / "s", cam1))
    c.start()
    try:
        settle(c, 1)
        assert dict(c.refused) == {"retained": 1} and c.lock.unlocks == 0
        assert pulses(relay_pin(mock_pins)) == []
    finally:
        c.stop()


def test_restart_does_not_accept_a_used_event(broker: Broker, tmp_path: Path, cam1: FakeVerifier,
                                              mock_pins: Any) -> None:
    cfg = make_cfg(broker, tmp_path / "s", cam1)
    payload = cam1.payload("granted")
    first = DoorController(cfg)
    assert first.handle(EVENT, payload, False).ok and first.lock.unlocks == 1
    first.stop()
    mock_pins.reset()
    second = DoorController(cfg)  # the same state directory: a new process after a restart
    try:
        v = second.handle(EVENT, payload, False)
        assert v.reason == "replayed" and second.lock.unlocks == 0
        assert pulses(relay_pin(mock_pins)) == []
        assert second.handle(EVENT, cam1.payload("granted"), False).ok  # the next one is fine
    finally:
        second.stop()


def test_person_not_allowed_at_this_door(broker: Broker, tmp_path: Path, cam1: FakeVerifier,
                                         mock_pins: Any) -> None:
    c = DoorController(make_cfg(broker, tmp_path / "s", cam1, allow=["Bob"]))
    try:
        assert c.handle(EVENT, cam1.payload("granted", "alice"), False).reason == "not_allowed"
        assert c.handle(EVENT, cam1.payload("granted", "bob"), False).ok  # names compare case-folded
        assert c.lock.unlocks == 1
    finally:
        c.stop()


def test_active_low_relay_and_lock_command(broker: Broker, tmp_path: Path, cam1: FakeVerifier,
                                           mock_pins: Any) -> None:
    cfg = make_cfg(broker, tmp_path / "s", cam1, unlock_s=30.0)
    cfg = door_config.parse({**_raw(cfg), "relay": {"pin": "GPIO17", "active_high": False}})
    c = DoorController(cfg)
    c.start()
    pub = Publisher(broker.host, broker.port)
    pin = relay_pin(mock_pins)
    try:
        assert c.wait_connected(10)
        time.sleep(0.2)
        assert pin.state is True  # active low: high = off
        pub.publish("edge-verify/front/lock/set", "UNLOCK")
        time.sleep(0.3)
        assert pin.state is True and c.lock.unlocks == 0  # no remote unlock
        pub.publish(EVENT, cam1.payload("granted"))
        assert wait_for(lambda: pin.state is False)
        pub.publish("edge-verify/front/lock/set", "LOCK")
        assert wait_for(lambda: pin.state is True, 5)  # locked long before unlock_s
    finally:
        pub.close()
        c.stop()
    assert pin.state is True or pin.function == "input"


def _raw(cfg: door_config.DoorConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    d["door"]["allow"] = list(d["door"]["allow"])
    d["verifiers"] = {k: list(v) for k, v in d["verifiers"].items()}
    return d


def test_door_contact_alarms(broker: Broker, tmp_path: Path, cam1: FakeVerifier, mock_pins: Any) -> None:
    cfg = make_cfg(broker, tmp_path / "s", cam1, unlock_s=30.0)
    cfg = door_config.parse({**_raw(cfg), "contact": {"pin": "GPIO27", "held_open_s": 0.3, "bounce_s": 0}})
    contact = mock_pins.pin(27)
    c = DoorController(cfg)
    c.start()
    try:
        assert c.wait_connected(10)
        sub = Subscriber(broker.host, broker.port, ["edge-verify/front/alarm", "edge-verify/front/lock"])
        assert sub.wait(lambda: bool(sub.on("edge-verify/front/lock")))  # retained: subscribed
        contact.drive_low()  # shut
        assert c.lock.door_open is False
        contact.drive_high()  # opened while locked: forced
        assert sub.wait(lambda: [a["event_type"] for a in sub.json("edge-verify/front/alarm")] ==
                        ["forced_open", "held_open"], 5)
        contact.drive_low()
        assert c.handle(EVENT, cam1.payload("granted"), False).ok
        contact.drive_high()  # opened after a grant: no forced_open
        contact.drive_low()  # and shut again within held_open_s: no held_open
        time.sleep(0.6)
        assert dict(c.alarms) == {"forced_open": 1, "held_open": 1}
        assert sub.wait(lambda: sub.json("edge-verify/front/lock")[-1]["door"] == "closed")
        disc = c.discovery_payload()["cmps"]
        assert disc["door"]["device_class"] == "door" and disc["lock"]["p"] == "lock"
        sub.close()
    finally:
        c.stop()


def test_store_failure_keeps_the_door_locked(broker: Broker, door: DoorController, cam1: FakeVerifier,
                                             mock_pins: Any) -> None:
    door.store._conn.close()  # the disk is gone: the seq cannot be recorded
    pub = Publisher(broker.host, broker.port)
    pub.publish(EVENT, cam1.payload("granted"))
    pub.close()
    assert wait_for(lambda: door.errors == 1)
    assert pulses(relay_pin(mock_pins)) == [] and door.lock.unlocks == 0
    assert door.connected  # the network thread lives on


def test_discovery_and_state(broker: Broker, door: DoorController, cam1: FakeVerifier) -> None:
    sub = Subscriber(broker.host, broker.port, ["homeassistant/device/front/config", "edge-verify/front/#"])
    try:
        assert sub.wait(lambda: bool(sub.json("homeassistant/device/front/config")))
        d = sub.json("homeassistant/device/front/config")[0]
        lock = d["cmps"]["lock"]
        assert lock["p"] == "lock" and lock["state_topic"] == "edge-verify/front/lock"
        assert lock["command_topic"] == "edge-verify/front/lock/set" and "door" not in d["cmps"]
        assert sub.wait(lambda: sub.on("edge-verify/front/availability") == [b"online"])
        door.handle(EVENT, cam1.payload("granted", seq=5), False)
        door.handle(EVENT, cam1.payload("granted", seq=5), False)
        door.tick()
        assert sub.wait(lambda: any(s["refused"] == {"replayed": 1} and s["unlocks"] == 1
                                    for s in sub.json("edge-verify/front/state")))
    finally:
        sub.close()


def test_new_signer_key_ids_differ() -> None:
    assert Signer.generate().key_id != Signer.generate().key_id
