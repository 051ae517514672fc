"""The bundled models: manifests, sha256 checks at load, clear errors for a damaged or unknown model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_verify.embed import Embedder
from edge_verify.errors import ModelError
from edge_verify.models import (
    DEFAULT_ENCODER,
    MODEL_DIR,
    bundled_manifests,
    detector_path,
    resolve_encoder,
    sha256_file,
)


def test_bundled_encoder_manifest_matches_its_file() -> None:
    m = resolve_encoder()
    assert m.name == DEFAULT_ENCODER and m.model_path.is_file()
    assert sha256_file(m.model_path) == m.sha256
    assert 0.5 < m.tau < 2.0 and m.tau_far == pytest.approx(1e-3)
    assert m.embedding_size == 128 and m.color_order == "BGR"
    assert m.data["dtype"] == "int8" and m.data["provenance"]["license"] == "Apache-2.0"
    assert DEFAULT_ENCODER in bundled_manifests()
    notice = (MODEL_DIR / "NOTICE").read_text()
    assert "YuNet" in notice and "SFace" in notice and "Apache" in notice


def test_bundled_encoder_is_int8_in_and_out() -> None:
    e = Embedder(resolve_encoder().model_path, num_threads=1)
    assert e.dtype == "int8" and e.input_size == (112, 112) and e.embedding_size == 128


def test_detector_is_checked() -> None:
    assert detector_path().name.startswith("face_detection_yunet")


def _copy_model(tmp_path: Path) -> Path:
    m = resolve_encoder()
    shutil.copy(m.model_path, tmp_path / m.model_path.name)
    shutil.copy(m.path, tmp_path / m.path.name)
    return tmp_path / m.model_path.name


def test_a_copy_by_path_loads(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    assert resolve_encoder(model).sha256 == resolve_encoder().sha256


def test_damaged_model_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"sha256 .* does not match its manifest"):
        resolve_encoder(model)


def test_missing_model_and_manifest(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    model.unlink()
    with pytest.raises(ModelError, match="model file not found"):
        resolve_encoder(model)
    model.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable model manifest"):
        resolve_encoder(model)
    model.with_suffix(".json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(ModelError, match="has no 'tau'"):
        resolve_encoder(model)


def test_unknown_model_name() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'nope'.*sface-int8"):
        resolve_encoder("nope")
