"""The pure parts of `make arm-check` (scripts/arm/): the encoding comparison, per-stage counts and the
test summary. The emulated run itself is a manual step (docs/ARM.md): it takes far longer than the suite."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import LFW, REPO

ARM = REPO / "scripts" / "arm"


def _module(name: str) -> Any:
    sys.path.insert(0, str(ARM))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ARM))


def _run(path: Path, enc: np.ndarray, names: list[str], pairs: list[str], machine: str) -> Path:
    rng = np.random.default_rng(1)
    np.savez(path, names=np.array(names), encodings=enc, landmarks=rng.random((len(names), 5, 2)).astype(np.float32),
             found=np.ones(len(names), bool), pairs=np.array(pairs), tau=np.float64(1.3565),
             model_sha256=np.array("abc"), machine=np.array(machine), interpreter=np.array("ai_edge_litert"),
             qemu_cpu=np.array("cortex-a72" if machine == "aarch64" else ""), features=np.array(""))
    return path


def test_encoding_comparison_passes_equal_runs_and_fails_a_changed_decision(tmp_path: Path) -> None:
    enc_mod = _module("encodings_check")
    rng = np.random.default_rng(0)
    e = rng.standard_normal((6, 128)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    e[1] = e[0] + 0.02 * rng.standard_normal(128).astype(np.float32)  # the same person, near 0
    e[1] /= np.linalg.norm(e[1])
    names = [f"P_{i:04d}.jpg" for i in range(6)]
    pairs = ["P_0000.jpg P_0001.jpg 1", "P_0002.jpg P_0003.jpg 0"]
    ref = np.load(_run(tmp_path / "x86.npz", e, names, pairs, "x86_64"))
    same = enc_mod.compare_one(ref, np.load(_run(tmp_path / "a.npz", e.copy(), names, pairs, "aarch64")))
    assert same["passed"] and same["cosine"]["bit_identical"] == 6 and same["all_pairs"]["pairs"] == 15
    assert same["lfw_pairs"]["decisions_agree"] == 2 and same["lfw_pairs"]["correct_aarch64"] == 2

    moved = e.copy()
    moved[1] = e[2]  # face 1 now encodes as someone else: cosine far below 0.999, the genuine pair rejected
    diff = enc_mod.compare_one(ref, np.load(_run(tmp_path / "b.npz", moved, names, pairs, "aarch64")))
    assert not diff["passed"]
    assert diff["cosine"]["below_0_999"] == 1 and diff["cosine"]["worst_face"] == "P_0001.jpg"
    assert diff["lfw_pairs"]["decisions_agree"] == 1


def test_encoding_picks_200_faces_with_pairs_among_them() -> None:
    if not (LFW / "pairs.txt").is_file():
        pytest.fail(f"shared data missing: {LFW}")
    names, pairs = _module("encodings_check").pick(LFW, 200)
    assert len(names) == 200 == len(set(names))
    assert {s for _, _, s in pairs} == {True, False}
    assert all(a in names and b in names for a, b, _ in pairs)


def test_per_stage_counts_and_estimates() -> None:
    count = _module("count")
    stages = count.per_stage([10**9, 300, 600, 30, 3000, 9000], reps=3)
    assert stages == {"detect": 100, "detect_opencv": 200, "align": 10, "embed_int8": 1000, "embed_fp32": 3000}
    with pytest.raises(RuntimeError, match="expected 6 marker counts"):
        count.per_stage([1, 2, 3], reps=1)
    est = count.estimates({"cpu": "cortex-a72", "per_stage": {"detect": 10**8, "align": 10**6, "embed_int8": 2 * 10**8,
                                                              "embed_fp32": 4 * 10**8}})
    lo, mid, hi = est["int8"]["fps_one_core"]
    assert est["int8"]["instructions_per_frame"] == 301 * 10**6
    assert lo < mid < hi and mid == pytest.approx(1.8e9 * 1.1 / 301e6, abs=0.1)
    assert est["fp32"]["fps_one_core"][1] < mid


def test_summary_reads_junit_and_fails_on_a_failed_step(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="2" time="12.5">'
        '<testcase classname="tests.test_a" name="t1"/>'
        '<testcase classname="tests.test_a" name="t2"><failure message="boom"/></testcase>'
        '<testcase classname="tests.test_b" name="t3"><skipped message="could not import \'tensorflow\'"/></testcase>'
        '<testcase classname="tests.test_b" name="t4"><skipped message="could not import \'tensorflow\'"/></testcase>'
        "</testsuite></testsuites>")
    summary = _module("summary")
    t = summary.tests_summary(junit)
    assert (t["passed"], t["skipped"], t["failed"]) == (1, 2, 1)
    assert t["failures"] == ["tests.test_a::t2"] and t["skip_reasons"] == {"could not import 'tensorflow'": 2}
    steps = tmp_path / "steps.tsv"
    steps.write_text("install\t10.0\t0\ntests\t99.5\t1\n")
    out = tmp_path / "arm-check.json"
    assert summary.main(["--steps", str(steps), "--junit", str(junit), "--wall", "110", "--cpu", "cortex-a72",
                         "--json", str(out)]) == 1
    assert out.is_file()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_qemu_plugin_compiles_and_exports_its_entry_points(tmp_path: Path) -> None:
    lib = tmp_path / "libinsn_count.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall", "-Werror", "-o", str(lib),
                    str(ARM / "insn_count.c")], check=True)
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True,
                             check=True).stdout
    assert "qemu_plugin_install" in symbols and "qemu_plugin_version" in symbols
