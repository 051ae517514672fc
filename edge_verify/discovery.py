"""Home Assistant MQTT device discovery for one verifier: the door as a device with an ``event`` entity
(every event type the schema has) and sensors read from the ``state`` and ``telemetry`` topics."""

from __future__ import annotations

from typing import Any

from . import __version__
from .events import EVENT_TYPES


def device_discovery(device_id: str, base: str) -> dict[str, Any]:
    """The payload for ``<discovery_prefix>/device/<device_id>/config``; ``base`` is the device's topic
    prefix (``edge-verify/<device_id>``)."""
    d, v = device_id, __version__
    state, telemetry = f"{base}/state", f"{base}/telemetry"

    def sensor(key: str, name: str, topic: str, template: str, unit: str | None = None) -> dict[str, Any]:
        c: dict[str, Any] = {"p": "sensor", "name": name, "unique_id": f"edge_verify_{d}_{key}",
                             "state_topic": topic, "value_template": template}
        if unit:
            c["unit_of_measurement"] = unit
        return c

    return {
        "dev": {"ids": [f"edge_verify_{d}"], "name": f"edge-verify {d}", "mf": "edge-verify",
                "mdl": "face verification door unit", "sw": v},
        "o": {"name": "edge-verify", "sw": v},
        "availability": [{"topic": f"{base}/availability"}],
        "qos": 1,
        "cmps": {
            "access": {"p": "event", "name": "Access", "unique_id": f"edge_verify_{d}_access",
                       "state_topic": f"{base}/event", "event_types": list(EVENT_TYPES)},
            "people": sensor("people", "Enrolled people", state, "{{ value_json.people }}"),
            "camera": sensor("camera", "Camera", state, "{{ value_json.camera }}"),
            "status": sensor("status", "Status", state, "{{ value_json.status }}"),
            "fps": sensor("fps", "Frame rate", telemetry, "{{ value_json.fps }}", "fps"),
            "latency": sensor("latency", "Latency p95", telemetry, "{{ value_json.latency_ms_p95 }}", "ms"),
            "outbox": sensor("outbox", "Unsent events", telemetry, "{{ value_json.outbox }}"),
        },
    }
