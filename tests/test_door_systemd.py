"""The door's unit: `systemd-analyze verify` accepts it, its offline exposure is <= 2.5, it reaches only
the GPIO character devices, and it keeps what the controller relies on (notify, watchdog, state)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.test_systemd import ANALYZE, ENV, needs_analyze

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "edge-verify-door.service"


def _for_this_machine(tmp_path: Path) -> Path:
    out = tmp_path / UNIT.name
    out.write_text(re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={sys.executable} -m edge_verify door",
                          UNIT.read_text()))
    return out


def test_unit_has_what_the_door_needs() -> None:
    s: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            s.setdefault(k.strip(), []).append(v.strip())
    assert s["ExecStart"][0].endswith("edge-verify door --config /etc/edge-verify/door.toml")
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"] and int(s["WatchdogSec"][0]) >= 10
    assert s["StateDirectory"] == ["edge-verify-door"] and s["User"] == ["edge-verify-door"]
    assert s["DevicePolicy"] == ["closed"] and s["DeviceAllow"] == ["char-gpiochip rw"]
    assert s["SupplementaryGroups"] == ["gpio"] and "video" not in " ".join(s["SupplementaryGroups"])
    assert "LG_WD=/run/edge-verify-door" in s["Environment"][0]


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    r = subprocess.run([str(ANALYZE), "verify", str(_for_this_machine(tmp_path))], capture_output=True,
                       text=True, timeout=60, env=ENV)
    assert r.returncode == 0, r.stderr
    assert UNIT.name not in r.stderr, r.stderr


@needs_analyze
def test_exposure_is_at_most_2_5(tmp_path: Path) -> None:
    r = subprocess.run([str(ANALYZE), "security", "--offline=yes", "--no-pager", str(_for_this_machine(tmp_path))],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= 2.5, r.stdout
