"""The runtime never imports TensorFlow: the Pi has none."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO, lfw_photo


def test_import_and_embed_without_tensorflow() -> None:
    code = (
        "import sys, edge_verify\n"
        "from edge_verify import FaceVerifier\n"
        "import edge_verify.cli, edge_verify.pipeline\n"
        f"fv = FaceVerifier(state_dir={str(REPO / 'build' / 'unused-state')!r})\n"
        f"e = fv.encode_one({str(lfw_photo('Tony_Blair', 18))!r})\n"
        "assert e.shape == (128,)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print('LOADED', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
