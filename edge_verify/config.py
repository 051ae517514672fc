"""The daemon's configuration: TOML (stdlib ``tomllib``) read into frozen dataclasses.

Unknown sections or keys and bad values raise a one-line :class:`ConfigError` naming the key
(``camera.fps: must be > 0, got -1``). Secrets never live in the TOML: the MQTT password comes from a
file, by default ``mqtt-password`` in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
import types
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .detector_backend import DetectorBackend
from .errors import ConfigError
from .security import DEFAULT_SECURITY, SecurityLevel
from .thresholds import QualityThresholds
from .validate import TAU_MAX, finite_float

DEFAULT_CONFIG_PATHS = ("/etc/edge-verify/config.toml",)
CREDENTIAL_NAME = "mqtt-password"

# The enumerations of the config; the CLI builds its argparse choices from them (typing.get_args).
CameraType = Literal["picamera2", "opencv", "directory", "video", "synthetic"]
Mode = Literal["identify", "claim"]
AtEnd = Literal["stop", "wait", "loop"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Snapshots = Literal["off", "unknown", "all"]
CAMERA_TYPES: tuple[str, ...] = get_args(CameraType)
MODES: tuple[str, ...] = get_args(Mode)
AT_END: tuple[str, ...] = get_args(AtEnd)
SNAPSHOTS: tuple[str, ...] = get_args(Snapshots)

_QUALITY = QualityThresholds()  # the quality gate's defaults live in thresholds.py, and only there


def _f(default: Any, *, min: float | None = None, gt: float | None = None, max: float | None = None,
       lt: float | None = None) -> Any:
    return field(default=default, metadata={"min": min, "gt": gt, "max": max, "lt": lt})


@dataclass(frozen=True)
class DeviceConfig:
    id: str = ""  # "" = the host name
    state_dir: str = ""  # "" = $STATE_DIRECTORY, else /var/lib/edge-verify
    mode: Mode = "identify"


@dataclass(frozen=True)
class CameraConfig:
    type: CameraType = "picamera2"
    source: str = ""
    fps: float = _f(10.0, gt=0, max=120)
    width: int = _f(1280, min=16)
    height: int = _f(720, min=16)
    lores_width: int = _f(640, min=16)
    lores_height: int = _f(360, min=16)
    at_end: AtEnd = "stop"
    reopen_min_s: float = _f(0.5, gt=0)
    reopen_max_s: float = _f(30.0, gt=0)
    read_timeout_s: float = _f(5.0, gt=0)
    seed: int = _f(0, min=0)


@dataclass(frozen=True)
class ModelConfig:
    name: str = ""  # "" = the bundled default encoder; or a path to a .tflite/.json manifest
    tau: float | None = _f(None, gt=0, lt=TAU_MAX)
    threads: int = _f(2, min=1, max=64)
    detector: DetectorBackend = "auto"


@dataclass(frozen=True)
class QualityConfig:
    require_ok: bool = True
    max_faces: int = _f(1, min=1, max=16)
    detect_max_side: int = _f(320, min=64, max=4096)
    min_score: float = _f(_QUALITY.min_score, gt=0, max=1)
    min_face: float = _f(_QUALITY.min_face, min=0)
    min_sharpness: float = _f(_QUALITY.min_sharpness, min=0)
    max_yaw: float = _f(_QUALITY.max_yaw, gt=0, max=90)
    max_pitch: float = _f(_QUALITY.max_pitch, gt=0, max=90)
    max_roll: float = _f(_QUALITY.max_roll, gt=0, max=180)

    def thresholds(self) -> QualityThresholds:
        """The quality gate's limits as the Core layer takes them."""
        return QualityThresholds(min_face=self.min_face, min_sharpness=self.min_sharpness, max_yaw=self.max_yaw,
                                 max_pitch=self.max_pitch, max_roll=self.max_roll, min_score=self.min_score)


@dataclass(frozen=True)
class LivenessConfig:
    enabled: bool = True
    threshold: float | None = _f(None, min=0, max=1)  # None: the bundled models' (liveness.json)
    min_face_px: float | None = _f(None, min=0)  # None: the bundled models'


