"""The MQTT link (paho-mqtt 2.x, ``CallbackAPIVersion.VERSION2``): availability with a Will, retained
state, events from the outbox (QoS 1, never retained), telemetry, Home Assistant device discovery and
claims.

Two threads of its own, so that the frame loop never waits for the broker:
- the **network thread** connects (logging the precise reason when it cannot: refused, TLS certificate,
  host name, plain MQTT aimed at a TLS port...), runs paho's ``loop()`` while connected, and after a
  disconnect waits (backoff ``reconnect_min_s`` doubling to ``reconnect_max_s``) and connects again with
  a **fresh paho client**, so that nothing unacknowledged survives in paho's memory: the outbox is the
  only queue, and what it still holds is sent again after the reconnect, marked ``delayed: true``
  (same ``event_id``: subscribers de-duplicate on it). An event stored while the current connection was
  up goes out ``delayed: false``;
- the **flusher** publishes outbox rows oldest first, at most ``max_inflight`` unacknowledged at a time,
  and deletes a row when paho's ``MQTTMessageInfo.is_published()`` says its PUBACK arrived.

Every paho callback catches every exception (a hostile payload cannot kill the network thread), claim
payloads are bounded before they are parsed, retained claims are ignored, and :meth:`MqttLink.healthy`
tells the daemon whether both threads are alive (a dead link is restarted and reported in ``state``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from . import events
from .claims import ClaimError, parse_claim
from .config import Config
from .discovery import device_discovery
from .mqtt_client import make_client, publish_offline
from .outbox import Outbox
from .signing import Signer

log = logging.getLogger(__name__)

DISCOVERY_MIN_INTERVAL_S = 10.0  # Home Assistant's birth message republishes discovery at most this often

F = TypeVar("F", bound=Callable[..., Any])


def _guarded(fn: F) -> F:
    """A paho callback that can never raise into paho's network loop."""

    @functools.wraps(fn)
    def wrapper(self: MqttLink, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception:
            self.callback_errors += 1
            log.exception("MQTT: %s failed (ignored)", fn.__name__)
            return None

    return wrapper  # type: ignore[return-value]


def _connect_error(e: BaseException, tls: bool) -> str:
    """One line saying why a connection attempt failed."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate was refused: {e.verify_message or e.reason}"
    if isinstance(e, ssl.CertificateError):
        return f"TLS: {e}"
    if isinstance(e, ssl.SSLError):
        reason = e.reason or str(e)
        hint = " (is this a TLS port? mqtt.tls = true expects one)" if "WRONG_VERSION" in str(reason) else ""
        return f"TLS handshake failed: {reason}{hint}"
    if tls and isinstance(e, (ConnectionResetError, ConnectionAbortedError, EOFError)):
        return ("the broker closed the connection during the TLS handshake (a plain MQTT port? "
                "mqtt.tls = true needs a TLS listener)")
    if isinstance(e, TimeoutError):
        return "timed out" + (" (the broker sent nothing: a TLS port answers a TLS handshake only?)" if not tls
                              else " during the TLS handshake")
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return f"{type(e).__name__}: {e}"


class MqttLink:
    """One device's connection to the broker."""

    def __init__(self, cfg: Config, outbox: Outbox | None, *, on_claim: Callable[[str, float], None] | None = None,
                 state: Callable[[], dict[str, Any]] | None = None,
                 on_quarantine: Callable[[int, str], None] | None = None, signer: Signer | None = None) -> None:
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
        self.on_claim, self.state, self.on_quarantine, self.signer = on_claim, state, on_quarantine, signer
        self._lock = threading.Lock()  # guards the maps below; never held while calling into paho
        self._inflight: dict[int, paho.MQTTMessageInfo] = {}  # seq -> its publish, until is_published()
        self._connected_since = math.inf  # time.time() of the current connection's CONNACK
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._client: paho.Client | None = None
        self._discovery_sent = 0.0
        self._discovery_due = False
        self.connects = 0
        self.restarts = 0
        self.callback_errors = 0
        self.claims_refused = 0
        self.last_error: str | None = None  # why the link is not connected (None while it is)
        self._refusal: str | None = None  # CONNACK refused, this attempt
        self._lost: str | None = None  # why this connection ended
        self._threads: list[threading.Thread] = []

    # -- threads --------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (retrying with backoff until it works)."""
        m = self.cfg.mqtt
        log.info("MQTT broker %s:%d%s, topics under %s/", m.host, m.port, " (TLS)" if m.tls else "", self.base)
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._net_loop, name="mqtt-net", daemon=True),
                         threading.Thread(target=self._flush_loop, name="mqtt-flush", daemon=True)]
        for t in self._threads:
            t.start()

    def attach_signer(self, signer: Signer) -> None:
        """The device key, loaded once the state directory is usable: events are signed from now on."""
        self.signer = signer
        self.publish_state()

    def attach_outbox(self, outbox: Outbox) -> None:
        """The outbox opened after the link started (it was waiting for a full disk or a lock)."""
        self.outbox = outbox
        self._wake.set()

    def healthy(self) -> bool:
        """Both threads of the link are running (whether or not the broker is reachable)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def restart(self) -> None:
        """Start the link's threads again after one of them died (counted in ``restarts``)."""
        self._stopping.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=2.0)
        self.restarts += 1
        self.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def status(self) -> dict[str, Any]:
        """For the ``state`` message: how the link is doing."""
        return {"connected": self.connected, "healthy": self.healthy(), "restarts": self.restarts,
                "last_error": self.last_error}

    def _make_client(self) -> paho.Client:
        m = self.cfg.mqtt
        c = make_client(m, self.cfg.client_id, self.t_availability)
        c.max_inflight_messages_set(m.max_inflight + 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _net_loop(self) -> None:
        m = self.cfg.mqtt
        delay = float(m.reconnect_min_s)
        last_logged: str | None = None
        while not self._stopping.is_set():
            reason: str | None = None
            self._refusal = self._lost = None
            try:
                client = self._client = self._make_client()
                client.connect(m.host, m.port, m.keepalive)
            except Exception as e:  # every way a connection attempt can fail, each said in one line
                reason = f"cannot connect to {m.host}:{m.port}: {_connect_error(e, m.tls)}"
            else:
                connects = self.connects
                rc = MQTTErrorCode.MQTT_ERR_SUCCESS
                try:
                    while not self._stopping.is_set() and rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                        rc = client.loop(timeout=0.5)
                except Exception as e:
                    self._lost = self._refusal = f"connection failed: {_connect_error(e, m.tls)}"
                if self.connects > connects:
                    reason = self._lost or f"disconnected ({rc.name})"
                    delay = float(m.reconnect_min_s)  # it worked for a while: start the backoff again
                else:
                    reason = self._refusal or (
                        f"{m.host}:{m.port} closed the connection before answering CONNECT"
                        + ("" if m.tls else " (plain MQTT aimed at a TLS port? then set mqtt.tls = true)"))
            self._disconnected()
            if self._stopping.is_set():
                break
            self.last_error = reason
            if reason != last_logged:  # the same failure again and again is logged once
                log.warning("MQTT: %s; retrying (every %.0f s at most)", reason, m.reconnect_max_s)
                last_logged = reason
            else:
                log.debug("MQTT: %s; retrying", reason)
            self._stopping.wait(delay)
            delay = min(delay * 2, float(m.reconnect_max_s))

    def _disconnected(self) -> None:
        """The connection is gone: unacknowledged events stay in the outbox and go again after the
        reconnect (the old paho client, and whatever it still held, is dropped)."""
        was = self._connected.is_set()
        self._connected.clear()
        self._sweep_acks()
        self._connected_since = math.inf
        with self._lock:
            n = len(self._inflight)
            self._inflight.clear()
        if was and n:
            log.warning("MQTT: %d unacknowledged events will be sent again (delayed)", n)

    # -- paho callbacks (network thread) --------------------------------------------------------
    @_guarded
    def _on_connect(self, client: paho.Client, userdata: Any, flags: paho.ConnectFlags, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        if reason_code.is_failure:
            self._refusal = f"broker refused the connection: {reason_code}"
            client.disconnect()
            return
        self.connects += 1
        log.info("MQTT connected to %s:%d", self.cfg.mqtt.host, self.cfg.mqtt.port)
        self.last_error = None
        client.publish(self.t_availability, "online", qos=1, retain=True)
        subs = [(self.t_claim, 1)]
        if self.cfg.mqtt.discovery:
            subs.append((self.t_ha_status, 1))
            self._publish_discovery(client)
        client.subscribe(subs)
        self.publish_state()
        self._connected_since = time.time()
        self._connected.set()
        self._wake.set()

    @_guarded
    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: paho.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        if self._connected.is_set() and not self._stopping.is_set():
            self._lost = f"disconnected: {reason_code}"
        self._connected.clear()

    @_guarded
    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        self._wake.set()  # the flusher reads the acknowledgement from the MQTTMessageInfo

    @_guarded
    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self.t_ha_status:
            if bytes(msg.payload[:16]).strip() == b"online":
                self._discovery_due = True  # sent by the flusher, at most every DISCOVERY_MIN_INTERVAL_S
                self._wake.set()
            return
        if msg.topic != self.t_claim:
            return
        if msg.retain:  # a retained claim would open the door for whoever it names, at every restart
            self.claims_refused += 1
            log.warning("claim ignored: a retained message (claims must be sent live, without retain)")
            return
        try:
            person, ttl = parse_claim(bytes(msg.payload), self.cfg.decision.claim_max_ttl_s)
        except ClaimError as e:
            self.claims_refused += 1
            if self.claims_refused <= 10 or self.claims_refused % 1000 == 0:
                log.warning("claim ignored (%d so far): %s", self.claims_refused, e)
            return
        log.info("claim for %r, %.1f s", person, ttl)
        if self.on_claim is not None:
            self.on_claim(person, ttl)

    # -- events ---------------------------------------------------------------------------------
    def submit(self, seq: int) -> None:
        """An event was just added to the outbox: send it now. It goes out ``delayed: false`` when it was
        stored while this connection was up, else (a backlog, or a resend after a reconnect) delayed."""
        self._wake.set()

    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self.flush()
                if self._discovery_due and time.monotonic() - self._discovery_sent >= DISCOVERY_MIN_INTERVAL_S:
                    log.info("Home Assistant is online: discovery published again")
                    self._discovery_due = False
                    self.publish_discovery()
                    self.publish_state()
            except Exception:
                log.exception("MQTT flush failed")
                self._stopping.wait(1.0)

    def _sweep_acks(self) -> int:
        """Delete from the outbox every event whose PUBACK has arrived; returns how many."""
        with self._lock:
            done = []
            for seq, info in list(self._inflight.items()):
                try:
                    published = info.is_published()
                except (ValueError, RuntimeError):  # never queued: send it again
                    del self._inflight[seq]
                    continue
                if published:
                    done.append(seq)
                    del self._inflight[seq]
        for seq in done:
            if self.outbox is not None:
                self.outbox.ack(seq)
        return len(done)

    def flush(self) -> int:
        """Publish pending outbox events, oldest first, up to ``max_inflight`` unacknowledged."""
        self._sweep_acks()
        client, outbox = self._client, self.outbox
        if not self.connected or client is None or outbox is None:
            return 0
        outbox.expire()
        with self._lock:
            busy = set(self._inflight)
        room = self.cfg.mqtt.max_inflight - len(busy)
        sent = 0
        if room <= 0:
            return 0
        for p in outbox.pending(limit=room, exclude=busy):
            try:
                payload = events.finalize(p.event, delayed=p.created < self._connected_since, now=time.time(),
                                          stale_after_s=self.cfg.outbox.stale_after_s, signer=self.signer)
            except (ValueError, TypeError, KeyError) as e:  # a bad row never blocks the ones behind it
                self._quarantine(p.seq, f"cannot be sent: {type(e).__name__}: {e}")
                continue
            info = client.publish(self.t_event, payload, qos=1, retain=False)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            with self._lock:
                self._inflight[p.seq] = info
            sent += 1
        for seq, reason in outbox.take_quarantined():
            self._report_quarantine(seq, reason)
        return sent

    def _quarantine(self, seq: int, reason: str) -> None:
        assert self.outbox is not None
        self.outbox.quarantine(seq, reason)
        self._report_quarantine(seq, reason)

    def _report_quarantine(self, seq: int, reason: str) -> None:
        log.error("outbox: event #%d quarantined: %s", seq, reason)
        if self.on_quarantine is not None:
            self.on_quarantine(seq, reason)

    # -- other topics ---------------------------------------------------------------------------
    def publish_state(self) -> None:
        client = self._client
        if self.state is None or client is None or not client.is_connected():
            return
        state = self.state() | ({"key_id": self.signer.key_id} if self.signer else {})
        client.publish(self.t_state, json.dumps(state, separators=(",", ":")), qos=1, retain=True)

    def publish_telemetry(self, data: dict[str, Any]) -> None:
        client = self._client
        if client is not None and client.is_connected():
            client.publish(self.t_telemetry, json.dumps(data, separators=(",", ":")), qos=0)

    def discovery_payload(self) -> dict[str, Any]:
        return device_discovery(self.device_id, self.base)

    def _publish_discovery(self, client: paho.Client) -> None:
        if self.cfg.mqtt.discovery:
            self._discovery_sent = time.monotonic()
            client.publish(self.t_discovery, json.dumps(self.discovery_payload()), qos=1, retain=True)

    def publish_discovery(self) -> None:
        client = self._client
        if client is not None and client.is_connected():
            self._publish_discovery(client)

    # -- stop -----------------------------------------------------------------------------------
    def _unsent(self) -> int:
        return self.outbox.count() if self.outbox is not None else 0

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the outbox to empty (only while connected). True when empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.connected:
            if self._unsent() == 0:
                return True
            self._wake.set()
            time.sleep(0.05)
        return self._unsent() == 0

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Flush what the broker takes within ``flush_timeout``, publish ``offline``, disconnect."""
        if not self.drain(flush_timeout):
            log.warning("stopping with %d unsent events kept in the outbox", self._unsent())
        client = self._client
        if client is not None and client.is_connected():
            publish_offline(client, self.t_availability)
        self._stopping.set()
        self._wake.set()
        if client is not None:
            client.disconnect()
        for t in self._threads:
            t.join(timeout=3.0)
