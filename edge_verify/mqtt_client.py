"""A paho-mqtt 2.x client set up from an ``[mqtt]`` config section: protocol, Will, credentials, TLS.
Shared by the daemon's link (``mqtt.py``) and the lock controller (``door/``)."""

from __future__ import annotations

import ssl

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .config import MqttConfig
from .errors import ConfigError


def make_client(m: MqttConfig, client_id: str, will_topic: str, password: str | None) -> paho.Client:
    """A client (MQTT 3.1.1, clean session) whose Will is a retained ``offline`` on ``will_topic``."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=paho.MQTTv311)
    c.will_set(will_topic, "offline", qos=1, retain=True)
    if m.username:
        c.username_pw_set(m.username, password)
    if m.tls:
        c.tls_set(ca_certs=m.ca_file or None, certfile=m.cert_file or None, keyfile=m.key_file or None,
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return c


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
