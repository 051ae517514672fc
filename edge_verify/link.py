"""What the daemon needs from its link to subscribers: :class:`Link`, implemented by
:class:`edge_verify.mqtt.MqttLink`, and :class:`NullLink` when MQTT is off (events stay in the outbox)."""

from __future__ import annotations

from typing import Any, Protocol

from .outbox import Outbox


class Link(Protocol):
    @property
    def connected(self) -> bool: ...

    def start(self) -> None: ...

    def attach_outbox(self, outbox: Outbox) -> None: ...

    def healthy(self) -> bool: ...

    def restart(self) -> None: ...

    def submit(self, seq: int) -> None: ...

    def publish_state(self) -> None: ...

    def publish_telemetry(self, data: dict[str, Any]) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def stop(self, flush_timeout: float = 5.0) -> None: ...


class NullLink:
    """``mqtt.enabled = false``: nothing is published; events wait in the outbox."""

    connected = False

    def start(self) -> None:
        pass

    def attach_outbox(self, outbox: Outbox) -> None:
        pass

    def healthy(self) -> bool:
        return True

    def restart(self) -> None:
        pass

    def submit(self, seq: int) -> None:
        pass

    def publish_state(self) -> None:
        pass

    def publish_telemetry(self, data: dict[str, Any]) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"enabled": False}

    def stop(self, flush_timeout: float = 5.0) -> None:
        pass
