"""The summary of ``make arm-check``: steps and their wall times, the test result, doctor's output -> JSON.

Exit status 1 when a step failed (a failed test, a doctor self-test that failed, encodings that differ).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def tests_summary(junit: Path) -> dict | None:
    if not junit.is_file():
        return None
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    skipped: collections.Counter[str] = collections.Counter()
    failed = []
    for case in suite.iter("testcase"):
        for s in case.findall("skipped"):
            reason = s.get("message", "").removeprefix("Skipped: ")
            if reason == "collection skipped" and s.text:  # a module-level skip: the reason is in the text
                # "('path', line, \"Skipped: reason\")"
                m = re.search(r"Skipped: (.*?)['\"]?\)?$", s.text.strip())
                reason = m.group(1) if m else s.text.strip()
            skipped[reason] += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname')}::{case.get('name')}")
    total = int(suite.get("tests", 0))
    n_skipped = int(suite.get("skipped", 0))
    n_failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    return {"tests": total, "passed": total - n_skipped - n_failed, "skipped": n_skipped, "failed": n_failed,
            "failures": failed, "skip_reasons": dict(skipped), "time_s": round(float(suite.get("time", 0)), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=Path, required=True)
    ap.add_argument("--junit", type=Path)
    ap.add_argument("--doctor", type=Path)
    ap.add_argument("--pip-freeze", type=Path)
    ap.add_argument("--wall", type=float, required=True)
    ap.add_argument("--cpu", required=True)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--note", default="", help="added to the report's note")
    args = ap.parse_args(argv)

    steps = []
    for line in args.steps.read_text().splitlines():
        name, secs, rc = line.split("\t")
        steps.append({"step": name, "wall_s": float(secs), "rc": int(rc)})
    tests = tests_summary(args.junit) if args.junit else None
    doctor = args.doctor.read_text().splitlines() if args.doctor and args.doctor.is_file() else None
    freeze = args.pip_freeze.read_text().split() if args.pip_freeze and args.pip_freeze.is_file() else None
    report = {"what": "make arm-check: the product installed from its wheel in an emulated Debian arm64 bookworm "
                      "(qemu-user), as on Raspberry Pi OS 64-bit",
              "qemu_cpu": args.cpu, "wall_s": args.wall, "steps": steps, "tests": tests, "doctor": doctor,
              "aarch64_packages": freeze,
              "note": "wall times on a shared 2-core x86 machine under emulation; not speed figures"
                      + (f"; {args.note}" if args.note else "")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"arm-check: {args.wall:.0f} s in all; " + ", ".join(
        f"{s['step']} {s['wall_s']:.0f} s{'' if s['rc'] == 0 else ' FAILED'}" for s in steps))
    if tests:
        print(f"tests on aarch64: {tests['passed']} passed, {tests['skipped']} skipped, {tests['failed']} failed "
              f"of {tests['tests']}")
        for reason, n in tests["skip_reasons"].items():
            print(f"  skipped {n}: {reason}")
    bad = [s["step"] for s in steps if s["rc"] != 0]
    if bad:
        print(f"arm-check FAILED: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
