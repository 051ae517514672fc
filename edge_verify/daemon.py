"""The daemon behind ``edge-verify run``: camera frames -> decisions -> outbox -> link (MQTT).

One thread runs the frame loop (read, detect + quality + encode, match, decide, store the event); the
link's own threads talk to the broker, so a slow or absent broker never holds a frame. systemd:
``READY=1`` after the model self-test and the first frame, ``WATCHDOG=1`` from the frame loop while the
link's threads are alive (a dead link is restarted; a stalled loop stops the pings), ``STOPPING=1`` on
SIGTERM/SIGINT/SIGQUIT. SIGHUP reloads the configuration (a bad one is refused and the running one
kept); SIGUSR1 logs the state.

Transient faults (a locked gallery, a full disk, a missing camera) are retried with backoff while the
daemon stays up, feeds the watchdog and reports them in ``state``: exit 2 is only for a configuration
that can never work (bad config, missing model, a gallery enrolled with another model).

Fail-secure: an error while processing a frame clears the decision window and gives an ``error`` event,
never ``granted``. An event the outbox cannot store (full disk) is kept in memory and stored later; one
that is really lost is counted in ``state`` and announced by an ``error`` event.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from . import __version__
from .camera import Frame, ReopeningSource, make_source
from .claims import ClaimInbox
from .config import Config
from .decision import Verdict
from .errors import EdgeVerifyError
from .eventlog import EventLog
from .events import boot_id, iso_utc
from .eventsink import EventSink
from .frametap import FrameTap
from .gate import FrameVerifier, Gate, verifier_from_config
from .link import Link, NullLink
from .outbox import FILENAME as OUTBOX_FILE
from .outbox import Outbox, OutboxError
from .sdnotify import Notifier, watchdog_period
from .services import Services, open_event_log
from .statedir import check_state_dir
from .telemetry import Telemetry
from .visits import loose_tau_warning

log = logging.getLogger(__name__)
T = TypeVar("T")

UNSAVED_MAX = 1000  # decisions kept in memory while the outbox cannot store them
BACKOFF_MAX_S = 30.0


def _model_key(cfg: Config) -> tuple[object, ...]:
    """The settings a FaceVerifier is built from: when a reload keeps them, the verifier is kept."""
    return cfg.model, cfg.quality, cfg.liveness, cfg.state_path


class Daemon:
    def __init__(self, cfg: Config, verifier: FrameVerifier | None = None, *,
                 reload: Callable[[], Config] | None = None, link: Link | None = None,
                 config_path: Path | None = None) -> None:
        """``verifier``: a FaceVerifier (default: built from the config); ``reload``: gives the
        configuration again on SIGHUP; ``link``: instead of the MQTT link the config describes;
        ``config_path``: the file the config came from (for the web console's enrolment worker)."""
        self.cfg = cfg
        self.config_path = config_path
        self._given_link = link
        self.verifier = verifier
        self._owns_verifier = verifier is None
        self._verifier_key: tuple[object, ...] | None = None
        self._reload = reload
        self.stop_event = threading.Event()
        self._reload_requested = threading.Event()
        self.notifier = Notifier()
        self.started = time.time()
        self.claims = ClaimInbox()
        self.outbox: Outbox | None = None
        self.link: Link = NullLink()
        self.source: ReopeningSource | None = None
        self.gate: Gate | None = None
        self.telemetry = Telemetry(cfg.mqtt.telemetry_interval_s, time.monotonic())
        self.status = "starting"  # what the daemon is doing or waiting for, in the state message
        self.sink = EventSink(cfg.device_id, cfg.device.mode, self._submit, UNSAVED_MAX)
        self.model_name: str | None = None  # the encoder's name in its manifest, once loaded here
        self.tap = FrameTap()  # observers of the frame loop: the console's live view, enrolments
        self.eventlog: EventLog | None = None
        self._alerts: queue.Queue[str] = queue.Queue()  # error events to emit from the frame loop
        self._people = 0
        self._last_ping = 0.0
        self._ping_every = min((watchdog_period() or 15.0) / 3, 5.0)

    # -- signals ------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if sig == signal.SIGHUP:
            log.info("SIGHUP: reloading the configuration")
            self._reload_requested.set()
        elif sig in (signal.SIGUSR1, signal.SIGUSR2):
            log.info("%s: state %s", sig.name, self.state())
        else:
            log.info("%s: stopping after the current frame", sig.name)
            self.stop_event.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
                        signal.SIGUSR2):
                signal.signal(sig, self._on_signal)

    # -- state --------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        v = self.verifier
        outbox = self.outbox
        try:
            unsent = outbox.count() if outbox else None
            quarantined = outbox.quarantined() if outbox else None
        except OutboxError:
            unsent = quarantined = None
        matching: dict[str, Any] = {"security": None, "tau": None}
        if self.gate is not None:
            try:
                matching = self.gate.matcher.state()
            except EdgeVerifyError:  # no one enrolled yet: no tau derived
                pass
        return {
            "schema": 1, "device_id": self.cfg.device_id, "version": __version__, "boot_id": boot_id(),
            "model": v.model_sha256 if v else None, **matching,
            "people": self._people, "mode": self.cfg.device.mode, "status": self.status,
            "camera": self.source.status if self.source else "starting",
            "started": iso_utc(self.started), "uptime_s": round(time.time() - self.started, 1),
            "outbox": unsent, "unsaved": len(self.sink.unsaved), "lost": self.sink.lost, "quarantined": quarantined,
            "claims_dropped": self.claims.dropped, "link": self.link.status(),
        }

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.notifier.status(status)
            self.link.publish_state()

    # -- run ----------------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until a stop signal (or the end of a replay with ``camera.at_end = "stop"``); 0 then.
        ConfigError/ModelError/GalleryError for what can never work."""
        self._install_signals()
        services = Services(self)
        try:
            while True:
                started = self._setup()
                try:
                    if not started:
                        return 0
                    services.start()
                    reload = self._loop()
                finally:
                    self._teardown()
                if not reload:
                    return 0
        finally:
            services.stop()
            if self.verifier is not None and self._owns_verifier:
                self.verifier.close()
            log.info("stopped after %d frames, %d events", self.telemetry.frames, self.sink.emitted)

    def _retry(self, what: str, attempt: Callable[[], T]) -> T | None:
        """``attempt()`` until it works; transient errors are retried with backoff (watchdog fed, state
        published), others raised. None when a stop came first."""
        delay, said = 0.5, ""
        while not self.stop_event.is_set():
            try:
                return attempt()
            except EdgeVerifyError as e:
                if not e.transient:
                    raise
                if str(e) != said:
                    log.warning("%s: %s; retrying", what, e)
                    said = str(e)
                self._set_status(f"waiting: {e}")
                self._wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        return None

    def _wait(self, seconds: float) -> None:
        """Sleep (stoppable), feeding the watchdog: the daemon is alive while it waits."""
        deadline = time.monotonic() + seconds
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            self._ping()
            self.stop_event.wait(min(0.5, max(0.0, deadline - time.monotonic())))

    def _setup(self) -> bool:
        """Model, link, state directory, gallery, outbox, camera; False when a stop came first."""
        cfg = self.cfg
        self.telemetry.interval_s = cfg.mqtt.telemetry_interval_s
        self.sink.device_id, self.sink.mode = cfg.device_id, cfg.device.mode
        self._load_verifier()
        assert self.verifier is not None
        mqtt_link = None
        if self._given_link is not None:
            self.link = self._given_link
        elif cfg.mqtt.enabled:
            from .mqtt import MqttLink

            self.link = mqtt_link = MqttLink(cfg, None, on_claim=self.claims.put, state=self.state,
                                             on_quarantine=self._on_quarantine)
        else:
            self.link = NullLink()
        self.link.start()
        if self._retry("state directory", lambda: check_state_dir(cfg.state_path)) is None:
            return False
        if mqtt_link is not None:  # events are signed at each send; the outbox (so any send) comes later
            from .signing import Signer

            signer = self._retry("signing key", lambda: Signer.load_or_create(cfg.state_path))
            if signer is None:
                return False
            mqtt_link.attach_signer(signer)
        people = self._retry("gallery", self.verifier.check_gallery)
        if people is None:
            return False
        self._people = people
        log.info("model %s, %d people enrolled, mode %s, security %s", self.verifier.model_sha256[:12],
                 self._people, cfg.device.mode, "custom (model.tau)" if cfg.model.tau else cfg.decision.security)
        if not self._people:
            log.warning("no one is enrolled in %s: every face will be unknown", cfg.state_path)
        o = cfg.outbox
        self.outbox = self._retry("outbox", lambda: Outbox(cfg.state_path / OUTBOX_FILE, o.max_events, o.max_age_s))
        if self.outbox is None:
            return False
        backlog = self.outbox.count()
        if backlog:
            log.info("outbox: %d events from before the restart will be sent (delayed)", backlog)
        self.link.attach_outbox(self.outbox)
        self.sink.outbox = self.outbox
        self.eventlog = open_event_log(cfg, self.sink)
        self.gate = Gate(cfg, self.verifier, self.sink, self.claims, tap=self.tap)
        try:
            self.gate.matcher.state()  # derive (and log) the level's taus for this gallery now
        except EdgeVerifyError:
            pass
        c = cfg.camera
        self.source = ReopeningSource(make_source(c), c.reopen_min_s, c.reopen_max_s, c.read_timeout_s,
                                      stop=self.stop_event, on_wait=self._camera_wait)
        self._set_status("running")
        return True

    def _load_verifier(self) -> None:
        key = _model_key(self.cfg)
        if self.verifier is not None and (not self._owns_verifier or key == self._verifier_key):
            if self._verifier_key is None:
                self.verifier.self_test()
                self._verifier_key = key
            return
        if self.verifier is not None:
            self.verifier.close()
        self.notifier.status("loading the model")
        fv = verifier_from_config(self.cfg)
        log.info("face detector: %s, %s", fv.detector.runner, fv.detector.model_path.name)
        fv.self_test()
        d = self.cfg.decision
        if self.cfg.model.tau is not None and (warning := loose_tau_warning(self.cfg.model.tau, fv.manifest, d.k, d.n)):
            log.warning("%s", warning)
        self.verifier, self._verifier_key, self.model_name = fv, key, fv.manifest.name

    def _teardown(self) -> None:
        self.notifier.stopping("stopping" if not self._reload_requested.is_set() else "reloading")
        if self.source is not None:
            self.source.close()
            self.source = None
        self.sink.store()
        self.link.stop(self.cfg.outbox.flush_timeout_s)
        if self.sink.unsaved:
            log.error("%d events could not be stored and are lost", len(self.sink.unsaved))
        self.sink.outbox = None
        self.sink.recorder = self.sink.snapshots = None
        if self.eventlog is not None:
            self.eventlog.close()
            self.eventlog = None
        if self.outbox is not None:
            left = self.outbox.count()
            if left:
                log.info("outbox: %d events kept for the next start", left)
            self.outbox.close()
            self.outbox = None

    def _loop(self) -> bool:
        """The frame loop; True when it ended for a reload."""
        assert self.source is not None
        ready = False
        last_camera = ""
        while not self.stop_event.is_set():
            if self._reload_requested.is_set() and self._apply_reload():
                return True
            frame = self.source.read()
            if frame is None:
                if self.stop_event.is_set():
                    break
                log.info("camera %s: end of input", self.source.source.name)
                if not ready:
                    self.notifier.ready("source ended before the first frame")
                    ready = True
                if self.cfg.camera.at_end == "stop":
                    break
                return self._idle()
            self.handle(frame)
            if not ready:
                log.info("ready: first frame from %s", self.source.source.name)
                self.notifier.ready(f"{self._people} people, camera {self.source.source.name}")
                ready = True
            if self.source.status != last_camera:
                last_camera = self.source.status
                if self.status.startswith("waiting for the camera"):
                    self._set_status("running")
                self.link.publish_state()
            self._housekeeping()
        return False

    def _idle(self) -> bool:
        """The source ended and camera.at_end = wait: keep the link, claims and watchdog alive until a
        stop (False) or a reload (True)."""
        while not self.stop_event.wait(0.5):
            if self._reload_requested.is_set() and self._apply_reload():
                return True
            self._tick()
            self._housekeeping()
        return False

    def _apply_reload(self) -> bool:
        """Read the configuration again; True to restart with it, False when it is refused."""
        self._reload_requested.clear()
        if self._reload is None:
            log.warning("SIGHUP: no configuration to reload from; the running one stays")
            return False
        try:
            new = self._reload()
        except EdgeVerifyError as e:
            log.error("reload refused, the running configuration stays: %s", e)
            return False
        self.cfg = new
        log.info("configuration reloaded")
        return True

    def _camera_wait(self) -> None:
        """While the camera is being reopened: the daemon is alive, and says what it waits for."""
        if self.source is not None:
            self._set_status(f"waiting for the camera: {self.source.last_error or 'reopening'}")
        self._tick()
        self._housekeeping()

    # -- periodic work ------------------------------------------------------------------------------
    def _ping(self) -> None:
        """WATCHDOG=1, only while the link is healthy (a dead link is restarted first)."""
        now = time.monotonic()
        if now - self._last_ping < self._ping_every:
            return
        if not self.link.healthy():
            log.error("the MQTT link's threads died: restarting the link")
            try:
                self.link.restart()
            except Exception:
                log.exception("the MQTT link could not be restarted")
            if not self.link.healthy():
                return  # no WATCHDOG=1: systemd restarts the service
        self.notifier.watchdog()
        self._last_ping = now

    def _housekeeping(self) -> None:
        self._ping()
        self.sink.store()
        self._set_status(f"degraded: {self.sink.degraded}" if self.sink.degraded else
                         "running" if self.status.startswith("degraded") else self.status)
        while not self._alerts.empty():
            self._emit(Verdict("error", None, None, 0, self._alerts.get_nowait()))
        if lost := self.sink.unannounced_losses():
            self._emit(Verdict("error", None, None, 0, f"events_lost: {lost} decisions could not be stored"))
        now = time.monotonic()
        if self.telemetry.due(now):
            self._report(now)

    def _report(self, now: float) -> None:
        data = {"ts": iso_utc(time.time()), **self.telemetry.report(now),
                "outbox": self.outbox.count() if self.outbox else None,
                "camera": self.source.status if self.source else None}
        log.debug("telemetry %s", data)
        link = "MQTT up" if self.link.connected else "MQTT down"
        self.notifier.status(f"{data['fps']} fps, p95 {data['latency_ms_p95']} ms, {self.sink.emitted} "
                             f"events, {data['outbox']} unsent, camera {data['camera']}, {link}")
        self.link.publish_telemetry(data)
        try:
            self._people = len(self.verifier.people()) if self.verifier else 0
        except EdgeVerifyError as e:
            log.warning("gallery: %s", e)
        self.link.publish_state()

    # -- claims -------------------------------------------------------------------------------------
    def handle(self, frame: Frame) -> None:
        """One frame through the gate, its timings into the telemetry."""
        assert self.gate is not None
        self.telemetry.frame(self.gate.handle(frame))

    def _tick(self) -> None:
        if self.gate is not None:
            self.gate.tick()

    def _on_quarantine(self, seq: int, reason: str) -> None:
        self._alerts.put(f"event #{seq} quarantined: {reason}"[:200])

    def _emit(self, verdict: Verdict) -> None:
        v = self.verifier
        self.sink.emit(verdict, {}, tau=v.tau if v else None, model=v.model_sha256 if v else None)

    def _submit(self, seq: int) -> None:
        self.link.submit(seq)
