"""The lock hardware through gpiozero: a relay (``OutputDevice``) and an optional door contact (``Button``).

Fail-secure: the relay starts off, is switched on only by :meth:`Lock.unlock` for ``unlock_s`` (a grant
while open extends the same pulse), and any error while switching, and :meth:`Lock.close`, leave it off.
The contact (closed = door shut = pressed, with the pull-up by default) raises ``forced_open`` when the
door opens while locked and ``held_open`` when it stays open ``held_open_s``. On a PC set
``GPIOZERO_PIN_FACTORY=mock`` (gpiozero's own switch) to run without pins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

log = logging.getLogger(__name__)

ALARMS = ("held_open", "forced_open")


class Lock:
    def __init__(self, relay_pin: str, *, active_high: bool, unlock_s: float, contact_pin: str = "",
                 pull_up: bool = True, held_open_s: float = 30.0, bounce_s: float = 0.05,
                 on_change: Callable[[], None] | None = None,
                 on_alarm: Callable[[str], None] | None = None) -> None:
        from gpiozero import Button, OutputDevice

        self.unlock_s, self.held_open_s = unlock_s, held_open_s
        self.on_change, self.on_alarm = on_change, on_alarm
        self._lock = threading.RLock()
        self._gen = 0  # bumps at each unlock/lock: an old timer that fires late does nothing
        self._timer: threading.Timer | None = None
        self._held_timer: threading.Timer | None = None
        self.unlocks = 0
        try:
            self.relay = OutputDevice(_pin(relay_pin), active_high=active_high, initial_value=False)
        except Exception as e:
            raise ConfigError(f"relay.pin {relay_pin!r}: {e} (on a PC: GPIOZERO_PIN_FACTORY=mock)") from None
        self.contact: Any = None
        if contact_pin:
            try:
                self.contact = Button(_pin(contact_pin), pull_up=pull_up, bounce_time=bounce_s or None)
            except Exception as e:
                self.relay.off()
                self.relay.close()
                raise ConfigError(f"contact.pin {contact_pin!r}: {e}") from None
            self.contact.when_released = self._door_opened
            self.contact.when_pressed = self._door_closed

    # -- the relay ----------------------------------------------------------------------------------
    @property
    def unlocked(self) -> bool:
        return bool(self.relay.value)

    @property
    def door_open(self) -> bool | None:
        return None if self.contact is None else not self.contact.is_pressed

    def state(self) -> dict[str, Any]:
        d = self.door_open
        return {"state": "unlocked" if self.unlocked else "locked",
                "door": None if d is None else ("open" if d else "closed")}

    def unlock(self) -> None:
        """Relay on for ``unlock_s`` from now (extending a pulse already running)."""
        try:
            with self._lock:
                self._gen += 1
                gen = self._gen
                if self._timer is not None:
                    self._timer.cancel()
                was = self.unlocked
                if not was:
                    self.relay.on()
                    self.unlocks += 1
                self._timer = threading.Timer(self.unlock_s, self._relock, (gen,))
                self._timer.daemon = True
                self._timer.start()
        except Exception:
            self.lock_now()
            raise
        if not was:
            self._notify()

    def _relock(self, gen: int) -> None:
        with self._lock:
            if gen != self._gen:
                return
            self._off()
        self._notify()

    def lock_now(self) -> None:
        """Relay off now (a LOCK command, an error, a stop)."""
        with self._lock:
            self._gen += 1
            if self._timer is not None:
                self._timer.cancel()
            was = self._off()
        if was:
            self._notify()

    def _off(self) -> bool:
        was = False
        try:
            was = self.unlocked
            self.relay.off()
        except Exception:
            log.exception("cannot switch the relay off")
        return was

    # -- the door contact (gpiozero's thread) -------------------------------------------------------
    def _door_opened(self) -> None:
        try:
            if not self.unlocked:
                log.warning("door forced open: opened while locked")
                self._alarm("forced_open")
            with self._lock:
                if self._held_timer is not None:
                    self._held_timer.cancel()
                self._held_timer = threading.Timer(self.held_open_s, self._held_check)
                self._held_timer.daemon = True
                self._held_timer.start()
            self._notify()
        except Exception:
            log.exception("door contact handler failed")

    def _door_closed(self) -> None:
        try:
            with self._lock:
                if self._held_timer is not None:
                    self._held_timer.cancel()
                    self._held_timer = None
            self._notify()
        except Exception:
            log.exception("door contact handler failed")

    def _held_check(self) -> None:
        if self.door_open:
            log.warning("door held open for more than %.0f s", self.held_open_s)
            self._alarm("held_open")

    def _alarm(self, name: str) -> None:
        if self.on_alarm is not None:
            try:
                self.on_alarm(name)
            except Exception:
                log.exception("alarm handler failed")

    def _notify(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("lock state handler failed")

    def close(self) -> None:
        """Relay off, timers stopped, pins released."""
        self.lock_now()
        with self._lock:
            if self._held_timer is not None:
                self._held_timer.cancel()
        if self.contact is not None:
            self.contact.close()
        self.relay.close()


def _pin(text: str) -> int | str:
    """``"17"`` -> 17 (BCM number); ``"GPIO17"``, ``"BOARD11"`` as gpiozero reads them."""
    return int(text) if text.strip().isdigit() else text.strip()
