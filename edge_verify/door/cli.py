"""``edge-verify door``: run the lock controller, or check its configuration.

exit codes: 0 after a clean stop (SIGTERM/SIGINT) or a valid --check-config; 2 for a configuration or
state-directory error (one line on stderr). systemd: ``READY=1`` once the relay and the replay store are
set up (the relay is off), ``WATCHDOG=1`` from the main loop, ``STOPPING=1`` on a signal.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import parse_broker
from ..errors import EdgeVerifyError
from . import config as door_config

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help=f"door TOML file (default: {door_config.DEFAULT_PATH} when present)")
    p.add_argument("--broker", metavar="HOST[:PORT]", help="mqtt.host and mqtt.port")
    p.add_argument("--door-id", help="door.id")
    p.add_argument("--state-dir", help="door.state_dir (the replay store)")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.add_argument("--json", action="store_true", help="with --check-config: print the configuration as JSON")
    p.add_argument("--print-default", action="store_true", help="print the commented default door.toml and exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


def config_from_args(args: argparse.Namespace) -> door_config.DoorConfig:
    mqtt: dict[str, Any] = {}
    if args.broker:
        mqtt["host"], port = parse_broker(args.broker)
        if port is not None:
            mqtt["port"] = port
    return door_config.load(args.config, {"door": {"id": args.door_id, "state_dir": args.state_dir},
                                          "mqtt": mqtt})


def run(cfg: door_config.DoorConfig, stop: threading.Event | None = None) -> int:
    """Run the controller until ``stop`` is set (or SIGTERM/SIGINT in the main thread)."""
    from ..sdnotify import Notifier, watchdog_period
    from ..statedir import private_file
    from .controller import DoorController

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda s, f: stop.set())
    try:
        private_file(cfg.state_path / door_config.REPLAY_FILE)
    except OSError as e:
        raise EdgeVerifyError(f"door.state_dir: cannot use {cfg.state_path}: {e.strerror or e}") from None
    notifier = Notifier()
    controller = DoorController(cfg)
    try:
        controller.start()
        notifier.ready(f"door {cfg.door.id}: locked, {len(controller.keys)} verifier(s)")
        period = watchdog_period()
        tick = min(0.5, period / 3) if period else 0.5
        while not stop.wait(tick):
            controller.tick()
            notifier.watchdog()
        notifier.stopping("locking and disconnecting")
    finally:
        controller.stop()
        notifier.close()
    log.info("door %s stopped (locked); %d accepted, %d unlocks, refused %s", cfg.door.id, controller.accepted,
             controller.lock.unlocks, dict(controller.refused) or "none")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from ..logs import setup_logging

    parser = argparse.ArgumentParser(prog="edge-verify door", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.print_default:
        print(door_config.default_config_text(), end="")
        return 0
    setup_logging(debug=args.debug, command=args.check_config)
    try:
        cfg = config_from_args(args)
        if args.check_config:
            cfg.require_verifiers()
            if args.json:
                print(json.dumps(cfg.to_dict(), indent=2))
            else:
                print(f"door {cfg.door.id}: {len(cfg.verifiers)} verifier(s), relay {cfg.relay.pin}, "
                      f"contact {cfg.contact.pin or 'none'}, broker {cfg.mqtt.host}:{cfg.mqtt.port}: OK")
            return 0
        if not args.debug:
            logging.getLogger().setLevel(cfg.log.level)
        return run(cfg)
    except EdgeVerifyError as exc:
        if args.debug:
            raise
        print(f"edge-verify door: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
