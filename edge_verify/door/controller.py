"""The lock controller on MQTT (paho-mqtt 2.x): verifier events in, relay pulses and lock state out.

Topics (``<prefix>`` = ``mqtt.topic_prefix``): it subscribes to ``<prefix>/<verifier>/event`` for each
configured verifier (QoS 1) and to ``<prefix>/<door_id>/lock/set``, where only ``LOCK`` is obeyed (no
remote unlock: only a signed ``granted`` opens the door). It publishes ``<prefix>/<door_id>/lock``
(retained ``{"state": "locked"|"unlocked", "door": "open"|"closed"|null, "ts"}``), ``.../alarm``
(``{"event_type": "held_open"|"forced_open", "ts"}``, QoS 1), ``.../state`` (retained counters),
``.../availability`` (retained, also the Will) and Home Assistant discovery as a ``lock`` entity.

Every paho callback catches every exception (a hostile payload must not stop the network thread) and
leaves the relay off when something failed.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import paho.mqtt.client as paho

from ..mqtt_client import make_client, publish_offline
from .config import REPLAY_FILE, DoorConfig
from .gate import Gate, Verdict
from .lock import ALARMS, Lock
from .replay import ReplayStore

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., None])


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def guarded(fn: F) -> F:
    """Log and swallow any exception of a callback, and lock the door (fail-secure)."""
    @functools.wraps(fn)
    def wrapper(self: DoorController, *args: Any) -> None:
        try:
            fn(self, *args)
        except Exception:
            self.errors += 1
            log.exception("error in %s: the door stays locked", fn.__name__)
            try:
                self.lock.lock_now()
            except Exception:
                log.exception("cannot lock after an error")
    return wrapper  # type: ignore[return-value]


class DoorController:
    def __init__(self, cfg: DoorConfig, *, clock: Callable[[], float] = time.time,
                 lock: Lock | None = None) -> None:
        self.cfg, self.clock = cfg, clock
        self.keys = cfg.require_verifiers()
        prefix, door = cfg.mqtt.topic_prefix, cfg.door.id
        self.t_base = f"{prefix}/{door}"
        self.t_lock, self.t_cmd = f"{self.t_base}/lock", f"{self.t_base}/lock/set"
        self.t_alarm, self.t_state = f"{self.t_base}/alarm", f"{self.t_base}/state"
        self.t_availability = f"{self.t_base}/availability"
        self.t_ha_status = f"{cfg.mqtt.discovery_prefix}/status"
        self.t_discovery = f"{cfg.mqtt.discovery_prefix}/device/{door}/config"
        self.store = ReplayStore(cfg.state_path / REPLAY_FILE)
        self.gate = Gate(self.keys, self.store, topic_prefix=prefix, max_age_s=cfg.door.max_age_s,
                         max_payload=cfg.door.max_payload)
        self.refused: Counter[str] = Counter()
        self.alarms: Counter[str] = Counter()
        self.accepted = 0
        self.errors = 0
        self.last_arrival: float | None = None  # perf_counter at the last message's arrival (benchmarks)
        self._dirty = threading.Event()
        self._connected = threading.Event()
        self._stopping = False
        c = cfg.contact
        self.lock = lock or Lock(cfg.relay.pin, active_high=cfg.relay.active_high, unlock_s=cfg.door.unlock_s,
                                 contact_pin=c.pin, pull_up=c.pull_up, held_open_s=c.held_open_s,
                                 bounce_s=c.bounce_s, on_change=self.publish_lock, on_alarm=self.publish_alarm)
        self.client = self._make_client()

    # -- setup ----------------------------------------------------------------------------------------
    def _make_client(self) -> paho.Client:
        m = self.cfg.mqtt
        c = make_client(m, self.cfg.client_id, self.t_availability)
        c.reconnect_delay_set(m.reconnect_min_s, m.reconnect_max_s)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_message, c.on_connect_fail = self._on_message, self._on_connect_fail
        return c

    def start(self) -> None:
        m = self.cfg.mqtt
        log.info("door %s: broker %s:%d%s, verifiers %s, unlock %.1f s", self.cfg.door.id, m.host, m.port,
                 " (TLS)" if m.tls else "", ", ".join(sorted(self.keys)), self.cfg.door.unlock_s)
        self.client.connect_async(m.host, m.port, m.keepalive)
        self.client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- paho callbacks --------------------------------------------------------------------------------
    @guarded
    def _on_connect(self, client: paho.Client, userdata: Any, flags: paho.ConnectFlags,
                    reason_code: paho.ReasonCode, properties: paho.Properties | None) -> None:
        if reason_code.is_failure:
            log.error("MQTT: broker refused the connection: %s", reason_code)
            return
        log.info("MQTT connected to %s:%d", self.cfg.mqtt.host, self.cfg.mqtt.port)
        client.publish(self.t_availability, "online", qos=1, retain=True)
        subs = [(t, 1) for t in self.gate.topics] + [(self.t_cmd, 1)]
        if self.cfg.mqtt.discovery:
            subs.append((self.t_ha_status, 1))
            self.publish_discovery()
        client.subscribe(subs)
        self._connected.set()
        self.publish_lock()
        self.publish_state()

    @guarded
    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        log.warning("MQTT: cannot connect to %s:%d; retrying", self.cfg.mqtt.host, self.cfg.mqtt.port)

    @guarded
    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: paho.DisconnectFlags,
                       reason_code: paho.ReasonCode, properties: paho.Properties | None) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("MQTT disconnected (%s)", reason_code)
        self._connected.clear()

    @guarded
    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.last_arrival = time.perf_counter()
        topic = msg.topic
        if topic == self.t_cmd:
            self._command(bytes(msg.payload[:16]), bool(msg.retain))
        elif topic == self.t_ha_status:
            if bytes(msg.payload[:16]).strip() == b"online":
                self.publish_discovery()
                self.publish_lock()
        else:
            self.handle(topic, bytes(msg.payload), bool(msg.retain))

    # -- events ----------------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, retained: bool) -> Verdict:
        """Check one event message and act on it: the whole path from arrival to the relay."""
        v = self.gate.check(topic, payload, retained, self.clock())
        if v.ok and v.event is not None:
            e = v.event
            self.accepted += 1
            if e["event_type"] == "granted":
                person = e.get("person") or ""
                if self.cfg.allows(person):
                    self.lock.unlock()
                    log.info("unlocked for %r (%s), %.1f s", person, v.detail, self.cfg.door.unlock_s)
                    self._dirty.set()
                    return v
                v = Verdict(False, "not_allowed", f"{person[:64]!r} is not allowed at this door ({v.detail})",
                            v.device, e)
            else:
                log.debug("accepted %s event (%s): nothing to do", e["event_type"], v.detail)
                return v
        self.refused[v.reason] += 1
        self._dirty.set()
        log.warning("refused %s: %s", v.reason, v.detail)
        return v

    def _command(self, payload: bytes, retained: bool) -> None:
        word = payload.strip().upper()
        if word == b"LOCK" and not retained:
            log.info("LOCK command: locked now")
            self.lock.lock_now()
        elif word:
            log.warning("command %r on %s ignored: only LOCK is obeyed (a signed granted unlocks)",
                        word.decode("ascii", "replace")[:16], self.t_cmd)

    # -- publishing ------------------------------------------------------------------------------------
    def _publish(self, topic: str, data: Any, *, retain: bool) -> None:
        if self.client.is_connected():
            payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
            self.client.publish(topic, payload, qos=1, retain=retain)

    def publish_lock(self) -> None:
        self._publish(self.t_lock, {**self.lock.state(), "ts": _iso(self.clock())}, retain=True)

    def publish_alarm(self, name: str) -> None:
        self.alarms[name] += 1
        self._publish(self.t_alarm, {"event_type": name, "ts": _iso(self.clock())}, retain=False)
        self._dirty.set()

    def state(self) -> dict[str, Any]:
        return {"door_id": self.cfg.door.id, "verifiers": sorted(self.keys), "accepted": self.accepted,
                "unlocks": self.lock.unlocks, "refused": dict(self.refused),
                "refused_total": sum(self.refused.values()), "alarms": dict(self.alarms), "errors": self.errors}

    def publish_state(self) -> None:
        self._dirty.clear()
        self._publish(self.t_state, self.state(), retain=True)

    def tick(self) -> None:
        """From the main loop: publish the counters when they changed."""
        if self._dirty.is_set() and self.connected:
            self.publish_state()

    def discovery_payload(self) -> dict[str, Any]:
        from .. import __version__ as v

        d = self.cfg.door.id
        uid = f"edge_verify_door_{d}"
        cmps: dict[str, Any] = {
            "lock": {"p": "lock", "name": "Lock", "unique_id": f"{uid}_lock", "state_topic": self.t_lock,
                     "value_template": "{{ value_json.state }}", "state_locked": "locked",
                     "state_unlocked": "unlocked", "command_topic": self.t_cmd, "payload_lock": "LOCK",
                     "payload_unlock": "UNLOCK"},
            "alarm": {"p": "event", "name": "Alarm", "unique_id": f"{uid}_alarm", "state_topic": self.t_alarm,
                      "event_types": list(ALARMS)},
            "refused": {"p": "sensor", "name": "Refused events", "unique_id": f"{uid}_refused",
                        "state_topic": self.t_state, "value_template": "{{ value_json.refused_total }}",
                        "state_class": "total_increasing"},
        }
        if self.cfg.contact.pin:
            cmps["door"] = {"p": "binary_sensor", "name": "Door", "unique_id": f"{uid}_door",
                            "device_class": "door", "state_topic": self.t_lock,
                            "value_template": "{{ value_json.door }}", "payload_on": "open", "payload_off": "closed"}
        return {"dev": {"ids": [uid], "name": f"edge-verify door {d}", "mf": "edge-verify",
                        "mdl": "lock controller", "sw": v},
                "o": {"name": "edge-verify", "sw": v}, "availability": [{"topic": self.t_availability}],
                "qos": 1, "cmps": cmps}

    def publish_discovery(self) -> None:
        if self.cfg.mqtt.discovery:
            self._publish(self.t_discovery, self.discovery_payload(), retain=True)

    # -- stop ------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Relay off first, then ``offline``, disconnect, release the pins, close the store."""
        self._stopping = True
        try:
            self.lock.lock_now()
            if self.client.is_connected():
                self.publish_lock()
                publish_offline(self.client, self.t_availability)
            self.client.disconnect()
            self.client.loop_stop()
        finally:
            self.lock.close()
            self.store.close()
