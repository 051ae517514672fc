"""``edge-verify run`` (camera frames -> decisions -> outbox -> MQTT events) and ``check-config``.

One thread runs the frame loop (read, detect + quality + encode, match, decide, store the event); paho's
thread and the flusher talk to the broker, so a slow or absent broker never holds a frame. systemd:
``READY=1`` after the model self-test and the first frame, ``WATCHDOG=1`` from the frame loop (a stalled
camera stops the pings), ``STOPPING=1`` on SIGTERM/SIGINT. A stop finishes the current frame, flushes
the outbox as far as the broker allows, publishes ``offline`` and returns 0.

Fail-secure: an error while processing a frame clears the decision window and gives an ``error`` event,
never ``granted``.

Exit status: 0 after a clean stop (signal, or the end of a replay with ``camera.at_end = "stop"``);
2 for a configuration, model or state-directory error (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from . import __version__
from . import config as config_mod
from .camera import Frame, ReopeningSource, make_source
from .config import CAMERA_TYPES, Config
from .decision import MISMATCH, UNKNOWN, DecisionWindow, Verdict, Vote
from .errors import ConfigError, EdgeVerifyError, GalleryError, ModelError, UnknownPersonError
from .events import boot_id, iso_utc, make_event
from .outbox import FILENAME as OUTBOX_FILE
from .outbox import Outbox, OutboxError
from .sdnotify import Notifier, watchdog_period

log = logging.getLogger(__name__)


# -- command line -------------------------------------------------------------------------------------
def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file (default: $CONFIGURATION_DIRECTORY/config.toml, "
                   "else /etc/edge-verify/config.toml, else built-in defaults)")
    g = p.add_argument_group("overrides of the config file")
    g.add_argument("--source", help="camera.source: an image directory, a video file, a camera index, a URL")
    g.add_argument("--camera", choices=CAMERA_TYPES, help="camera.type (default: guessed from --source)")
    g.add_argument("--fps", type=float, help="camera.fps")
    g.add_argument("--at-end", choices=("stop", "wait", "loop"), help="camera.at_end for directory/video")
    g.add_argument("--broker", metavar="HOST[:PORT]", help="mqtt.host and mqtt.port")
    g.add_argument("--no-mqtt", action="store_true", help="mqtt.enabled = false (events stay in the outbox)")
    g.add_argument("--device-id", help="device.id")
    g.add_argument("--state-dir", help="device.state_dir (gallery and outbox)")
    g.add_argument("--mode", choices=("identify", "claim"), help="device.mode")
    g.add_argument("--model", help="model.name: bundled encoder name or .tflite path")
    g.add_argument("--tau", type=float, help="model.tau")
    g.add_argument("--threads", type=int, help="model.threads")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-verify run``."""
    _overrides(p)