@dataclass(frozen=True)
class DecisionConfig:
    security: SecurityLevel = DEFAULT_SECURITY  # a false-accept target per visit; model.tau overrides it
    k: int = _f(3, min=1)
    n: int = _f(5, min=1)
    window_s: float = _f(3.0, gt=0)
    cooldown_s: float = _f(10.0, min=0)
    unknown_cooldown_s: float = _f(10.0, min=0)
    spoof_cooldown_s: float = _f(30.0, min=0)  # one per device: an attack held up for a minute is one event
    claim_max_ttl_s: float = _f(60.0, gt=0)


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = True
    host: str = "localhost"
    port: int = _f(1883, min=1, max=65535)
    client_id: str = ""  # "" = edge-verify-<device id>
    keepalive: int = _f(30, min=5, max=65535)
    topic_prefix: str = "edge-verify"
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password_file: str = ""  # "" = $CREDENTIALS_DIRECTORY/mqtt-password when present
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    reconnect_min_s: int = _f(1, min=1)
    reconnect_max_s: int = _f(30, min=1)
    telemetry_interval_s: float = _f(30.0, gt=0)
    max_inflight: int = _f(20, min=1, max=1000)


@dataclass(frozen=True)
class OutboxConfig:
    max_events: int = _f(10000, min=1)
    max_age_s: float = _f(7 * 24 * 3600.0, gt=0)
    stale_after_s: float = _f(10.0, gt=0)
    flush_timeout_s: float = _f(5.0, min=0)


@dataclass(frozen=True)
class AccessConfig:
    timezone: str = ""  # IANA zone the schedules are read in; "" = $TZ, else /etc/localtime
    tamper_events: int = _f(5, min=0)  # this many unknown_face/denied/spoof events ...
    tamper_window_s: float = _f(60.0, gt=0)  # ... within this many seconds give a tamper alert (0 events: off)
    tamper_lockout_s: float = _f(0.0, min=0)  # after an alert, refuse every grant this long (0: alert only)


@dataclass(frozen=True)
class LogConfig:
    level: LogLevel = "INFO"


@dataclass(frozen=True)
class EventsConfig:
    log: bool = True  # every event also in <state_dir>/events.sqlite3, for the console
    retention_days: float = _f(90.0, gt=0)
    max_rows: int = _f(100000, min=100)
    snapshots: Snapshots = "off"  # face crops of unknown faces (unknown_face, denied, spoof), of all, or none
    snapshot_days: float = _f(30.0, gt=0)
    snapshot_max_mb: float = _f(200.0, gt=0)


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = False  # the daemon serves the console too (else: `edge-verify web`)
    listen: str = "127.0.0.1:8080"
    tls_cert: str = ""
    tls_key: str = ""
    insecure_listen: bool = False  # listen beyond localhost without TLS
    live_view: bool = False  # the daemon hands out its latest frame (boxes, names) for the live view
    live_fps: float = _f(5.0, gt=0, max=30)
    session_hours: float = _f(12.0, gt=0, max=720)
    password_file: str = ""  # "" = <state_dir>/web-password


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = DeviceConfig()
    camera: CameraConfig = CameraConfig()
    model: ModelConfig = ModelConfig()
    quality: QualityConfig = QualityConfig()
    liveness: LivenessConfig = LivenessConfig()
    decision: DecisionConfig = DecisionConfig()
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    access: AccessConfig = AccessConfig()
    log: LogConfig = LogConfig()
    events: EventsConfig = EventsConfig()
    web: WebConfig = WebConfig()

    @property
    def device_id(self) -> str:
        return self.device.id or _hostname()

    @property
    def state_path(self) -> Path:
        """``device.state_dir``, else $EDGE_VERIFY_STATE_DIR, else $STATE_DIRECTORY (systemd), else
        ~/.local/share/edge-verify, as for the other commands (``gallery.default_state_dir``)."""
        if self.device.state_dir:
            return Path(self.device.state_dir).expanduser()
        from .statedir import default_state_dir

        return default_state_dir()

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-verify-{self.device_id}"

    def password(self) -> str | None:
        """The MQTT password from its file (``ConfigError`` when the file is named but unreadable)."""
        return read_password(self.mqtt.password_file)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _hostname() -> str:
    name = socket.gethostname().split(".")[0] or "edge-verify"
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def password_path(password_file: str) -> Path | None:
    """Where the MQTT password is: ``password_file`` (relative to ``$CREDENTIALS_DIRECTORY`` when set),
    else ``$CREDENTIALS_DIRECTORY/mqtt-password`` if it exists, else None."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if password_file:
        p = Path(password_file)
        if not p.is_absolute() and creds:
            p = Path(creds) / p
        return p
    if creds and (Path(creds) / CREDENTIAL_NAME).is_file():
        return Path(creds) / CREDENTIAL_NAME
    return None


def _unpack(typ: Any) -> tuple[Any, bool, tuple[str, ...] | None]:
    """(base type, optional, choices) of a field's annotation: ``float | None``, ``Literal[...]``..."""
    optional = False
    if get_origin(typ) in (Union, types.UnionType):
        args = [a for a in get_args(typ) if a is not type(None)]
        optional = len(args) < len(get_args(typ))
        typ = args[0]
    if get_origin(typ) is Literal:
        return str, optional, tuple(get_args(typ))
    return typ, optional, None


