"""The MQTT link (paho-mqtt 2.x, ``CallbackAPIVersion.VERSION2``): availability with a Will, retained
state, events from the outbox (QoS 1, never retained), telemetry, Home Assistant device discovery and
claims. Runs on paho's own thread (``loop_start``) plus one flusher thread, so the frame loop never
waits for the broker.

Events: the flusher publishes outbox rows oldest first, at most ``max_inflight`` unacknowledged at a
time; a row is deleted when its PUBACK arrives (``on_publish`` with its mid). On a disconnect the
unacknowledged events are taken back from paho's in-memory queue, and after the reconnect they are
sent again from the outbox with ``delayed: true`` (the same ``event_id``: subscribers de-duplicate on it).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from . import events
from .config import Config
from .outbox import Outbox

log = logging.getLogger(__name__)

EVENT_TYPES = list(events.EVENT_TYPES)


def _version() -> str:
    from . import __version__

    return __version__


class MqttLink:
    """One device's connection to the broker."""

    def __init__(self, cfg: Config, outbox: Outbox, *, on_claim: Callable[[str, float], None] | None = None,
                 state: Callable[[], dict[str, Any]] | None = None) -> None:
        self.cfg, self.outbox = cfg, outbox
        self.device_id = cfg.device_id
        self.base = f"{cfg.mqtt.topic_prefix}/{self.device_id}"
        self.t_availability = f"{self.base}/availability"
        self.t_state = f"{self.base}/state"
        self.t_event = f"{self.base}/event"
        self.t_telemetry = f"{self.base}/telemetry"
        self.t_claim = f"{self.base}/cmd/claim"
        self.t_ha_status = f"{cfg.mqtt.discovery_prefix}/status"
        self.t_discovery = f"{cfg.mqtt.discovery_prefix}/device/{self.device_id}/config"
        self.on_claim, self.state = on_claim, state
        self._map_lock = threading.Lock()  # never held while calling into paho
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._early_acks: dict[int, float] = {}  # mid -> when: PUBACKs that beat publish()'s return
        self._live: set[int] = set()  # seqs submitted while connected, not yet sent
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self.connects = 0
        self.last_error: str | None = None
        self.client = self._make_client()
        self._flusher = threading.Thread(target=self._flush_loop, name="mqtt-flush", daemon=True)

    # -- setup ----------------------------------------------------------------------------------
    def _make_client(self) -> paho.Client:
        m = self.cfg.mqtt
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id, clean_session=True,
                        protocol=paho.MQTTv311)
        c.will_set(self.t_availability, "offline", qos=1, retain=True)
        if m.username:
            c.username_pw_set(m.username, self.cfg.password())
        if m.tls:
            c.tls_set(ca_certs=m.ca_file or None, certfile=m.cert_file or None, keyfile=m.key_file or None,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.reconnect_delay_set(m.reconnect_min_s, m.reconnect_max_s)
        c.max_inflight_messages_set(m.max_inflight + 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_connect_fail = self._on_connect_fail
        return c

    def start(self) -> None:
        """Connect in the background (retrying with backoff until it works)."""
        m = self.cfg.mqtt
        log.info("MQTT broker %s:%d%s, topics under %s/", m.host, m.port, " (TLS)" if m.tls else "",
                 self.base)
        self.client.connect_async(m.host, m.port, m.keepalive)
        self.client.loop_start()
        self._flusher.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- paho callbacks (paho's thread) ---------------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.error("MQTT: %s", self.last_error)
            return
        self.connects += 1
        log.info("MQTT connected to %s:%d", self.cfg.mqtt.host, self.cfg.mqtt.port)
        self.last_error = None
        client.publish(self.t_availability, "online", qos=1, retain=True)
        subs = [(self.t_claim, 1)]
        if self.cfg.mqtt.discovery:
            subs.append((self.t_ha_status, 1))
            self.publish_discovery()
        client.subscribe(subs)
        self.publish_state()
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self.last_error = f"cannot connect to {self.cfg.mqtt.host}:{self.cfg.mqtt.port}"
        log.warning("MQTT: %s; retrying", self.last_error)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        with self._map_lock:
            mids = list(self._inflight)
            self._inflight.clear()
            self._early_acks.clear()
            self._live.clear()
        self._drop_from_paho(mids)
        if not self._stopping.is_set() and was:  # (a refused connection keeps its own last_error)
            self.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT disconnected (%s); %d events to resend", reason_code, len(mids))

    def _drop_from_paho(self, mids: list[int]) -> None:
        """Take unacknowledged events back from paho's in-memory queue: the outbox resends them after
        the reconnect, marked delayed. (paho has no public call for this.)"""
        out = getattr(self.client, "_out_messages", None)
        lock = getattr(self.client, "_out_message_mutex", None)
        if out is None or lock is None:
            return
        with lock:
            for mid in mids:
                out.pop(mid, None)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        with self._map_lock:
            seq = self._inflight.pop(mid, None)
            if seq is None:  # not an event, or an event whose publish() has not returned yet
                now = time.monotonic()
                if len(self._early_acks) > 100:
                    self._early_acks = {m: t for m, t in self._early_acks.items() if now - t < 5.0}
                self._early_acks[mid] = now
        if seq is not None:
            self.outbox.ack(seq)
            self._wake.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self.t_ha_status:
            if msg.payload.decode("utf-8", "replace").strip() == "online":
                log.info("Home Assistant is online: discovery published again")
                self.publish_discovery()
                self.publish_state()
            return
        if msg.topic == self.t_claim:
            self._handle_claim(bytes(msg.payload))

    def _handle_claim(self, payload: bytes) -> None:
        try:
            data = json.loads(payload)
            person, ttl = data["person"], data.get("ttl_s", 10)
            if not isinstance(person, str) or not person or len(person) > 200:
                raise ValueError("person must be a non-empty string")
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
                raise ValueError("ttl_s must be a positive number")
        except (ValueError, KeyError, TypeError) as e:
            log.warning("claim ignored: not {\"person\": str, \"ttl_s\": number}: %s", e)
            return
        ttl = min(float(ttl), self.cfg.decision.claim_max_ttl_s)
        log.info("claim for %r, %.1f s", person, ttl)
        if self.on_claim is not None:
            self.on_claim(person, ttl)

    # -- events ---------------------------------------------------------------------------------
    def submit(self, seq: int) -> None:
        """An event was just added to the outbox: send it soon (not delayed if the link is up)."""
        if self.connected:
            with self._map_lock:
                self._live.add(seq)
        self._wake.set()

    def inflight(self) -> int:
        with self._map_lock:
            return len(self._inflight)

    def _flush_loop(self) -> None:
        while not self._stopping.is_set() or self._wake.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("MQTT flush failed")

    def flush(self) -> int:
        """Publish pending outbox events, oldest first, up to ``max_inflight`` unacknowledged."""
        if not self.connected:
            return 0
        self.outbox.expire()
        with self._map_lock:
            busy = set(self._inflight.values())
        room = self.cfg.mqtt.max_inflight - len(busy)
        sent = 0
        if room <= 0:
            return 0
        for p in self.outbox.pending(limit=room, exclude=busy):
            with self._map_lock:
                live = p.seq in self._live
                self._live.discard(p.seq)
            payload = events.finalize(p.event, delayed=not live, now=time.time(),
                                      stale_after_s=self.cfg.outbox.stale_after_s)
            info = self.client.publish(self.t_event, payload, qos=1, retain=False)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                self._drop_from_paho([info.mid])
                break
            with self._map_lock:
                early = self._early_acks.pop(info.mid, None)
                if early is not None and time.monotonic() - early < 5.0:
                    acked = True
                else:
                    self._inflight[info.mid] = p.seq
                    acked = False
            if acked:
                self.outbox.ack(p.seq)
            sent += 1
        return sent

    # -- other topics ---------------------------------------------------------------------------
    def publish_state(self) -> None:
        if self.state is None or not self.client.is_connected():
            return
        self.client.publish(self.t_state, json.dumps(self.state(), separators=(",", ":")), qos=1, retain=True)

    def publish_telemetry(self, data: dict[str, Any]) -> None:
        if self.client.is_connected():
            self.client.publish(self.t_telemetry, json.dumps(data, separators=(",", ":")), qos=0)

    def discovery_payload(self) -> dict[str, Any]:
        d, v = self.device_id, _version()
        avty = [{"topic": self.t_availability}]

        def sensor(key: str, name: str, topic: str, template: str, unit: str | None = None,
                   **extra: Any) -> dict[str, Any]:
            c: dict[str, Any] = {"p": "sensor", "name": name, "unique_id": f"edge_verify_{d}_{key}",
                                 "state_topic": topic, "value_template": template, **extra}
            if unit:
                c["unit_of_measurement"] = unit
            return c

        return {
            "dev": {"ids": [f"edge_verify_{d}"], "name": f"edge-verify {d}", "mf": "edge-verify",
                    "mdl": "face verification door unit", "sw": v},
            "o": {"name": "edge-verify", "sw": v},
            "availability": avty,
            "qos": 1,
            "cmps": {
                "access": {"p": "event", "name": "Access", "unique_id": f"edge_verify_{d}_access",
                           "state_topic": self.t_event, "event_types": EVENT_TYPES},
                "people": sensor("people", "Enrolled people", self.t_state, "{{ value_json.people }}"),
                "camera": sensor("camera", "Camera", self.t_state, "{{ value_json.camera }}"),
                "fps": sensor("fps", "Frame rate", self.t_telemetry, "{{ value_json.fps }}", "fps"),
                "latency": sensor("latency", "Latency p95", self.t_telemetry,
                                  "{{ value_json.latency_ms_p95 }}", "ms"),
                "outbox": sensor("outbox", "Unsent events", self.t_telemetry, "{{ value_json.outbox }}"),
            },
        }

    def publish_discovery(self) -> None:
        if self.cfg.mqtt.discovery:
            self.client.publish(self.t_discovery, json.dumps(self.discovery_payload()), qos=1, retain=True)

    # -- stop -----------------------------------------------------------------------------------
    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the outbox to empty (only while connected). True when empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.count() == 0:
                return True
            if not self.connected:
                time.sleep(0.05)
                continue
            self._wake.set()
            time.sleep(0.05)
        return self.outbox.count() == 0

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Flush what the broker takes within ``flush_timeout``, publish ``offline``, disconnect."""
        drained = self.drain(flush_timeout) if self.connected else self.outbox.count() == 0
        if not drained:
            log.warning("stopping with %d unsent events kept in the outbox", self.outbox.count())
        self._stopping.set()
        self._wake.set()
        if self.client.is_connected():
            info = self.client.publish(self.t_availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._flusher.join(timeout=2.0)
