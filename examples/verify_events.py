"""Subscribe to edge-verify events and check their signatures: the scheme of docs/DOOR.md in a few lines,
with only paho-mqtt and cryptography (no edge-verify import), for subscribers that act on events.

    python examples/verify_events.py --broker localhost --key front-cam=BASE64 [--key back-cam=BASE64]

BASE64 is the device's public key, printed on the device by ``edge-verify keys show``. One line per
event: ``valid`` or ``REFUSED <why>``. A real lock also refuses replays (seq per device and boot_id),
``stale``/``delayed`` events and old ones: ``edge-verify door`` does all of it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys

import paho.mqtt.client as paho
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion


def load_key(text: str) -> tuple[str, Ed25519PublicKey]:
    """(key_id, key) from the base64 of the raw 32-byte public key."""
    raw = base64.b64decode(text, validate=True)
    return hashlib.sha256(raw).hexdigest()[:16], Ed25519PublicKey.from_public_bytes(raw)


def check(event: dict, keys: dict[str, tuple[str, Ed25519PublicKey]], topic_device: str) -> str:
    """'valid', or why not."""
    if "sig" not in event or "key_id" not in event:
        return "unsigned"
    if topic_device not in keys or event.get("device_id") != topic_device:
        return "wrong device"
    key_id, key = keys[topic_device]
    if event["key_id"] != key_id:
        return f"key {event['key_id']} is not {topic_device}'s"
    body = {k: v for k, v in event.items() if k != "sig"}  # every field but sig, key_id included
    signed = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    try:
        key.verify(base64.b64decode(event["sig"]), signed)
    except (InvalidSignature, ValueError):
        return "bad signature"
    return "valid"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", default="localhost", help="HOST[:PORT]")
    p.add_argument("--key", action="append", required=True, metavar="DEVICE=BASE64")
    p.add_argument("--prefix", default="edge-verify")
    p.add_argument("--count", type=int, default=0, help="exit after this many events (0: run until ^C)")
    args = p.parse_args(argv)
    keys = {dev: load_key(b64) for dev, _, b64 in (k.partition("=") for k in args.key)}
    host, _, port = args.broker.partition(":")
    seen = 0

    def on_connect(client: paho.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        client.subscribe([(f"{args.prefix}/{dev}/event", 1) for dev in keys])

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        nonlocal seen
        try:
            event = json.loads(msg.payload)
            verdict = check(event, keys, msg.topic.split("/")[-2]) if isinstance(event, dict) else "not an object"
        except ValueError:
            event, verdict = {}, "not JSON"
        if msg.retain:
            verdict = "retained"
        who = f"{event.get('event_type')} {event.get('person')} seq {event.get('seq')}" if event else ""
        print(f"{msg.topic}: {'valid' if verdict == 'valid' else 'REFUSED ' + verdict}: {who}", flush=True)
        seen += 1
        if args.count and seen >= args.count:
            client.disconnect()

    def on_subscribe(client: paho.Client, userdata: object, mid: int, rcs: object, props: object) -> None:
        print(f"listening for the events of {', '.join(keys)}", file=sys.stderr, flush=True)

    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_connect, client.on_message, client.on_subscribe = on_connect, on_message, on_subscribe
    client.connect(host, int(port or 1883))
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
