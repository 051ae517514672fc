"""The command line of the daemon: ``edge-verify run`` and ``edge-verify check-config`` (arguments,
overrides of the config file, and the check itself). The daemon proper is :mod:`edge_verify.daemon`."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import validate
from .config import AT_END, CAMERA_TYPES, MODES, Config, parse_broker
from .errors import ConfigError

log = logging.getLogger(__name__)


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file (default: $CONFIGURATION_DIRECTORY/config.toml, "
                   "else /etc/edge-verify/config.toml, else built-in defaults)")
    g = p.add_argument_group("overrides of the config file")
    g.add_argument("--source", help="camera.source: an image directory, a video file, a camera index, a URL")
    g.add_argument("--camera", choices=CAMERA_TYPES, help="camera.type (default: guessed from --source)")
    g.add_argument("--fps", type=finite_float, help="camera.fps")
    g.add_argument("--at-end", choices=AT_END, help="camera.at_end for directory/video")
    g.add_argument("--broker", metavar="HOST[:PORT]", help="mqtt.host and mqtt.port")
    g.add_argument("--no-mqtt", action="store_true", help="mqtt.enabled = false (events stay in the outbox)")
    g.add_argument("--device-id", help="device.id")
    g.add_argument("--state-dir", help="device.state_dir (gallery and outbox)")
    g.add_argument("--mode", choices=MODES, help="device.mode")
    g.add_argument("--model", help="model.name: bundled encoder name or .tflite path")
    g.add_argument("--tau", type=tau_value, help="model.tau")
    g.add_argument("--threads", type=int, help="model.threads")


def finite_float(text: str) -> float:
    """argparse type: a finite number (nan and inf would switch off every comparison made with them)."""
    try:
        return validate.finite_float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def tau_value(text: str) -> float:
    """argparse type: a distance threshold, 0 < tau < 4 (squared L2 between unit vectors)."""
    try:
        return validate.check_tau(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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


def check_config(args: argparse.Namespace) -> int:
    """Validate the configuration (and the model, password file, state directory); 0 when usable."""
    if getattr(args, "print_default", False):
        print(config_mod.default_config_text(), end="")
        return 0
    cfg = config_from_args(args)
    cfg.password()  # readable when named
    from .access import configured_zone

    configured_zone(cfg.access.timezone)
    state = cfg.state_path
    if state.exists() and not (state.is_dir() and os.access(state, os.W_OK | os.X_OK)):
        raise ConfigError(f"device.state_dir: not a writable directory: {state}")
    if not getattr(args, "no_model", False):
        from .match import identify_point
        from .models import resolve_encoder
        from .visits import loose_tau_warning

        manifest = resolve_encoder(cfg.model.name or None)
        d = cfg.decision
        if cfg.model.tau is not None:
            if warning := loose_tau_warning(cfg.model.tau, manifest, d.k, d.n):
                log.warning("%s", warning)
            model = f"{manifest.name} ({manifest.sha256[:12]}), tau {cfg.model.tau} (custom)"
        else:
            one = identify_point(manifest.operating_points, d.security, 1, d.k, d.n).tau
            model = (f"{manifest.name} ({manifest.sha256[:12]}), security {d.security} (tau {one:.4f} for one "
                     "enrolled person, stricter as the gallery grows)")
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
    from .daemon import Daemon

    cfg = config_from_args(args)
    if not getattr(args, "debug", False) and cfg.log.level != "INFO":
        logging.getLogger().setLevel(cfg.log.level)
    path = getattr(args, "config", None) or config_mod.default_config_path()
    return Daemon(cfg, reload=lambda: config_from_args(args), config_path=path).run()
