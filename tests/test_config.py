"""Config: the shipped default parses to the dataclass defaults; unknown keys and bad values name the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from edge_verify import config
from edge_verify.config import Config
from edge_verify.errors import ConfigError


def test_default_config_file_matches_the_dataclass_defaults() -> None:
    text = config.default_config_text()
    cfg = config.parse(tomllib.loads(text))
    assert cfg == Config()
    # every key of every section is written out in the shipped file (tau is documented, commented out)
    data = tomllib.loads(text)
    commented = {"model": {"tau"}, "liveness": {"threshold", "min_face_px"}}  # None by default: shown commented
    for f in dataclasses.fields(Config):
        keys = {k.name for k in dataclasses.fields(type(getattr(cfg, f.name)))}
        assert set(data[f.name]) | commented.get(f.name, set()) == keys, f.name
        for key in commented.get(f.name, ()):
            assert f"# {key} = " in text


def _load(tmp_path: Path, text: str) -> Config:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return config.load(p)


@pytest.mark.parametrize(("text", "message"), [
    ("[camera]\nfsp = 3\n", "camera.fsp: unknown key"),
    ("[cmaera]\n", "cmaera: unknown section"),
    ("[camera]\nfps = -1\n", "camera.fps: must be > 0"),
    ("[camera]\nfps = 'fast'\n", "camera.fps: must be a number"),
    ("[camera]\ntype = 'webcam'\n", "camera.type: must be one of"),
    ("[mqtt]\nport = 70000\n", "mqtt.port: must be <= 65535"),
    ("[mqtt]\nport = 1883.5\n", "mqtt.port: must be an integer"),
    ("[mqtt]\ntls = 'yes'\n", "mqtt.tls: must be true or false"),
    ("[decision]\nk = 6\nn = 5\n", "decision.k: must be <= decision.n"),
    ("[device]\nmode = 'open'\n", "device.mode: must be one of identify, claim"),
    ("[model]\ndetector = 'tpu'\n", "model.detector: must be one of auto, litert, opencv"),
    ("[device]\nid = 'door/1'\n", "device.id: must not contain '/'"),
    ("[camera]\ntype = 'directory'\n", "camera.source: needed"),
    ("[mqtt]\ntls = true\nca_file = '/nonexistent/ca.pem'\n", "mqtt.ca_file: no such file"),
    ("[mqtt]\nca_file = '/etc/hostname'\n", "mqtt.tls: must be true"),
    ("camera = 3\n", "camera: must be a table"),
    ("[camera\n", "not valid TOML"),
    ("[camera]\nlores_height = 271\n", "camera.lores_height: must be even"),
    ("[model]\ntau = nan\n", "model.tau: must be a finite number"),
    ("[model]\ntau = inf\n", "model.tau: must be a finite number"),
    ("[model]\ntau = 4.0\n", "model.tau: must be < 4.0"),
    ("[model]\ntau = 0\n", "model.tau: must be > 0"),
    ("[quality]\nmin_sharpness = nan\n", "quality.min_sharpness: must be a finite number"),
    ("[quality]\nmin_score = nan\n", "quality.min_score: must be a finite number"),
    ("[decision]\ncooldown_s = nan\n", "decision.cooldown_s: must be a finite number"),
    ("[camera]\nfps = -inf\n", "camera.fps: must be a finite number"),
    ("[outbox]\nstale_after_s = inf\n", "outbox.stale_after_s: must be a finite number"),
])
def test_bad_values_are_one_line_errors_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_values_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_VERIFY_STATE_DIR", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edge-verify")
    p = tmp_path / "c.toml"
    p.write_text("[device]\nid = 'front-door'\n[model]\ntau = 1.2\n[camera]\nfps = 5\n")
    cfg = config.load(p, {"mqtt": {"host": "broker.lan", "port": 8883}, "camera": {"fps": None}})
    assert cfg.device_id == "front-door" and cfg.model.tau == 1.2 and cfg.camera.fps == 5.0
    assert cfg.mqtt.host == "broker.lan" and cfg.mqtt.port == 8883
    assert cfg.state_path == Path("/var/lib/edge-verify")
    assert cfg.client_id == "edge-verify-front-door"
    with pytest.raises(ConfigError, match=r"mqtt\.port"):
        config.load(p, {"mqtt": {"port": 0}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.camera.fps = 3  # type: ignore[misc]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.toml"):
        config.load(tmp_path / "nope.toml")


def test_password_from_file_or_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret\n")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert Config().password() is None
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert Config().password() == "s3cret"
    (creds / "other").write_text("x2")
    assert config.parse({"mqtt": {"password_file": "other"}}).password() == "x2"
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: cannot read"):
        config.parse({"mqtt": {"password_file": str(tmp_path / "missing")}}).password()


@pytest.mark.parametrize(
    ("text", "want"),
    [("mqtt.local", ("mqtt.local", None)), ("10.1.2.3:8883", ("10.1.2.3", 8883)),
     ("[::1]:1884", ("::1", 1884)), ("[fe80::1]", ("fe80::1", None)), ("::1", ("::1", None))],
)
def test_broker_override_forms(text: str, want: tuple[str, int | None]) -> None:
    from edge_verify.config import parse_broker

    assert parse_broker(text) == want


@pytest.mark.parametrize("bad", ["host:port", "[::1", "[::1]x", ":1883"])
def test_bad_broker_override(bad: str) -> None:
    from edge_verify.config import parse_broker

    with pytest.raises(ConfigError, match="--broker"):
        parse_broker(bad)


def test_every_float_key_refuses_nan_and_inf() -> None:
    """NaN compares false with everything: it would silently switch off a threshold, a cooldown or the
    replay pacing. Every float of every section refuses it, and inf."""
    for section in dataclasses.fields(Config):
        cls = type(getattr(Config(), section.name))
        for f in dataclasses.fields(cls):
            if getattr(Config(), section.name).__getattribute__(f.name).__class__ is float or f.name == "tau":
                for bad in (float("nan"), float("inf"), float("-inf")):
                    with pytest.raises(ConfigError, match="finite"):
                        config.parse({section.name: {f.name: bad}})


def test_enumerations_are_literal_types_and_the_cli_offers_them() -> None:
    from typing import get_args

    from edge_verify.cli import build_parser

    assert get_args(config.CameraType) == config.CAMERA_TYPES and get_args(config.Mode) == config.MODES
    parser = build_parser()
    for camera in config.CAMERA_TYPES:
        assert parser.parse_args(["run", "--camera", camera]).camera == camera
    for mode in config.MODES:
        assert parser.parse_args(["check-config", "--mode", mode]).mode == mode
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--camera", "webcam"])


def test_quality_defaults_have_one_source() -> None:
    from edge_verify.quality import QualityThresholds

    assert config.QualityConfig().thresholds() == QualityThresholds()