def read_password(password_file: str) -> str | None:
    """The MQTT password from :func:`password_path` (``ConfigError`` when named but unreadable)."""
    path = password_path(password_file)
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"mqtt.password_file: cannot read {path}: {e.strerror}") from None


def _convert(key: str, value: Any, typ: Any, meta: dict[str, Any]) -> Any:
    base, optional, choices = _unpack(typ)
    if value is None and optional:
        return None
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {value!r}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: must be a number, got {value!r}")
        try:  # nan would silently switch off every comparison made with it
            value = finite_float(value)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
    elif base is str and not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, got {value!r}")
    if choices and value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("min") is not None and value < meta["min"]:
            raise ConfigError(f"{key}: must be >= {meta['min']}, got {value!r}")
        if meta.get("gt") is not None and value <= meta["gt"]:
            raise ConfigError(f"{key}: must be > {meta['gt']}, got {value!r}")
        if meta.get("max") is not None and value > meta["max"]:
            raise ConfigError(f"{key}: must be <= {meta['max']}, got {value!r}")
        if meta.get("lt") is not None and value >= meta["lt"]:
            raise ConfigError(f"{key}: must be < {meta['lt']}, got {value!r}")
    return value


def _section(name: str, cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: must be a table, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(fields)})")
        values[key] = _convert(f"{name}.{key}", value, hints[key], dict(fields[key].metadata))
    return cls(**values)


def _check(cfg: Config) -> Config:
    d, c, m = cfg.decision, cfg.camera, cfg.mqtt
    if d.k > d.n:
        raise ConfigError(f"decision.k: must be <= decision.n ({d.n}), got {d.k}")
    for key in ("width", "height", "lores_width", "lores_height"):
        if getattr(c, key) % 2:  # YUV420 halves both sides for its colour planes
            raise ConfigError(f"camera.{key}: must be even, got {getattr(c, key)}")
    if c.reopen_min_s > c.reopen_max_s:
        raise ConfigError(f"camera.reopen_min_s: must be <= camera.reopen_max_s ({c.reopen_max_s})")
    if m.reconnect_min_s > m.reconnect_max_s:
        raise ConfigError(f"mqtt.reconnect_min_s: must be <= mqtt.reconnect_max_s ({m.reconnect_max_s})")
    if c.type in ("directory", "video") and not c.source:
        raise ConfigError(f"camera.source: needed for camera.type = {c.type!r}")
    check_mqtt_tls(m)
    for ch in "#+/":
        if ch in cfg.device_id:
            raise ConfigError(f"device.id: must not contain {ch!r}, got {cfg.device_id!r}")
    check_topic_prefix(m)
    _check_web(cfg.web)
    return cfg


