"""Events: schema v1 (validated with jsonschema), ids, timestamps, no biometric payload."""

from __future__ import annotations

import json
import re
import time
import uuid

import jsonschema
import pytest

from edge_verify import events
from edge_verify.decision import Verdict

SHA = "a" * 64


def _event(v: Verdict) -> dict[str, object]:
    e = events.make_event(v, device_id="door", mode="identify", tau=1.38, model=SHA,
                          latency_ms={"detect": 4.2, "embed": 13.0}, now=time.time())
    e["seq"] = 7
    return e


@pytest.mark.parametrize("verdict", [
    Verdict("granted", "alice", 0.91234567, 3),
    Verdict("denied", "bob", None, 0, "claim_expired"),
    Verdict("unknown_face", None, 1.7, 3),
    Verdict("error", None, None, 0, "RuntimeError: x"),
])
def test_events_follow_the_schema(verdict: Verdict) -> None:
    e = _event(verdict)
    events.validate(e)
    payload = json.loads(events.finalize(e, delayed=True, now=time.time(), stale_after_s=10))
    events.validate(payload)
    assert payload["delayed"] is True and payload["stale"] is False
    assert uuid.UUID(payload["event_id"]).version == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["ts"])
    assert payload["boot_id"] == events.boot_id()
    # nothing that looks like an image or an encoding
    assert len(events.finalize(e, delayed=False, now=time.time(), stale_after_s=10)) < 1000
    assert not any(isinstance(v, list) for v in payload.values())


def test_stale_when_sent_late() -> None:
    e = _event(Verdict("granted", "alice", 0.9, 3))
    late = json.loads(events.finalize(e, delayed=True, now=time.time() + 11, stale_after_s=10))
    assert late["stale"] is True


def test_schema_rejects_extra_fields_and_bad_types() -> None:
    e = _event(Verdict("granted", "alice", 0.9, 3))
    for bad in ({"embedding": [0.1] * 128}, {"event_type": "opened"}, {"seq": 0}, {"ts": "yesterday"},
                {"event_id": "1234"}):
        with pytest.raises(jsonschema.ValidationError):
            events.validate({**e, **bad})


def test_iso_roundtrip() -> None:
    t = 1700000000.123
    assert events.iso_utc(t) == "2023-11-14T22:13:20.123Z"
    assert abs(events.parse_iso_utc(events.iso_utc(t)) - t) < 1e-3
