"""The daemon's side services: its local event log and snapshots (opened with each setup), its control
socket (health, live frames, camera enrolment) and, with ``[web] enabled = true``, the web console
served from a thread (started once the daemon is set up, kept across reloads, stopped when it stops).
A service that cannot start is logged; the door keeps working."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .config import Config
from .control import ControlServer, socket_path
from .errors import EdgeVerifyError
from .eventlog import EventLog
from .eventsink import EventSink
from .snapshots import SnapshotStore

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger(__name__)


def open_event_log(cfg: Config, sink: EventSink) -> EventLog | None:
    """The local event log and snapshots ([events]) hooked into the sink; None when off or unusable
    (the daemon runs on without them)."""
    e = cfg.events
    if not e.log:
        return None
    try:
        eventlog = EventLog(cfg.state_path, e.retention_days, e.max_rows)
        eventlog.prune()
    except EdgeVerifyError as err:
        log.error("event log: %s; events are not logged locally", err)
        return None
    sink.recorder = eventlog
    if e.snapshots != "off":
        sink.snapshots = SnapshotStore(cfg.state_path, eventlog, e.snapshots, e.snapshot_days, e.snapshot_max_mb)
    return eventlog


class Services:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.control: ControlServer | None = None
        self.web: Any = None
        self._started = False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        from .daemon_control import DaemonControl

        cfg = self.daemon.cfg
        try:
            self.control = ControlServer(socket_path(cfg.state_path), DaemonControl(self.daemon)).start()
        except EdgeVerifyError as e:
            log.error("control socket: %s (camera enrolment and the console's health go without it)", e)
        if cfg.web.enabled:
            try:
                from .web.server import WebServer

                self.web = WebServer(cfg, self.daemon.config_path).start()
            except EdgeVerifyError as e:
                log.error("web console not started: %s", e)

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
            self.web = None
        if self.control is not None:
            self.control.stop()
            self.control = None
