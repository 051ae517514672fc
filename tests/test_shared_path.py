"""One definition of where the shared data lives for the tests: tests/conftest.py (SHARED, LFW, YALEB,
SHARED_MODELS and the shared_dir fixture); every other test module imports it."""

from __future__ import annotations

import re

from .conftest import REPO

READS_SHARED = re.compile(r"""environ(?:\.get\(|\[)\s*["']EDGE_VERIFY_SHARED|["']\.\./shared|/ "shared"\b""")


def test_only_conftest_defines_the_shared_data_path() -> None:
    defining = sorted(p.name for p in (REPO / "tests").glob("*.py") if READS_SHARED.search(p.read_text()))
    assert defining == ["conftest.py"]
