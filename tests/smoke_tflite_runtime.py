"""Smoke test for the minimal runtime (run by .ci/run in a venv with tflite-runtime and numpy<2 only).

Not collected by the main suite (its name does not start with test_): it needs that other venv.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def test_bundled_model_embeds_a_real_face_with_tflite_runtime(tmp_path: Path, shared_dir: Path) -> None:
    import edge_verify
    from edge_verify import FaceVerifier

    assert "site-packages" in edge_verify.__file__, "must test the installed package"
    fv = FaceVerifier(state_dir=tmp_path)
    assert fv.embedder.interpreter == "tflite_runtime"
    images = shared_dir / "data" / "lfw" / "images"
    a = fv.encode_one(images / "Tony_Blair_0018.jpg")
    b = fv.encode_one(images / "Tony_Blair_0032.jpg")
    c = fv.encode_one(images / "Hans_Blix_0007.jpg")
    assert a.shape == (128,) and abs(float(np.linalg.norm(a)) - 1.0) < 1e-3
    assert float(((a - b) ** 2).sum()) < fv.tau
    assert float(((a - c) ** 2).sum()) >= fv.tau
    fv.enroll("tony", [images / "Tony_Blair_0018.jpg"])
    assert fv.verify("tony", images / "Tony_Blair_0032.jpg").accepted
    assert "tensorflow" not in sys.modules


def test_installed_liveness_models_tell_a_live_face_from_a_print(tmp_path: Path, shared_dir: Path) -> None:
    """The bundled liveness models (package data under models/liveness) run on tflite-runtime."""
    from edge_verify import FaceVerifier
    from edge_verify.liveness import LivenessSettings

    fv = FaceVerifier(state_dir=tmp_path, liveness=LivenessSettings())
    assert fv.liveness is not None and fv.liveness.models[0].runner.interpreter == "tflite_runtime"
    nuaa = shared_dir / "data" / "nuaa"
    live = fv.process(nuaa / "live" / "0002" / "0002_01_00_01_136.jpg", max_faces=1).faces[0].liveness
    attack = fv.process(nuaa / "photo_attack" / "0005" / "0005_00_00_01_145.jpg", max_faces=1).faces[0].liveness
    assert live is not None and live.live and attack is not None and attack.attack


def test_installed_daemon_parts_load_without_extras() -> None:
    """The shipped default config, the event schema and the daemon import in the minimal runtime."""
    import json
    import tomllib
    from importlib import resources

    from edge_verify import config, daemon, mqtt, signing  # noqa: F401  (paho, cameras, sqlite, cryptography)

    cfg = config.parse(tomllib.loads(config.default_config_text()))
    assert cfg.model.threads >= 1 and cfg.quality.detect_max_side == 320
    schema = json.loads((resources.files("edge_verify") / "schemas" / "event-v2.json").read_text())
    assert "event_type" in schema["properties"] and "sig" in schema["properties"]
    assert len(signing.Signer.generate().sign({"a": 1})["sig"]) == 88
