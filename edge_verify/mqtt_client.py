"""A paho-mqtt 2.x client set up from an ``[mqtt]`` config section: protocol, Will, credentials, TLS.
Shared by the daemon's link (``mqtt.py``) and the lock controller (``door/``)."""

from __future__ import annotations

import ssl

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .config import MqttConfig, read_password


def make_client(m: MqttConfig, client_id: str, will_topic: str) -> paho.Client:
    """A client (MQTT 3.1.1, clean session) whose Will is a retained ``offline`` on ``will_topic``; with
    a user name, the password is read from its file (``config.read_password``)."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=paho.MQTTv311)
    c.will_set(will_topic, "offline", qos=1, retain=True)
    if m.username:
        c.username_pw_set(m.username, read_password(m.password_file))
    if m.tls:
        c.tls_set(ca_certs=m.ca_file or None, certfile=m.cert_file or None, keyfile=m.key_file or None,
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return c


def publish_offline(client: paho.Client, topic: str, timeout: float = 2.0) -> None:
    """Publish the retained ``offline`` on ``topic`` (what the Will would say) and wait up to ``timeout``
    for the broker to take it: at a clean stop, subscribers see ``offline`` at once."""
    info = client.publish(topic, "offline", qos=1, retain=True)
    try:
        info.wait_for_publish(timeout=timeout)
    except (RuntimeError, ValueError):  # not queued (disconnected meanwhile) or the wait timed out
        pass
