"""The door's configuration and command line, and its import graph: it runs on a Pi with no model, so it
never loads the face layers, numpy or OpenCV."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge_verify import cli
from edge_verify.door import config as door_config
from edge_verify.errors import ConfigError
from edge_verify.signing import Signer

from .conftest import REPO

KEY = Signer.generate().public_b64()


def test_shipped_default_equals_the_code_defaults() -> None:
    assert door_config.parse(tomllib.loads(door_config.default_config_text())) == door_config.DoorConfig()


@pytest.mark.parametrize("data, message", [
    ({"door": {"colour": 1}}, "door.colour: unknown key"),
    ({"door": {"unlock_s": 0}}, "door.unlock_s: must be > 0"),
    ({"door": {"id": "a/b"}}, "door.id: must be non-empty without"),
    ({"door": {"allow": "alice"}}, "door.allow: must be a list"),
    ({"relay": {"active_high": "yes"}}, "relay.active_high: must be true or false"),
    ({"verifiers": {"cam1": "nope!"}}, "verifiers.cam1: public key 'nope!' is not base64"),
    ({"verifiers": {"cam1": "AAAA"}}, "verifiers.cam1: public key 'AAAA' is 3 bytes"),
    ({"verifiers": {"cam+": KEY}}, "verifiers.cam+: must be non-empty"),
    ({"verifiers": {"cam1": []}}, "verifiers.cam1: must be a public key"),
    ({"contact": {"pin": "GPIO17"}}, "contact.pin: must differ from relay.pin"),
    ({"mqtt": {"cert_file": "/x"}}, "mqtt.tls: must be true"),
    ({"lock": {}}, "lock: unknown section"),
])
def test_bad_config_names_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        door_config.parse(data)


@pytest.mark.parametrize("mqtt, message", [
    ({"cert_file": "/x"}, "mqtt.tls: must be true when"),
    ({"tls": True, "cert_file": "/x"}, "mqtt.cert_file: cert_file and key_file go together"),
    ({"tls": True, "ca_file": "/nonexistent/ca.pem"}, "mqtt.ca_file: no such file: /nonexistent/ca.pem"),
    ({"topic_prefix": "a/#"}, "mqtt.topic_prefix: must not contain # or +"),
])
def test_mqtt_checks_match_the_daemon(mqtt: dict[str, object], message: str) -> None:
    """The door checks [mqtt] as the verifier's config does, message for message."""
    from edge_verify import config as verifier_config

    for parse in (door_config.parse, verifier_config.parse):
        with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
            parse({"mqtt": mqtt})


def test_load_overrides(tmp_path: Path) -> None:
    conf = tmp_path / "door.toml"
    conf.write_text(f'[door]\nid = "front"\n[verifiers]\ncam1 = "{KEY}"\n')
    cfg = door_config.load(conf, {"door": {"id": "back", "unlock_s": None}, "mqtt": {"host": "mq"}})
    assert cfg.door.id == "back" and cfg.door.unlock_s == 5.0 and cfg.mqtt.host == "mq"
    conf.write_text('door = 1\n')
    with pytest.raises(ConfigError, match="door: must be a table"):
        door_config.load(conf, {"door": {"id": "back"}})
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.toml"):
        door_config.load(tmp_path / "nope.toml")


def test_verifiers_and_allow() -> None:
    other = Signer.generate()
    cfg = door_config.parse({"verifiers": {"cam1": KEY, "cam2": [other.public_b64(), KEY]},
                             "door": {"allow": ["Zoë", "bob"]}})
    keys = cfg.trusted_keys()
    assert set(keys) == {"cam1", "cam2"} and len(keys["cam2"]) == 2 and other.key_id in keys["cam2"]
    assert cfg.allows("ZOË") and cfg.allows(" bob ") and not cfg.allows("alice")
    with pytest.raises(ConfigError, match="no verifier configured"):
        door_config.DoorConfig().require_verifiers()


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "door.toml"
    conf.write_text(f'[door]\nid = "front"\n[verifiers]\ncam1 = "{KEY}"\n')
    assert cli.main(["door", "--config", str(conf), "--check-config"]) == 0
    assert "door front: 1 verifier(s), relay GPIO17" in capsys.readouterr().out
    assert cli.main(["door", "--config", str(conf), "--check-config", "--json", "--broker", "mq:1884"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mqtt"]["host"] == "mq" and data["mqtt"]["port"] == 1884
    conf.write_text('[door]\nid = "front"\n')
    assert cli.main(["door", "--config", str(conf), "--check-config"]) == 2
    assert "no verifier configured" in capsys.readouterr().err
    conf.write_text("[door\n")
    assert cli.main(["door", "--config", str(conf), "--check-config"]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert cli.main(["door", "--print-default"]) == 0
    assert capsys.readouterr().out == door_config.default_config_text()


def test_the_door_never_imports_the_face_layers(tmp_path: Path) -> None:
    """The lock controller's whole path (CLI, config, gate, relay, MQTT, one event through the gate)
    in a fresh interpreter: no numpy, OpenCV, TFLite, nor any Core/Store/Verifier/Daemon module."""
    conf = tmp_path / "door.toml"
    signer = Signer.generate()
    conf.write_text(f'[door]\nstate_dir = "{tmp_path}"\n[verifiers]\ncam1 = "{signer.public_b64()}"\n')
    code = f"""
import sys
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
Device.pin_factory = MockFactory()
from edge_verify.cli import main
assert main(["door", "--config", {str(conf)!r}, "--check-config"]) == 0
from edge_verify.door import config, controller
c = controller.DoorController(config.load({str(conf)!r}))
assert c.handle("edge-verify/cam1/event", b"{{}}", False).reason == "malformed"
c.stop()
heavy = ("numpy", "cv2", "tensorflow", "ai_edge_litert", "tflite_runtime", "PIL")
face = ("detect", "align", "quality", "embed", "match", "imageio", "models", "gallery", "outbox",
        "pipeline", "daemon", "camera", "demo", "doctor")
bad = sorted(m for m in sys.modules if m.split(".")[0] in heavy
             or (m.startswith("edge_verify.") and m.split(".")[1] in face))
print("LOADED", bad)
sys.exit(1 if bad else 0)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
