"""What the console does, without HTTP: people (the gallery), events (the event log), snapshots, the
daemon's health and live frames (its control socket), and enrolments.

The console never loads the face model (about 130 MB of memory with it, 50 without): the gallery is
read as ``edge-verify people`` reads it, and each enrolment is an ``edge-verify enroll --new --json``
child process, which itself goes through the daemon when the daemon owns the camera.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..access import AccessRule
from ..config import Config
from ..control import ControlClient, ControlError, socket_path
from ..errors import EdgeVerifyError, GalleryError
from ..eventlog import EventLog, LoggedEvent
from ..gallery import Gallery, Person
from ..snapshots import SnapshotStore
from ..statedir import disk_space

log = logging.getLogger(__name__)

WORKER_TIMEOUT_S = 180.0
CAMERA_TIMEOUT_S = 20.0
MAX_PHOTOS = 10
MAX_PHOTO_BYTES = 15 * 1024 * 1024
_ERROR_PREFIX = "edge-verify: error: "


@dataclass
class EnrolJob:
    """A camera enrolment running in a child process; its progress lines as they come."""

    id: int
    name: str
    started: float = field(default_factory=time.time)
    progress: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    ok: bool = False
    message: str = ""


def _worker_error(stderr: str, tmp: str | None = None) -> str:
    """The one-line reason an ``edge-verify`` child process gave, without its temporary paths."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    text = next((ln for ln in reversed(lines) if ln.startswith(_ERROR_PREFIX)), lines[-1] if lines else "failed")
    text = text.removeprefix(_ERROR_PREFIX)
    if tmp:
        text = text.replace(tmp.rstrip("/") + "/", "")
    return text


