"""The command line of the console and of enrolment at the door: ``edge-verify web``, ``edge-verify web
set-password``, and ``edge-verify enroll NAME --camera`` / ``--new`` / ``--json``."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import config as config_mod
from .config import Config
from .errors import ConfigError

if TYPE_CHECKING:
    from .pipeline import FaceVerifier

CONFIG_HELP = "TOML file (default: $CONFIGURATION_DIRECTORY/config.toml, else /etc/edge-verify/config.toml)"


def add_enroll_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("enrolment at the door")
    g.add_argument("--camera", action="store_true", help="enrol from the configured camera, guided in the "
                   "terminal (through the daemon when it runs)")
    g.add_argument("--config", type=Path, help=CONFIG_HELP + " (camera, model, state directory)")
    g.add_argument("--frames", type=int, default=5, metavar="K", help="--camera: frames kept (default 5)")
    g.add_argument("--timeout", type=float, default=20.0, metavar="S", help="--camera: give up after S s (20)")
    g.add_argument("--new", action="store_true", help="a new person: refuse a name already enrolled, a photo "
                   "with several faces, and a face enrolled under another name")
    g.add_argument("--json", action="store_true", help="JSON lines: progress, then the result")


def add_web_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help=CONFIG_HELP)
    p.add_argument("--state-dir", help="device.state_dir (gallery, event log, password)")
    p.add_argument("--listen", metavar="HOST:PORT", help="web.listen (default 127.0.0.1:8080)")
    p.add_argument("--tls-cert", help="web.tls_cert: certificate (PEM) to serve HTTPS")
    p.add_argument("--tls-key", help="web.tls_key: its private key (PEM)")
    p.add_argument("--insecure-listen", action="store_true",
                   help="web.insecure_listen: allow a non-local --listen without TLS")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = p.add_subparsers(dest="web_action", metavar="ACTION")
    q = sub.add_parser("set-password", help="set the console's password (asked twice on the terminal)")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


def web_config(args: argparse.Namespace) -> Config:
    g = lambda name: getattr(args, name, None)  # noqa: E731
    web: dict[str, Any] = {"listen": g("listen"), "tls_cert": g("tls_cert"), "tls_key": g("tls_key")}
    if g("insecure_listen"):
        web["insecure_listen"] = True
    return config_mod.load(g("config"), {"device": {"state_dir": g("state_dir")}, "web": web})


def cmd_web(args: argparse.Namespace) -> int:
    cfg = web_config(args)
    if args.web_action == "set-password":
        return set_password(cfg, args.password_stdin)
    from .web.server import serve

    return serve(cfg, args.config or config_mod.default_config_path())


def set_password(cfg: Config, from_stdin: bool) -> int:
    from .statedir import check_state_dir
    from .web.auth import password_path, validate_password, write_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("console password: ")
        validate_password(password)
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ: nothing changed")
    check_state_dir(cfg.state_path)
    path = password_path(cfg.state_path, cfg.web.password_file)
    write_password(path, password)
    print(f"console password set ({path}); running consoles read it when they start")
    return 0


class _Bar:
    """Progress of a camera enrolment on the terminal: one line redrawn, or one line per change."""

    def __init__(self, as_json: bool) -> None:
        self.as_json, self.tty = as_json, sys.stdout.isatty()

    def __call__(self, p: dict[str, Any]) -> None:
        if self.as_json:
            print(json.dumps({"progress": p}), flush=True)
            return
        k, kept = int(p.get("k", 5)), int(p.get("kept", 0))
        line = f"[{'#' * kept}{'-' * (k - kept)}] {kept}/{k}  {p.get('message', '')}"
        if self.tty:
            print(f"\r{line:<78}", end="", flush=True)
        else:
            print(line, flush=True)

    def end(self) -> None:
        if self.tty and not self.as_json:
            print()


def enroll_at_the_door(args: argparse.Namespace, make_verifier: Callable[[], FaceVerifier]) -> int:
    """``edge-verify enroll --camera`` (guided, through the daemon when it runs), or photos with ``--new``
    (a new person: the stricter checks the console asks for)."""
    if args.camera:
        if args.images:
            raise ConfigError("--camera takes no IMAGE")
        return _enroll_camera(args)
    if not args.images:
        raise ConfigError("give one or more IMAGE files, or --camera")
    from .enrolment import enrol_new_person

    apply_config(args)
    fv = make_verifier()
    try:
        n = enrol_new_person(fv, args.name, [(p, p) for p in args.images])
    finally:
        fv.close()
    enrolled(args, args.name.strip(), n, "")
    return 0


def apply_config(args: argparse.Namespace) -> None:
    """Photos with ``--config``: the state directory and model of the config file, unless given."""
    if args.config is None:
        return
    cfg = config_mod.load(args.config)
    args.state_dir = args.state_dir or cfg.state_path
    args.model = args.model or cfg.model.name or None
    args.tau = args.tau if args.tau is not None else cfg.model.tau
    args.threads = args.threads or cfg.model.threads


def enrolled(args: argparse.Namespace, name: str, n: int, how: str) -> None:
    """Say what was enrolled: one line, or a JSON line with ``--json``."""
    if args.json:
        print(json.dumps({"name": name, "templates": n}), flush=True)
    else:
        print(f"enrolled {name!r}{how}: {n} template{'s' * (n != 1)} added")


def _enroll_camera(args: argparse.Namespace) -> int:
    from .enrol_camera import enrol
    from .enrol_session import EnrolSettings

    if not 1 <= args.frames <= 20:
        raise ConfigError(f"--frames: between 1 and 20, got {args.frames}")
    if not 1 <= args.timeout <= 300:
        raise ConfigError(f"--timeout: between 1 and 300 s, got {args.timeout:g}")
    overrides = {"device": {"state_dir": str(args.state_dir) if args.state_dir else None},
                 "model": {"name": args.model, "tau": args.tau, "threads": args.threads}}
    cfg = config_mod.load(args.config, overrides)
    bar = _Bar(args.json)
    try:
        n = enrol(cfg, args.name, EnrolSettings(k=args.frames, timeout_s=args.timeout), args.new, bar)
    finally:
        bar.end()
    enrolled(args, args.name.strip(), n, " from the camera")
    return 0
