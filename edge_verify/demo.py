"""``make demo``: enrol the bundled sample photos and recognise them, through the real CLI and model."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .cli import main as cli

SAMPLES = Path(__file__).resolve().parent / "samples"
# one photo each, but two for Jennifer Garner: her visit photo lies 1.14 from her first photo, too far for
# the default security level with one template (a door enrols from a few photos, or from its camera)
ENROL = {"jennifer_garner": ["jennifer_garner_0001.jpg", "jennifer_garner_0009.jpg"],
         "tiger_woods": ["tiger_woods_0002.jpg"], "wen_jiabao": ["wen_jiabao_0001.jpg"]}
PROBES = ["jennifer_garner_0003.jpg", "tiger_woods_0003.jpg", "wen_jiabao_0002.jpg",
          "megawati_sukarnoputri_0006.jpg"]


def _run(*argv: str) -> int:
    print("$ edge-verify " + " ".join(argv), flush=True)
    code = cli(list(argv))
    print(f"  (exit {code})\n", flush=True)
    return code


def cli_demo(state_dir: str) -> bool:
    """Enrolment from one photo each (two for one person), then 1:1 and 1:N on other photos at the default
    security level; True when all are right."""
    s = ["--state-dir", state_dir]
    ok = all(_run("enroll", name, *(str(SAMPLES / p) for p in photos), *s) == 0 for name, photos in ENROL.items())
    ok &= _run("verify", "--claim", "tiger_woods", str(SAMPLES / "tiger_woods_0003.jpg"), *s) == 0
    ok &= _run("verify", "--claim", "tiger_woods", str(SAMPLES / "jennifer_garner_0003.jpg"), *s) == 1
    ok &= _run("identify", "--top-k", "2", *[str(SAMPLES / p) for p in PROBES], *s) == 1  # the last is unknown
    _run("people", "list", *s)
    return ok


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="edge-verify-demo-") as tmp:
        ok = cli_demo(tmp)
    print("demo: all decisions as expected" if ok else "demo: UNEXPECTED DECISIONS", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