def add_check_config_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-verify check-config``."""
    _overrides(p)
    p.add_argument("--json", action="store_true", help="print the effective configuration as JSON")
    p.add_argument("--no-model", action="store_true", help="do not load the model to check it")
    p.add_argument("--print-default", action="store_true",
                   help="print the commented default configuration (a starting config.toml) and exit")


def _guess_camera(source: str) -> str:
    p = Path(source)
    if p.is_dir():
        return "directory"
    if p.is_file():
        return "video"
    return "opencv"


def parse_broker(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6addr]:port`` or a bare IPv6 address -> (host, port or None)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"--broker: expected [IPv6]:PORT, got {text!r}")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a host name, or an IPv6 address without a port
        host, port = text, ""
    if not host:
        raise ConfigError(f"--broker: no host in {text!r}")
    if port and not port.isdigit():
        raise ConfigError(f"--broker: port must be a number, got {port!r}")
    return host, int(port) if port else None


def config_from_args(args: argparse.Namespace) -> Config:
    """The config file with the command-line overrides applied."""
    g = lambda name: getattr(args, name, None)  # noqa: E731
    camera: dict[str, Any] = {"source": g("source"), "type": g("camera"), "fps": g("fps"),
                              "at_end": g("at_end")}
    if g("source") and not g("camera"):
        camera["type"] = _guess_camera(str(g("source")))
    mqtt: dict[str, Any] = {}
    if g("broker"):
        host, port = parse_broker(str(g("broker")))
        mqtt["host"] = host
        if port is not None:
            mqtt["port"] = port
    if g("no_mqtt"):
        mqtt["enabled"] = False
    overrides = {
        "camera": camera,
        "mqtt": mqtt,
        "device": {"id": g("device_id"), "state_dir": g("state_dir"), "mode": g("mode")},
        "model": {"name": g("model"), "tau": g("tau"), "threads": g("threads")},
    }
    return config_mod.load(g("config"), overrides)


def check_state_dir(path: Path) -> None:
    """Create the state directory if needed; ConfigError when it cannot be written."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # the gallery and outbox are biometric data
    except OSError as e:
        raise ConfigError(f"device.state_dir: cannot create {path}: {e.strerror}") from None
    if not path.is_dir():
        raise ConfigError(f"device.state_dir: not a directory: {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"device.state_dir: not writable: {path}")
    probe = path / ".write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"device.state_dir: not writable: {path}: {e.strerror}") from None


def check_config(args: argparse.Namespace) -> int:
    """Validate the configuration (and the model, password file, state directory); 0 when usable."""
    if getattr(args, "print_default", False):
        print(config_mod.default_config_text(), end="")
        return 0
    cfg = config_from_args(args)
    cfg.password()  # readable when named
    state = cfg.state_path
    if state.exists() and not (state.is_dir() and os.access(state, os.W_OK | os.X_OK)):
        raise ConfigError(f"device.state_dir: not a writable directory: {state}")
    if not getattr(args, "no_model", False):
        from .models import resolve_encoder

        manifest = resolve_encoder(cfg.model.name or None)
        model = f"{manifest.name} ({manifest.sha256[:12]}), tau {cfg.model.tau or manifest.tau}"
    else:
        model = cfg.model.name or "bundled default"
    if getattr(args, "json", False):
        out = cfg.to_dict()
        out["effective"] = {"device_id": cfg.device_id, "state_dir": str(cfg.state_path),
                            "client_id": cfg.client_id}
        print(json.dumps(out, indent=2))
    else:
        m = cfg.mqtt
        broker = f"{m.host}:{m.port}{' TLS' if m.tls else ''}" if m.enabled else "disabled"
        print(f"config OK: device {cfg.device_id}, mode {cfg.device.mode}, camera {cfg.camera.type}"
              f"{' ' + cfg.camera.source if cfg.camera.source else ''}, model {model}, broker {broker}, "
              f"state {cfg.state_path}")
    return 0


def run(args: argparse.Namespace) -> int:
    """``edge-verify run``."""
    cfg = config_from_args(args)
    if not getattr(args, "debug", False) and cfg.log.level != "INFO":
        logging.getLogger().setLevel(cfg.log.level)
    return Daemon(cfg).run()


# -- the daemon ---------------------------------------------------------------------------------------
def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


class Daemon:
    def __init__(self, cfg: Config, verifier: Any = None) -> None:
        self.cfg = cfg
        self.verifier = verifier
        self.stop_event = threading.Event()
        self.claims: queue.Queue[tuple[str, float]] = queue.Queue()
        d = cfg.decision
        self.window = DecisionWindow(d.k, d.n, d.window_s, d.cooldown_s, d.unknown_cooldown_s,
                                     cfg.device.mode)
        self.notifier = Notifier()
        self.started = time.time()
        self.outbox: Outbox | None = None
        self.link: Any = None
        self.source: ReopeningSource | None = None
        self.frames = 0
        self.events = 0
        self._frame_mono = (0.0, time.monotonic())  # (last frame ts, monotonic then)
        self._stage_ms: dict[str, list[float]] = {}  # per stage, this telemetry window; "total" per frame
        self._last_telemetry = time.monotonic()
        self._people = 0

    # -- signals ------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping after the current frame", signal.Signals(signum).name)
        self.stop_event.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)

    # -- setup --------------------------------------------------------------------------------------
    def _load_verifier(self) -> None:
        if self.verifier is None:
            from .detect import FaceDetector
            from .pipeline import FaceVerifier
            from .quality import QualityThresholds

            q = self.cfg.quality
            limits = QualityThresholds(min_face=q.min_face, min_sharpness=q.min_sharpness, max_yaw=q.max_yaw,
                                       max_pitch=q.max_pitch, max_roll=q.max_roll, min_score=q.min_score)
            detector = FaceDetector(score_threshold=min(0.5, q.min_score), max_side=q.detect_max_side,
                                    pad_retry=False)
            self.verifier = FaceVerifier(model=self.cfg.model.name or None, state_dir=self.cfg.state_path,
                                         tau=self.cfg.model.tau, num_threads=self.cfg.model.threads,
                                         quality=limits, detector=detector)
        self._self_test()
        self._people = len(self.verifier.people())
        log.info("model %s (sha256 %s), tau %.3f, %d people enrolled, mode %s",
                 getattr(getattr(self.verifier, "manifest", None), "name", "?"),
                 self.verifier.model_sha256[:12],
                 self.verifier.tau, self._people, self.cfg.device.mode)
        if not self._people:
            log.warning("no one is enrolled in %s: every face will be unknown", self.cfg.state_path)

    def _self_test(self) -> None:
        """Encode a blank crop and run detection on a blank frame: the interpreter works and gives a
        unit-length encoding."""
        e = self.verifier.embedder
        w, h = e.input_size
        emb = e.embed(np.full((h, w, 3), 128, np.uint8))
        norm = float(np.linalg.norm(emb))
        if emb.shape != (e.embedding_size,) or not np.all(np.isfinite(emb)) or abs(norm - 1) > 0.05:
            raise ModelError(f"model self-test failed: encoding of shape {emb.shape}, norm {norm:.3f}")
        self.verifier.process(np.zeros((120, 160, 3), np.uint8))

    def state(self) -> dict[str, Any]:
        v = self.verifier
        return {
            "schema": 1, "device_id": self.cfg.device_id, "version": __version__, "boot_id": boot_id(),
            "model": getattr(v, "model_sha256", None), "tau": getattr(v, "tau", None),
            "people": self._people, "mode": self.cfg.device.mode,
            "camera": self.source.status if self.source else "starting",
            "started": iso_utc(self.started), "uptime_s": round(time.time() - self.started, 1),
            "outbox": self.outbox.count() if self.outbox else None,
        }

    def _on_claim(self, person: str, ttl: float) -> None:
        self.claims.put((person, ttl))

    def _now_ts(self) -> float:
        ts, mono = self._frame_mono
        return ts + (time.monotonic() - mono)

    # -- run ----------------------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        cfg = self.cfg
        state_dir = cfg.state_path
        check_state_dir(state_dir)
        self.notifier.status("loading the model")
        self._load_verifier()
        try:
            self.outbox = Outbox(state_dir / OUTBOX_FILE, cfg.outbox.max_events, cfg.outbox.max_age_s)
        except OutboxError as e:
            raise ConfigError(f"device.state_dir: {e}") from None
        backlog = self.outbox.count()
        if backlog:
            log.info("outbox: %d events from before the restart will be sent (delayed)", backlog)
        if cfg.mqtt.enabled:
            from .mqtt import MqttLink

            self.link = MqttLink(cfg, self.outbox, on_claim=self._on_claim, state=self.state)
            self.link.start()
        c = cfg.camera
        self.source = ReopeningSource(make_source(c), c.reopen_min_s, c.reopen_max_s, c.read_timeout_s,
                                      stop=self.stop_event)
        wd = watchdog_period()
        ping_every = min(wd / 3, 5.0) if wd else 5.0
        last_ping = 0.0
        ready = False
        last_status = ""
        try:
            while not self.stop_event.is_set():
                frame = self.source.read()
                if frame is None:
                    if self.stop_event.is_set():
                        break
                    log.info("camera %s: end of input", self.source.source.name)
                    if cfg.camera.at_end == "stop":
                        break
                    if not ready:
                        self.notifier.ready("source ended before the first frame")
                        ready = True
                    self._idle()
                    break
                self._process(frame)
                now = time.monotonic()
                if not ready:
                    log.info("ready: first frame from %s", self.source.source.name)
                    self.notifier.ready(f"{self._people} people, camera {self.source.source.name}")
                    ready = True
                if now - last_ping >= ping_every:
                    self.notifier.watchdog()
                    last_ping = now
                if self.source.status != last_status:
                    last_status = self.source.status
                    if self.link is not None:
                        self.link.publish_state()
                self._telemetry(now)
        finally:
            self._shutdown()
        return 0

    def _idle(self) -> None:
        """The source ended and camera.at_end = wait: keep the link (and the watchdog) alive until stop."""
        wd = watchdog_period()
        while not self.stop_event.wait(min(wd / 3, 0.5) if wd else 0.5):
            self.notifier.watchdog()
            self._expire_claim()
            self._telemetry(time.monotonic())

    def _shutdown(self) -> None:
        self.notifier.stopping("stopping")
        if self.source is not None:
            self.source.close()
        if self.link is not None:
            self.link.stop(self.cfg.outbox.flush_timeout_s)
        if self.outbox is not None:
            left = self.outbox.count()
            if left:
                log.info("outbox: %d events kept for the next start", left)
            self.outbox.close()
        if self.verifier is not None and hasattr(self.verifier, "close"):
            self.verifier.close()
        log.info("stopped after %d frames, %d events", self.frames, self.events)

    # -- frames -------------------------------------------------------------------------------------
    def _take_claims(self, ts: float) -> None:
        """Claims received on MQTT since the last frame start now (on the frames' clock)."""
        while not self.claims.empty():
            person, ttl = self.claims.get_nowait()
            if self.cfg.device.mode != "claim":
                log.warning("claim for %r ignored: device.mode is identify", person)
                continue
            previous = self.window.set_claim(person, ts, ttl)
            if previous is not None:
                self._emit(previous, {})

    def _expire_claim(self) -> None:
        now = self._now_ts()
        self._take_claims(now)
        verdict = self.window.tick(now)
        if verdict is not None:
            self._emit(verdict, {})

    def _process(self, frame: Frame) -> None:
        self.frames += 1
        self._frame_mono = (frame.ts, time.monotonic())
        self._take_claims(frame.ts)
        t0 = time.perf_counter()
        latency: dict[str, float] = {}
        try:
            verdict = self._decide(frame, latency)
        except Exception as e:
            log.exception("frame %s: processing failed", frame.name)
            verdict = self.window.error(frame.ts, f"{type(e).__name__}: {e}")
        latency["total"] = (time.perf_counter() - t0) * 1000
        for k, v in latency.items():
            self._stage_ms.setdefault(k, []).append(v)
        if verdict is not None:
            self._emit(verdict, latency)

    def _faces(self, frame: Frame) -> Any:
        """Detect, check and encode the faces of a frame. With a ``lores`` stream (picamera2), detection
        runs on it and the faces are aligned and encoded from the full-size ``image``."""
        q = self.cfg.quality
        return self.verifier.process(frame.image, only_ok=q.require_ok, max_faces=q.max_faces,
                                     detect_image=frame.lores)

    def _decide(self, frame: Frame, latency: dict[str, float]) -> Verdict | None:
        v = self.verifier
        claim = self.window.claim.person if self.window.claim is not None else None
        if self.cfg.device.mode == "claim" and claim is None:
            return None  # nothing to verify against: no work until a claim arrives
        result = self._faces(frame)
        latency.update(getattr(result, "timings_ms", {}))
        faces = [f for f in result.faces if f.embedding is not None]
        if not faces:
            return self.window.observe(Vote(frame.ts, None))
        t = time.perf_counter()
        try:
            decision = v.match(faces[0].embedding, claim=claim)
        except UnknownPersonError:
            self.window.claim = None
            return Verdict("denied", claim, None, 0, "unknown_person")
        except GalleryError:
            if claim is not None:
                raise
            decision = None  # no one enrolled: every face is unknown
        latency["match"] = (time.perf_counter() - t) * 1000
        if decision is None:
            label, distance = UNKNOWN, None
        elif claim is not None:
            label, distance = (claim if decision.accepted else MISMATCH), decision.distance
        else:
            label = decision.person if decision.accepted and decision.person else UNKNOWN
            distance = decision.distance
        log.debug("frame %s: %s d=%s", frame.name, label.replace("\x00", ""), distance)
        return self.window.observe(Vote(frame.ts, label, distance))

    def _emit(self, verdict: Verdict, latency: dict[str, float]) -> None:
        assert self.outbox is not None
        event = make_event(verdict, device_id=self.cfg.device_id, mode=self.cfg.device.mode,
                           tau=getattr(self.verifier, "tau", None),
                           model=getattr(self.verifier, "model_sha256", None), latency_ms=latency,
                           now=time.time())
        try:
            seq = self.outbox.add(event)
        except OutboxError as e:
            log.error("event %s for %s lost: %s", verdict.event_type, verdict.person, e)
            return
        self.events += 1
        log.info("event #%d %s person=%s distance=%s frames=%d%s", seq, verdict.event_type, verdict.person,
                 event["distance"], verdict.frames, f" ({verdict.reason})" if verdict.reason else "")
        if self.link is not None:
            self.link.submit(seq)

    def _telemetry(self, now: float) -> None:
        elapsed = now - self._last_telemetry
        if elapsed < self.cfg.mqtt.telemetry_interval_s:
            return
        totals = self._stage_ms.get("total", [])
        data = {
            "ts": iso_utc(time.time()), "fps": round(len(totals) / elapsed, 2), "frames": self.frames,
            "events": self.events, "latency_ms_p50": _percentile(totals, 50),
            "latency_ms_p95": _percentile(totals, 95),
            "stages_ms_p50": {k: _percentile(v, 50) for k, v in self._stage_ms.items()},
            "outbox": self.outbox.count() if self.outbox else None,
            "camera": self.source.status if self.source else None,
        }
        log.debug("telemetry %s", data)
        link = "MQTT up" if self.link is not None and self.link.connected else "MQTT down"
        self.notifier.status(f"{data['fps']} fps, p95 {data['latency_ms_p95']} ms, {self.events} events, "
                             f"{data['outbox']} unsent, camera {data['camera']}, {link}")
        if self.link is not None:
            self.link.publish_telemetry(data)
            self._people = len(self.verifier.people())
            self.link.publish_state()
        self._stage_ms = {}
        self._last_telemetry = now


__all__ = ["Daemon", "EdgeVerifyError", "add_check_config_arguments", "add_run_arguments", "check_config",
           "config_from_args", "run"]
