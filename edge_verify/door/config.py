"""The lock controller's configuration: ``/etc/edge-verify/door.toml`` into frozen dataclasses.

Sections ``[door]``, ``[relay]``, ``[contact]``, ``[verifiers]`` (device id = public key, or a list of
keys during a key change), and ``[mqtt]`` and ``[log]`` exactly as in the verifier's config. Unknown keys
and bad values raise a one-line :class:`ConfigError` naming the key, as for the daemon.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..config import LogConfig, MqttConfig, check_mqtt_tls, check_topic_prefix, read_data
from ..config import _f as spec
from ..config import _section as section
from ..errors import ConfigError, SigningError
from ..signing import key_id, public_key_from_b64

DEFAULT_PATH = Path("/etc/edge-verify/door.toml")
REPLAY_FILE = "door-replay.sqlite3"


@dataclass(frozen=True)
class DoorSection:
    id: str = "door"
    state_dir: str = ""  # "" = $EDGE_VERIFY_STATE_DIR, else $STATE_DIRECTORY, else ~/.local/share/edge-verify
    allow: tuple[str, ...] = ("*",)
    unlock_s: float = spec(5.0, gt=0, max=600)
    max_age_s: float = spec(5.0, gt=0, max=3600)
    max_payload: int = spec(4096, min=256, max=65536)


@dataclass(frozen=True)
class RelaySection:
    pin: str = "GPIO17"
    active_high: bool = True


@dataclass(frozen=True)
class ContactSection:
    pin: str = ""  # "" = no door contact
    pull_up: bool = True  # the contact closes to ground when the door is shut: shut = pressed
    held_open_s: float = spec(30.0, gt=0)
    bounce_s: float = spec(0.05, min=0, max=5)


@dataclass(frozen=True)
class DoorConfig:
    door: DoorSection = DoorSection()
    relay: RelaySection = RelaySection()
    contact: ContactSection = ContactSection()
    verifiers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # device id -> base64 public keys
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-verify-door-{self.door.id}"

    @property
    def state_path(self) -> Path:
        if self.door.state_dir:
            return Path(self.door.state_dir).expanduser()
        from ..statedir import default_state_dir

        return default_state_dir()

    def trusted_keys(self) -> dict[str, dict[str, Ed25519PublicKey]]:
        """{device id: {key_id: public key}}."""
        return {dev: {key_id(k): k for k in (public_key_from_b64(b) for b in keys)}
                for dev, keys in self.verifiers.items()}

    def require_verifiers(self) -> dict[str, dict[str, Ed25519PublicKey]]:
        """The trusted keys; ConfigError when there are none (such a door would never open)."""
        keys = self.trusted_keys()
        if not keys:
            raise ConfigError("verifiers: no verifier configured (device id = its public key from "
                              "`edge-verify keys show`): this door would never open")
        return keys

    def allows(self, person: str) -> bool:
        return "*" in self.door.allow or _fold(person) in {_fold(p) for p in self.door.allow}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fold(name: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFC", name.strip()).casefold()


def _topic_name(key: str, value: str) -> None:
    if not value or any(ch in value for ch in "#+/"):
        raise ConfigError(f"{key}: must be non-empty without #, + or /, got {value!r}")


def _door(data: Any) -> DoorSection:
    data = dict(data) if isinstance(data, dict) else data
    allow = data.pop("allow", None) if isinstance(data, dict) else None
    d: DoorSection = section("door", DoorSection, data)
    if allow is not None:
        if not isinstance(allow, list) or not all(isinstance(p, str) and p.strip() for p in allow):
            raise ConfigError(f"door.allow: must be a list of names (or [\"*\"]), got {allow!r}")
        d = dataclasses.replace(d, allow=tuple(p.strip() for p in allow))
    _topic_name("door.id", d.id)
    return d


def _verifiers(data: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict):
        raise ConfigError(f"verifiers: must be a table of device id = public key, got {data!r}")
    out: dict[str, tuple[str, ...]] = {}
    for dev, keys in data.items():
        _topic_name(f"verifiers.{dev}", dev)
        keys = [keys] if isinstance(keys, str) else keys
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"verifiers.{dev}: must be a public key (base64) or a list of them")
        for k in keys:
            try:
                public_key_from_b64(k)
            except SigningError as e:
                raise ConfigError(f"verifiers.{dev}: {e}") from None
        out[dev] = tuple(k.strip() for k in keys)
    return out


_SECTIONS = {"relay": RelaySection, "contact": ContactSection, "mqtt": MqttConfig, "log": LogConfig}


def parse(data: dict[str, Any]) -> DoorConfig:
    """A validated DoorConfig from a parsed TOML document."""
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name == "door":
            values[name] = _door(value)
        elif name == "verifiers":
            values[name] = _verifiers(value)
        elif name in _SECTIONS:
            values[name] = section(name, _SECTIONS[name], value)
        else:
            raise ConfigError(f"{name}: unknown section (known: door, relay, contact, verifiers, mqtt, log)")
    cfg = DoorConfig(**values)
    m = cfg.mqtt
    if not cfg.relay.pin:
        raise ConfigError("relay.pin: needed (e.g. \"GPIO17\")")
    if cfg.contact.pin and cfg.contact.pin == cfg.relay.pin:
        raise ConfigError("contact.pin: must differ from relay.pin")
    check_mqtt_tls(m)
    check_topic_prefix(m)
    return cfg


def default_config_text() -> str:
    """The commented default door.toml shipped in the package."""
    return resources.files("edge_verify.door").joinpath("default_door.toml").read_text(encoding="utf-8")


def load(path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> DoorConfig:
    """Read and validate door.toml (None: /etc/edge-verify/door.toml if present, else defaults), then apply
    ``overrides`` ({section: {key: value}}) with the same checks."""
    if path is None and DEFAULT_PATH.is_file():
        path = DEFAULT_PATH
    return parse(read_data(path, overrides))
