"""Signed events: the device key (made once, 0600, or from a credential), sign/verify, every field
covered, the CLI's `keys show`, and the daemon's MQTT link sending signed events and key_id in state."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_verify import cli, config, events, signing
from edge_verify.decision import Verdict
from edge_verify.errors import SigningError
from edge_verify.signing import SignatureError, Signer, canonical, public_key_from_b64, verify
from tests.broker import Broker, find_mosquitto
from tests.mqtt_helpers import Subscriber


def _event(person: str = "alice") -> dict[str, object]:
    e = events.make_event(Verdict("granted", person, 0.8, 3), device_id="cam1", mode="identify", tau=1.38,
                          model="b" * 64, latency_ms={"embed": 12.0}, now=time.time())
    e["seq"] = 7
    return e


def test_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    a = Signer.load_or_create(tmp_path / "state", credentials_dir="")
    key = tmp_path / "state" / signing.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    b = Signer.load_or_create(tmp_path / "state", credentials_dir="")
    assert a.public_b64() == b.public_b64() and a.key_id == b.key_id
    raw = base64.b64decode(a.public_b64())
    assert len(raw) == 32 and a.key_id == hashlib.sha256(raw).hexdigest()[:16]


def test_credential_wins_and_nothing_is_written(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    k = Ed25519PrivateKey.generate()
    (creds / signing.CREDENTIAL_NAME).write_bytes(k.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))
    s = Signer.load_or_create(tmp_path / "state", credentials_dir=str(creds))
    assert s.key_id == signing.key_id(k.public_key())
    assert not (tmp_path / "state" / signing.KEY_FILE).exists()
    (creds / signing.CREDENTIAL_NAME).write_text("not a key")
    with pytest.raises(SigningError, match="not an unencrypted PEM or raw Ed25519 key"):
        Signer.load_or_create(tmp_path / "state", credentials_dir=str(creds))


def test_sign_verify_and_every_field_is_covered() -> None:
    s = Signer.generate()
    keys = {s.key_id: s.public}
    e = s.sign(_event())
    assert verify(e, keys) == s.key_id
    events.validate(e)  # key_id and sig are in the schema
    body = json.loads(canonical(e))
    assert "sig" not in body and body["key_id"] == s.key_id
    for field, value in [("person", "mallory"), ("event_type", "denied"), ("seq", 8), ("stale", True),
                         ("delayed", True), ("ts", "2020-01-01T00:00:00.000Z"), ("device_id", "cam2"),
                         ("key_id", "0" * 16), ("extra", 1)]:
        forged = {**e, field: value}
        with pytest.raises(SignatureError) as info:
            verify(forged, keys)
        assert info.value.reason in ("bad_signature", "unknown_key"), field
    with pytest.raises(SignatureError, match="unsigned"):
        verify({k: v for k, v in e.items() if k != "sig"}, keys)
    with pytest.raises(SignatureError, match="unknown_key"):
        verify(e, {Signer.generate().key_id: Signer.generate().public})
    with pytest.raises(SignatureError, match="bad_signature"):
        verify({**e, "sig": "!!"}, keys)


def test_non_ascii_names_are_signed_as_utf8() -> None:
    s = Signer.generate()
    e = s.sign(_event("Zoë Ångström"))
    wire = json.dumps(e).encode()  # ensure_ascii on the wire: a subscriber re-canonicalises after parsing
    assert verify(json.loads(wire), {s.key_id: s.public}) == s.key_id
    assert "Zoë".encode() in canonical(e)


def test_finalize_signs_the_final_values() -> None:
    s = Signer.generate()
    e = _event()
    e["ts"] = events.iso_utc(time.time() - 60)
    payload = json.loads(events.finalize(e, delayed=True, now=time.time(), stale_after_s=10, signer=s))
    assert payload["delayed"] is True and payload["stale"] is True
    assert verify(payload, {s.key_id: s.public}) == s.key_id
    assert "sig" not in json.loads(events.finalize(e, delayed=False, now=time.time(), stale_after_s=10))


def test_public_key_parsing_errors() -> None:
    with pytest.raises(SigningError, match="not base64"):
        public_key_from_b64("***")
    with pytest.raises(SigningError, match="16 bytes"):
        public_key_from_b64(base64.b64encode(b"x" * 16).decode())


def test_keys_show_prints_one_line_of_base64(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert cli.main(["keys", "show", "--state-dir", str(tmp_path)]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and len(base64.b64decode(line.strip(), validate=True)) == 32
    assert cli.main(["keys", "show", "--state-dir", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["public_key"] == line.strip()
    assert data["key_id"] == signing.key_id(public_key_from_b64(line))


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_mqtt_link_sends_signed_events_and_key_id_in_state(tmp_path: Path) -> None:
    from edge_verify.mqtt import MqttLink
    from edge_verify.outbox import Outbox

    b = Broker(tmp_path / "broker").start()
    signer = Signer.generate()
    ob = Outbox(tmp_path / "o.sqlite3")
    cfg = config.parse({"device": {"id": "cam1"}, "mqtt": {"host": b.host, "port": b.port, "discovery": False}})
    sub = Subscriber(b.host, b.port, ["edge-verify/cam1/#"])
    link = MqttLink(cfg, ob, state=lambda: {"people": 1}, signer=signer)
    try:
        link.start()
        assert link.wait_connected(10)
        link.submit(ob.add(_event()))
        assert sub.wait(lambda: len(sub.on("edge-verify/cam1/event")) == 1)
        e = sub.json("edge-verify/cam1/event")[0]
        assert verify(e, {signer.key_id: signer.public}) == signer.key_id
        events.validate(e)
        assert sub.wait(lambda: any(s.get("key_id") == signer.key_id for s in sub.json("edge-verify/cam1/state")))
    finally:
        sub.close()
        link.stop(1.0)
        ob.close()
        b.stop()


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_example_subscriber_checks_signatures(tmp_path: Path) -> None:
    """examples/verify_events.py, standalone (paho + cryptography only), agrees with signing.py."""
    import subprocess
    import sys

    from tests.door_helpers import FakeVerifier, Publisher

    from .conftest import REPO

    b = Broker(tmp_path / "broker").start()
    cam, other = FakeVerifier("cam1"), FakeVerifier("cam1")
    proc = subprocess.Popen([sys.executable, str(REPO / "examples" / "verify_events.py"), "--broker",
                             f"{b.host}:{b.port}", "--key", f"cam1={cam.signer.public_b64()}", "--count", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and "listening" in proc.stderr.readline()
        forged = cam.event("denied", None)
        forged["event_type"] = "granted"
        unsigned = cam.event()
        del unsigned["sig"]
        pub = Publisher(b.host, b.port)
        for payload in [cam.payload("granted", "Zoë"), json.dumps(forged).encode(), other.payload(),
                        json.dumps(unsigned).encode()]:
            pub.publish("edge-verify/cam1/event", payload)
        pub.close()
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
        b.stop()
    lines = out.strip().splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "valid", "REFUSED bad signature", f"REFUSED key {other.signer.key_id} is not cam1's", "REFUSED unsigned"]


def test_a_key_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while the key is written: a transient error (the daemon waits), no partial key left."""
    import errno

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SigningError, match="No space left") as info:
        Signer.load_or_create(tmp_path / "state", credentials_dir="")
    assert info.value.transient
    assert list((tmp_path / "state").iterdir()) == []
    monkeypatch.undo()
    assert Signer.load_or_create(tmp_path / "state", credentials_dir="").key_id
