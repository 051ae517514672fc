"""The systemd unit: `systemd-analyze verify` accepts it, its offline exposure is <= 2.5, and it keeps
the settings the daemon relies on (notify, watchdog, state, credentials, camera devices)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "edge-verify.service"
ANALYZE = shutil.which("systemd-analyze")
ENV = {**os.environ, "SYSTEMD_LOG_TARGET": "console", "SYSTEMD_LOG_COLOR": "0"}
needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze is not installed (apt install systemd)")


def _unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this interpreter (verify checks that the binary exists)."""
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={sys.executable} -m edge_verify run", UNIT.read_text())
    out = tmp_path / UNIT.name
    out.write_text(text)
    return out


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_has_what_the_daemon_needs() -> None:
    s = _settings()
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) >= 30
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # the daemon reloads its config on SIGHUP
    assert s["StateDirectory"] == ["edge-verify"] and s["ConfigurationDirectory"] == ["edge-verify"]
    assert s["LoadCredential"][0].startswith("mqtt-password:")
    assert s["SupplementaryGroups"] == ["video"] and s["User"] == ["edge-verify"]
    assert "PrivateDevices" not in s  # it would hide the camera
    assert s["DevicePolicy"] == ["closed"]
    allowed = " ".join(s["DeviceAllow"])
    for dev in ("char-video4linux", "char-media", "char-dma_heap"):
        assert dev in allowed


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = _unit_for_this_machine(tmp_path)
    r = subprocess.run([str(ANALYZE), "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       env=ENV)
    assert r.returncode == 0, r.stderr
    assert "edge-verify.service" not in r.stderr, r.stderr  # no warning about our unit


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    unit = _unit_for_this_machine(tmp_path)
    unit.write_text(re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/nonexistent/edge-verify run", unit.read_text()))
    r = subprocess.run([str(ANALYZE), "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       env=ENV)
    assert r.returncode != 0 and "/nonexistent/edge-verify" in r.stderr


@needs_analyze
def test_exposure_is_at_most_2_5(tmp_path: Path) -> None:
    unit = _unit_for_this_machine(tmp_path)
    r = subprocess.run([str(ANALYZE), "security", "--offline=yes", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    exposure = float(m.group(1))
    assert exposure <= 2.5, r.stdout
