"""The checks every message on a verifier's event topic passes before the door may act on it.

In order: size, retained, topic (a configured verifier), JSON shape (bounded: no duplicate keys, no
NaN/Infinity, no huge numbers, no nesting but ``latency_ms``), signature (``unsigned``, ``unknown_key``,
``wrong_key``: trusted for another device, ``bad_signature``), ``wrong_device``, ``stale``, ``delayed``,
age by the controller's own clock (``too_old``, ``from_future``), then ``replayed`` (seq not above the
last accepted for that device and boot id). Each refusal is one word; the first failing check names it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..signing import SignatureError, verify
from .replay import ReplayStore

REASONS = ("too_large", "retained", "wrong_device", "malformed", "unsigned", "unknown_key", "wrong_key",
           "bad_signature", "stale", "delayed", "too_old", "from_future", "replayed", "not_allowed")
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_STR_FIELDS = ("event_id", "boot_id", "ts", "device_id", "event_type")
_MAX_INT_DIGITS = 19


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "accepted", or one of REASONS
    detail: str
    device: str | None = None
    event: dict[str, Any] | None = None


class Malformed(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise Malformed(f"duplicate key {k[:40]!r}")
        out[k] = v
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise Malformed("integer too large")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or len(text) > 40:
        raise Malformed("number out of range")
    return value


def _constant(text: str) -> Any:
    raise Malformed(f"{text} is not allowed")


def parse_event(payload: bytes) -> dict[str, Any]:
    """The event object in ``payload``, or :class:`Malformed`. Bounded work for any input."""
    try:
        obj = json.loads(payload.decode("utf-8"), object_pairs_hook=_pairs, parse_int=_int,
                         parse_float=_float, parse_constant=_constant)
    except Malformed:
        raise
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Malformed(f"not JSON: {str(e)[:80]}") from None
    if not isinstance(obj, dict):
        raise Malformed("not a JSON object")
    for key, value in obj.items():
        if key == "latency_ms":
            if not isinstance(value, dict) or not all(isinstance(v, (int, float)) for v in value.values()):
                raise Malformed("latency_ms must be an object of numbers")
        elif isinstance(value, (dict, list)):
            raise Malformed(f"{key[:40]!r}: nested values are not allowed")
    for key in _STR_FIELDS:
        if not isinstance(obj.get(key), str) or not 0 < len(obj[key]) <= 200:
            raise Malformed(f"{key}: missing or not a short string")
    if obj.get("schema") not in (1, 2):  # 2 adds event types and fields; a grant means the same in both
        raise Malformed("schema: not 1 or 2")
    seq = obj.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq < 2**63:
        raise Malformed("seq: missing or not a positive integer")
    if not isinstance(obj.get("delayed"), bool) or not isinstance(obj.get("stale"), bool):
        raise Malformed("delayed/stale: missing or not booleans")
    if obj.get("person") is not None and not isinstance(obj["person"], str):
        raise Malformed("person: not a string")
    if not _TS.match(obj["ts"]):
        raise Malformed("ts: not ISO-8601 UTC with milliseconds")
    return obj


def _ts(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise Malformed("ts: not a valid date") from None


class Gate:
    """Checks messages against the trusted keys ({device id: {key_id: key}}), the clock and the replay
    store. :meth:`check` never raises for any payload; a store that cannot be written raises ReplayError
    (the caller keeps the door locked)."""

    def __init__(self, keys: dict[str, dict[str, Ed25519PublicKey]], store: ReplayStore, *, topic_prefix: str,
                 max_age_s: float, max_payload: int) -> None:
        self.keys, self.store = keys, store
        self.max_age_s, self.max_payload = max_age_s, max_payload
        self.topics = {f"{topic_prefix}/{dev}/event": dev for dev in keys}
        self._owner = {kid: dev for dev, ks in keys.items() for kid in ks}

    def check(self, topic: str, payload: bytes, retained: bool, now: float) -> Verdict:
        if len(payload) > self.max_payload:
            return Verdict(False, "too_large", f"{len(payload)} bytes > {self.max_payload}")
        if retained:
            return Verdict(False, "retained", "a retained event is never acted on")
        dev = self.topics.get(topic)
        if dev is None:
            return Verdict(False, "wrong_device", f"topic {topic[:80]!r} is not a configured verifier's")
        try:
            e = parse_event(payload)
            t = _ts(e["ts"])
        except Malformed as exc:
            return Verdict(False, "malformed", str(exc), dev)
        try:
            kid = verify(e, self.keys[dev])
        except SignatureError as exc:
            kid_claimed = e.get("key_id")
            if exc.reason == "unknown_key" and isinstance(kid_claimed, str) and kid_claimed in self._owner:
                return Verdict(False, "wrong_key", f"key {kid_claimed} belongs to {self._owner[kid_claimed]}", dev)
            return Verdict(False, exc.reason, exc.detail, dev)
        where = f"seq {e['seq']} from {dev}"
        if e["device_id"] != dev:
            return Verdict(False, "wrong_device", f"{where} says device_id {e['device_id'][:64]!r}", dev)
        if e["stale"]:
            return Verdict(False, "stale", f"{where} is marked stale", dev)
        if e["delayed"]:
            return Verdict(False, "delayed", f"{where} is marked delayed (sent from the backlog)", dev)
        if now - t > self.max_age_s:
            return Verdict(False, "too_old", f"{where} was decided {now - t:.1f} s ago (max {self.max_age_s:g})",
                           dev)
        if t - now > self.max_age_s:
            return Verdict(False, "from_future", f"{where} is dated {t - now:.1f} s ahead of this clock", dev)
        if not self.store.accept(dev, e["boot_id"], e["seq"], now):
            last = self.store.last(dev, e["boot_id"])
            return Verdict(False, "replayed", f"{where} is not above the last accepted ({last})", dev)
        return Verdict(True, "accepted", f"{where} signed by {kid}", dev, e)