class Console:
    def __init__(self, cfg: Config, config_path: Path | None = None) -> None:
        from ..models import resolve_encoder

        self.cfg, self.config_path = cfg, config_path
        self.state = cfg.state_path
        self.manifest = resolve_encoder(cfg.model.name or None)
        self.gallery = Gallery(self.state, self.manifest.sha256)
        e = cfg.events
        self.eventlog = EventLog(self.state, e.retention_days, e.max_rows)
        self.snapshots = SnapshotStore(self.state, self.eventlog, e.snapshots, e.snapshot_days, e.snapshot_max_mb)
        self.daemon = ControlClient(socket_path(self.state))
        self._jobs: dict[int, EnrolJob] = {}
        self._job_ids = itertools.count(1)
        self._jobs_lock = threading.Lock()

    def close(self) -> None:
        self.gallery.close()
        self.eventlog.close()

    # -- people -------------------------------------------------------------------------------------
    def people(self) -> list[Person]:
        return self.gallery.people()

    def schedules(self) -> dict[str, str]:
        """The access rule of each restricted person, described ("Mon-Fri 07:00-19:00, until 2025-12-31");
        people not listed may enter at any time."""
        return {name: rule.describe() for name, rule in self.gallery.access_rules().items()}

    def access(self, name: str) -> AccessRule:
        return self.gallery.access(name)

    def set_schedule(self, name: str, windows: str, valid_from: str, valid_until: str) -> AccessRule:
        """Replace a person's access rule (all empty: any time); ScheduleError names what is wrong."""
        from ..access import make_rule

        rule = make_rule(windows.strip() or None, valid_from.strip() or None, valid_until.strip() or None)
        self.gallery.set_access(name, rule)
        return rule

    def new_name(self, name: str) -> str:
        """A valid name that no one has yet (GalleryError saying why not)."""
        from ..enrolment import check_new_name

        return check_new_name(self.gallery.resolve, name)

    def forget(self, name: str) -> tuple[int, int]:
        """Forget a person: (templates, snapshots) deleted."""
        enrolled = self.gallery.resolve(name) or name.strip()
        n = self.gallery.forget(name)
        return n, self.snapshots.forget(enrolled)

    def _worker(self) -> list[str]:
        cmd = [sys.executable, "-m", "edge_verify", "enroll", "--new", "--json", "--state-dir", str(self.state)]
        if self.cfg.model.name:
            cmd += ["--model", self.cfg.model.name]
        if self.cfg.model.tau is not None:
            cmd += ["--tau", str(self.cfg.model.tau)]
        return cmd

    def enrol_photos(self, name: str, photos: list[tuple[str, bytes]]) -> int:
        """Enrol a new person from uploaded photos (file name, bytes), all or nothing; the templates
        added. EdgeVerifyError with the reason (bad image, no face, two faces, duplicate...)."""
        clean = self.new_name(name)
        if not photos:
            raise GalleryError("choose at least one photo")
        if len(photos) > MAX_PHOTOS:
            raise GalleryError(f"{len(photos)} photos: at most {MAX_PHOTOS} at a time")
        with tempfile.TemporaryDirectory(dir=self.state, prefix=".upload-") as tmp:
            paths, labels = [], {}
            for i, (filename, data) in enumerate(photos):
                label = Path(filename).name or f"photo {i + 1}"
                if len(data) > MAX_PHOTO_BYTES:
                    raise GalleryError(f"{label}: {len(data) // 2**20} MB, larger than the "
                                       f"{MAX_PHOTO_BYTES // 2**20} MB limit")
                safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[-80:] or "photo"
                path = Path(tmp) / f"{i + 1}-{safe}"
                labels[path.name] = label
                path.write_bytes(data)
                paths.append(str(path))
            proc = subprocess.run([*self._worker(), "--", clean, *paths], capture_output=True, text=True,
                                  timeout=WORKER_TIMEOUT_S, env=_child_env())
            if proc.returncode != 0:
                message = _worker_error(proc.stderr, tmp + "/")
                for stored, label in labels.items():
                    message = message.replace(stored, label)
                raise GalleryError(message) from None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        return int(result["templates"])

    # -- camera enrolment jobs ----------------------------------------------------------------------
    def start_camera_enrolment(self, name: str) -> EnrolJob:
        clean = self.new_name(name)
        with self._jobs_lock:
            if any(not j.done for j in self._jobs.values()):
                raise GalleryError("a camera enrolment is already running: wait for it to end")
            job = EnrolJob(next(self._job_ids), clean)
            self._jobs = {k: v for k, v in self._jobs.items() if time.time() - v.started < 3600}
            self._jobs[job.id] = job
        cmd = [*self._worker(), "--camera", "--timeout", str(CAMERA_TIMEOUT_S)]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        threading.Thread(target=self._run_job, args=(job, [*cmd, "--", clean]), daemon=True,
                         name=f"enrol-{job.id}").start()
        return job

    def _run_job(self, job: EnrolJob, cmd: list[str]) -> None:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
            assert proc.stdout is not None and proc.stderr is not None
            last: dict[str, Any] = {}
            for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "progress" in msg:
                    job.progress.append(msg["progress"])
                else:
                    last = msg
            stderr = proc.stderr.read()
            rc = proc.wait(WORKER_TIMEOUT_S)
            job.ok = rc == 0 and "templates" in last
            job.message = (f"enrolled {job.name!r} from the camera ({last['templates']} templates)" if job.ok
                           else _worker_error(stderr))
        except (OSError, subprocess.SubprocessError) as e:
            job.message = f"the enrolment could not run: {e}"
        finally:
            job.done = True

    def job(self, job_id: int) -> EnrolJob | None:
        return self._jobs.get(job_id)

    # -- events -------------------------------------------------------------------------------------
    def events(self, **filters: Any) -> list[LoggedEvent]:
        return self.eventlog.query(**filters)

    def snapshot(self, event_id: str) -> Path | None:
        return self.snapshots.path(event_id)

    # -- the daemon ---------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The daemon's health when it answers, and what the console sees itself."""
        local: dict[str, Any] = {"model_name": self.manifest.name, "model": self.manifest.sha256,
                                 "people": len(self.gallery.people()), "events_logged": self.eventlog.count(),
                                 "state_dir": str(self.state), "snapshots": self.cfg.events.snapshots}
        local["disk"] = disk_space(self.state)
        try:
            daemon: dict[str, Any] | None = self.daemon.health()
            error = None
        except (ControlError, ValueError) as e:
            daemon, error = None, str(e)
        return {"console": local, "daemon": daemon, "daemon_error": error}

    def frame(self) -> bytes | None:
        """The daemon's latest frame (JPEG) for the live view; None when off or unreachable."""
        if not self.cfg.web.live_view:
            return None
        try:
            return self.daemon.frame()
        except (ControlError, ValueError):
            return None


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)  # the child's errors come back here, not to the journal
    return env


__all__ = ["Console", "EdgeVerifyError", "EnrolJob"]
