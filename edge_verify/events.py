"""Access events, schema 2 (``edge_verify/schemas/event-v2.json``; ``event-v1.json`` is kept for reference:
schema 2 adds the event types ``spoof`` and ``tamper`` and the fields ``liveness`` and ``security``).

An event is built when the decision window decides, stored in the outbox (which gives it its ``seq``),
and finalised at each send (``delayed``, ``stale``). It never holds an image or a face encoding.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import security
from .decision import Verdict

if TYPE_CHECKING:
    from .signing import Signer

SCHEMA_VERSION = 2
EVENT_TYPES = ("granted", "denied", "unknown_face", "spoof", "tamper", "error")
SECURITY_LEVELS = (*security.SECURITY_LEVELS, "custom")  # "custom": an explicit tau
_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


@lru_cache(maxsize=1)
def boot_id() -> str:
    """The kernel's boot id (a new one each boot); a random one per process where there is none."""
    try:
        return _BOOT_ID_PATH.read_text().strip() or str(uuid.uuid4())
    except OSError:
        return str(uuid.uuid4())


def iso_utc(t: float) -> str:
    """``t`` (Unix seconds) as ISO-8601 UTC with milliseconds: 2025-01-31T12:00:00.123Z."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso_utc(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _finite(x: float | None, digits: int) -> float | None:
    """A rounded float, or None for None, NaN and inf (which JSON cannot carry)."""
    if x is None:
        return None
    v = float(x)
    return round(v, digits) if math.isfinite(v) else None


def make_event(verdict: Verdict, *, device_id: str, mode: str, tau: float | None, model: str | None,
               latency_ms: dict[str, float], now: float, security: str | None = None) -> dict[str, Any]:
    """The event for ``verdict``, decided at Unix time ``now``; ``seq`` is set by the outbox."""
    if verdict.event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {verdict.event_type!r}")
    if security is not None and security not in SECURITY_LEVELS:
        raise ValueError(f"unknown security level {security!r}")
    return {
        "schema": SCHEMA_VERSION,
        "event_id": str(uuid.uuid4()),
        "seq": 0,
        "boot_id": boot_id(),
        "ts": iso_utc(now),
        "device_id": device_id,
        "event_type": verdict.event_type,
        "mode": mode,
        "person": verdict.person,
        "distance": _finite(verdict.distance, 4),
        "tau": _finite(tau, 4),
        "frames": verdict.frames,
        "reason": verdict.reason[:200] if verdict.reason else None,
        "latency_ms": {k: r for k, v in latency_ms.items() if (r := _finite(v, 2)) is not None},
        "model": model,
        "liveness": _finite(verdict.liveness, 3),
        "security": security,
        "delayed": False,
        "stale": False,
    }


def finalize(event: dict[str, Any], *, delayed: bool, now: float, stale_after_s: float,
             signer: Signer | None = None) -> bytes:
    """The payload for one send: ``delayed`` as given, ``stale`` when ``now`` is over ``stale_after_s``
    after the decision; signed (``key_id``, ``sig``) last, over these final values, by ``signer``."""
    out = dict(event)
    out["delayed"] = bool(delayed)
    out["stale"] = now - parse_iso_utc(event["ts"]) > stale_after_s
    if signer is not None:
        out = signer.sign(out)
    return json.dumps(out, separators=(",", ":"), allow_nan=False).encode("utf-8")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The event JSON Schema (v2) shipped in the package."""
    text = resources.files("edge_verify").joinpath(f"schemas/event-v{SCHEMA_VERSION}.json").read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result


def validate(event: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``event`` does not follow the schema (needs jsonschema,
    a test/development dependency)."""
    import jsonschema

    jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker()).validate(event)