def check_mqtt_tls(m: MqttConfig) -> None:
    """The [mqtt] TLS checks shared with the door's config: tls set when a CA, cert or key file is, cert
    and key together, and each named file present."""
    if (m.cert_file or m.key_file or m.ca_file) and not m.tls:
        raise ConfigError("mqtt.tls: must be true when mqtt.ca_file, cert_file or key_file is set")
    if bool(m.cert_file) != bool(m.key_file):
        raise ConfigError("mqtt.cert_file: cert_file and key_file go together")
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(m, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"mqtt.{key}: no such file: {value}")


def check_topic_prefix(m: MqttConfig) -> None:
    """mqtt.topic_prefix holds no MQTT wildcard (shared with the door's config)."""
    if any(ch in m.topic_prefix for ch in "#+"):
        raise ConfigError(f"mqtt.topic_prefix: must not contain # or +, got {m.topic_prefix!r}")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); ConfigError naming ``web.listen``."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"web.listen: expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_broker(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6addr]:port`` or a bare IPv6 address -> (host, port or None)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"--broker: expected [IPv6]:PORT, got {text!r}")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a host name, or an IPv6 address without a port
        host, port = text, ""
    if not host:
        raise ConfigError(f"--broker: no host in {text!r}")
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5):
        raise ConfigError(f"--broker: port must be a number, got {port!r}")
    return host, int(port) if port else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_web(w: WebConfig) -> None:
    host, _ = parse_listen(w.listen)
    if bool(w.tls_cert) != bool(w.tls_key):
        raise ConfigError("web.tls_cert: tls_cert and tls_key go together")
    for key in ("tls_cert", "tls_key"):
        value = getattr(w, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"web.{key}: no such file: {value}")
    if not is_loopback(host) and not w.tls_cert and not w.insecure_listen:
        raise ConfigError(f"web.listen: {w.listen} is reachable beyond this machine: set web.tls_cert and "
                          "web.tls_key, or web.insecure_listen = true (passwords would cross the network in "
                          "clear)")


def parse(data: dict[str, Any]) -> Config:
    """A validated Config from a TOML document already parsed into a dict."""
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    hints = get_type_hints(Config)
    values = {}
    for name, value in data.items():
        if name not in sections:
            raise ConfigError(f"{name}: unknown section (known: {', '.join(sections)})")
        values[name] = _section(name, hints[name], value)
    return _check(Config(**values))


def default_config_text() -> str:
    """The commented default configuration shipped in the package."""
    return resources.files("edge_verify").joinpath("default_config.toml").read_text(encoding="utf-8")


def default_config_path() -> Path | None:
    """The config file used when none is named: ``$CONFIGURATION_DIRECTORY/config.toml``, then
    /etc/edge-verify/config.toml; None when neither exists (built-in defaults)."""
    conf_dir = os.environ.get("CONFIGURATION_DIRECTORY")
    candidates = [Path(conf_dir.split(":")[0]) / "config.toml"] if conf_dir else []
    candidates += [Path(p) for p in DEFAULT_CONFIG_PATHS]
    return next((p for p in candidates if p.is_file()), None)


def load(path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read and validate a TOML config (None: the default location, or built-in defaults), then apply
    ``overrides`` ({section: {key: value}}, from the command line) with the same checks."""
    if path is None:
        path = default_config_path()
    return parse(read_data(path, overrides))


def read_data(path: str | Path | None, overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The TOML document at ``path`` (None: empty) as a dict, with ``overrides`` ({section: {key: value}},
    None values skipped) merged in; ConfigError when the file cannot be read or is not TOML, or when an
    overridden section is not a table. Shared with the door's config."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read config {p}: {e.strerror}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
    for section, values in (overrides or {}).items():
        if not isinstance(data.get(section, {}), dict):
            raise ConfigError(f"{section}: must be a table")
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return data
