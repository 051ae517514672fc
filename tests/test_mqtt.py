"""The MQTT link against a real mosquitto: availability, state, discovery, events from the outbox with
PUBACK, a broker outage, claims, Home Assistant's birth message, clean stop."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from edge_verify import config, events
from edge_verify.decision import Verdict
from edge_verify.mqtt import MqttLink
from edge_verify.outbox import Outbox
from tests.broker import Broker
from tests.conftest import needs_broker
from tests.mqtt_helpers import Subscriber

pytestmark = needs_broker


def _cfg(b: Broker, **mqtt: Any) -> config.Config:
    return config.parse({"device": {"id": "door1"}, "decision": {"claim_max_ttl_s": 30},
                         "mqtt": {"host": b.host, "port": b.port, "reconnect_min_s": 1, "reconnect_max_s": 1,
                                  "keepalive": 5, **mqtt}})


def _add(ob: Outbox, person: str) -> int:
    e = events.make_event(Verdict("granted", person, 0.8, 3), device_id="door1", mode="identify", tau=1.38,
                          model="b" * 64, latency_ms={"embed": 12.0}, now=time.time())
    return ob.add(e)


def test_link_publishes_and_acks(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.host, broker.port, ["edge-verify/#", "homeassistant/#"])
    ob = Outbox(tmp_path / "o.sqlite3")
    claims: list[tuple[str, float]] = []
    link = MqttLink(_cfg(broker), ob, on_claim=lambda p, t: claims.append((p, t)),
                    state=lambda: {"people": 2})
    link.start()
    try:
        assert link.wait_connected(10)
        assert sub.wait(lambda: b"online" in sub.on("edge-verify/door1/availability"))
        assert sub.wait(lambda: sub.json("edge-verify/door1/state") == [{"people": 2}])
        disc = sub.wait(lambda: bool(sub.on("homeassistant/device/door1/config")))
        assert disc
        d = sub.json("homeassistant/device/door1/config")[0]
        assert d["cmps"]["access"]["p"] == "event" and "granted" in d["cmps"]["access"]["event_types"]
        assert d["cmps"]["access"]["state_topic"] == "edge-verify/door1/event"
        seqs = [_add(ob, p) for p in ("alice", "bob")]
        for s in seqs:
            link.submit(s)
        assert sub.wait(lambda: len(sub.on("edge-verify/door1/event")) == 2)
        got = sub.json("edge-verify/door1/event")
        for e in got:
            events.validate(e)
        assert [e["seq"] for e in got] == seqs and [e["delayed"] for e in got] == [False, False]
        assert all(not r for t, _, r in sub.messages if t.endswith("/event"))  # never retained
        deadline = time.monotonic() + 10
        while ob.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ob.count() == 0  # deleted on PUBACK
        # claims: valid, clamped to claim_max_ttl_s, invalid ignored
        sub.publish("edge-verify/door1/cmd/claim", '{"person": "alice", "ttl_s": 300}')
        sub.publish("edge-verify/door1/cmd/claim", '{"person": 3}')
        sub.publish("edge-verify/door1/cmd/claim", "not json")
        sub.publish("edge-verify/door1/cmd/claim", '{"person": "bob", "ttl_s": 5}')
        deadline = time.monotonic() + 10
        while len(claims) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert claims == [("alice", 30.0), ("bob", 5.0)]
        # Home Assistant restarts: discovery again
        n = len(sub.on("homeassistant/device/door1/config"))
        sub.publish("homeassistant/status", "online")
        assert sub.wait(lambda: len(sub.on("homeassistant/device/door1/config")) > n)
    finally:
        link.stop(2.0)
    assert sub.wait(lambda: sub.on("edge-verify/door1/availability")[-1:] == [b"offline"])
    sub.close()
    ob.close()


def test_outage_backlog_is_sent_oldest_first_and_delayed(pbroker: Broker, tmp_path: Path) -> None:
    broker = pbroker
    ob = Outbox(tmp_path / "o.sqlite3")
    link = MqttLink(_cfg(broker), ob, state=lambda: {})
    link.start()
    sub = Subscriber(broker.host, broker.port, ["edge-verify/door1/event"], client_id="test-outage")
    try:
        assert link.wait_connected(10)
        broker.save()
        broker.kill()
        deadline = time.monotonic() + 15
        while link.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not link.connected
        seqs = [_add(ob, f"p{i}") for i in range(5)]
        for s in seqs:
            link.submit(s)
        time.sleep(0.5)
        assert ob.count() == 5  # kept while the broker is away
        broker.start()
        assert sub.wait(lambda: len(sub.on("edge-verify/door1/event")) >= 5, timeout=30)
        got = sub.json("edge-verify/door1/event")
        assert [e["seq"] for e in got] == seqs
        assert all(e["delayed"] for e in got)
        deadline = time.monotonic() + 10
        while ob.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ob.count() == 0
        sub.close()
    finally:
        link.stop(1.0)
        ob.close()


def test_unreachable_broker_keeps_events(tmp_path: Path) -> None:
    from tests.broker import free_port

    cfg = config.parse({"device": {"id": "door1"},
                        "mqtt": {"host": "127.0.0.1", "port": free_port(), "reconnect_min_s": 1}})
    ob = Outbox(tmp_path / "o.sqlite3")
    link = MqttLink(cfg, ob, state=lambda: {})
    link.start()
    link.submit(_add(ob, "alice"))
    assert not link.wait_connected(1.5)
    link.stop(5.0)  # not connected: nothing to flush, returns
    assert ob.count() == 1
    ob.close()


def test_unacknowledged_events_are_resent_after_the_broker_dies(pbroker: Broker, tmp_path: Path) -> None:
    """Events published but never acknowledged (the broker is frozen with SIGSTOP, then killed) stay in
    the outbox and are sent again after the restart, once each, marked delayed."""
    import signal

    broker = pbroker
    ob = Outbox(tmp_path / "o.sqlite3")
    link = MqttLink(_cfg(broker), ob, state=lambda: {})
    link.start()
    sub = Subscriber(broker.host, broker.port, ["edge-verify/door1/event"], client_id="test-unacked")
    try:
        assert link.wait_connected(10)
        broker.save()
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        seqs = [_add(ob, f"p{i}") for i in range(3)]
        for s in seqs:
            link.submit(s)
        deadline = time.monotonic() + 10
        while link.inflight() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert link.inflight() == 3 and ob.count() == 3  # sent, not acknowledged
        broker.kill()
        deadline = time.monotonic() + 15
        while link.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert link.inflight() == 0 and ob.count() == 3
        broker.start()
        assert sub.wait(lambda: len(sub.on("edge-verify/door1/event")) >= 3, timeout=30)
        time.sleep(0.5)
        got = sub.json("edge-verify/door1/event")
        assert [e["seq"] for e in got] == seqs and all(e["delayed"] for e in got)
        sub.close()
    finally:
        link.stop(2.0)
        ob.close()


def _tls_files(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    d.mkdir()
    names = ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    ca_key, ca, key, csr, cert = (d / n for n in names)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(ca_key), "-out", str(ca))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
        "-out", str(csr))
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(cert))
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
                    reason="needs the openssl and mosquitto_passwd commands")
def test_tls_and_password_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = _tls_files(tmp_path / "tls")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "door", "s3cret"], check=True,
                   capture_output=True)
    b = Broker(tmp_path / "tlsbroker", extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
               f"allow_anonymous false\npassword_file {passwd}\n").start()
    try:
        _tls_and_password(b, ca, tmp_path, monkeypatch)
    finally:
        b.stop()


def _tls_and_password(b: Broker, ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    ob = Outbox(tmp_path / "o.sqlite3")
    link = MqttLink(_cfg(b, tls=True, ca_file=str(ca), username="door"), ob, state=lambda: {})
    (tmp_path / "wrong").write_text("nope")
    bad = MqttLink(_cfg(b, tls=True, ca_file=str(ca), username="door", password_file=str(tmp_path / "wrong")),
                   Outbox(tmp_path / "o2.sqlite3"), state=lambda: {})
    try:
        sub = Subscriber(b.host, b.port, ["edge-verify/door1/event"], ca_file=str(ca), username="door",
                         password="s3cret")
        link.start()
        bad.start()
        assert link.wait_connected(15)
        link.submit(_add(ob, "alice"))
        assert sub.wait(lambda: len(sub.on("edge-verify/door1/event")) == 1)
        events.validate(sub.json("edge-verify/door1/event")[0])
        assert not bad.connected
        deadline = time.monotonic() + 10
        while bad.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bad.last_error is not None and "refused" in bad.last_error
        sub.close()
    finally:
        link.stop(2.0)
        bad.stop(0.0)
        ob.close()


def test_will_marks_a_killed_daemon_offline(broker: Broker, tmp_path: Path) -> None:
    """A process that dies without a clean stop: the broker publishes the retained Will, ``offline``."""
    import os
    import signal
    import sys

    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from edge_verify import config
from edge_verify.mqtt import MqttLink
from edge_verify.outbox import Outbox
cfg = config.parse({{"device": {{"id": "door1"}}, "mqtt": {{"host": "127.0.0.1", "port": {broker.port}}}}})
link = MqttLink(cfg, Outbox({str(tmp_path / "o.sqlite3")!r}), state=lambda: {{}})
link.start()
assert link.wait_connected(10)
print("connected", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        sub = Subscriber(broker.host, broker.port, ["edge-verify/door1/availability"])
        assert sub.wait(lambda: sub.on("edge-verify/door1/availability") == [b"online"])  # retained
        proc.send_signal(signal.SIGKILL)
        assert sub.wait(lambda: sub.on("edge-verify/door1/availability")[-1:] == [b"offline"])
        sub.close()
        late = Subscriber(broker.host, broker.port, ["edge-verify/door1/availability"])
        assert late.wait(lambda: late.on("edge-verify/door1/availability") == [b"offline"])  # retained
        late.close()
    finally:
        proc.kill()
        proc.wait(10)


# -- hostile input and faults (issue 12) -----------------------------------------------------------
def _wait(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def test_claim_parsing_refuses_hostile_payloads() -> None:
    from edge_verify.claims import MAX_CLAIM_BYTES, ClaimError, parse_claim

    assert parse_claim(b'{"person": "  alice ", "ttl_s": 300}', 30.0) == ("alice", 30.0)
    assert parse_claim(b'{"person": "bob"}', 30.0) == ("bob", 10.0)
    bad = [b"[" * 100_000, b'{"person": ' + b"[" * 1000 + b"]" * 1000 + b"}", b"[" * 1000,
           b'{"person": "alice", "ttl_s": 1' + b"0" * 400 + b"}", b'{"person": "alice", "ttl_s": 1e999}',
           b'{"person": "alice", "ttl_s": NaN}', b'{"person": "al\\nice"}', b'{"person": "a\\u0000"}',
           b'{"person": ""}', b'{"person": "alice", "ttl_s": -1}', b'{"person": "alice", "ttl_s": true}',
           b"\xff\xfe", b"null", b"[]", b'{"ttl_s": 3}']
    for payload in bad:
        with pytest.raises(ClaimError):
            parse_claim(payload, 30.0)
    assert len(b"[" * 100_000) > MAX_CLAIM_BYTES


def test_hostile_claims_do_not_kill_the_link(broker: Broker, tmp_path: Path) -> None:
    """Deep nesting, a 400-digit ttl, a retained claim and control characters in a name: each is refused
    in one log line, and afterwards claims are still heard and events still acknowledged (more than
    max_inflight of them, so PUBACKs must still be read)."""
    sub = Subscriber(broker.host, broker.port, ["edge-verify/door1/event"])
    sub.publish("edge-verify/door1/cmd/claim", '{"person": "mallory", "ttl_s": 30}', retain=True)
    ob = Outbox(tmp_path / "o.sqlite3")
    claims: list[tuple[str, float]] = []
    link = MqttLink(_cfg(broker, max_inflight=2), ob, on_claim=lambda p, t: claims.append((p, t)),
                    state=lambda: {})
    link.start()
    try:
        assert link.wait_connected(10)
        assert _wait(lambda: link.claims_refused == 1)  # the retained claim came with the subscription
        for payload in ('{"person": ' + "[" * 1000 + "]" * 1000 + "}", "[" * 50_000,
                        '{"person": "alice", "ttl_s": 1' + "0" * 400 + "}", '{"person": "bob\nINFO forged"}'):
            sub.publish("edge-verify/door1/cmd/claim", payload)
        sub.publish("edge-verify/door1/cmd/claim", '{"person": "carol", "ttl_s": 5}')
        assert _wait(lambda: claims == [("carol", 5.0)]), claims  # the retained "mallory" was ignored
        assert link.healthy() and link.claims_refused == 5
        seqs = [_add(ob, f"p{i}") for i in range(6)]
        for s in seqs:
            link.submit(s)
        assert sub.wait(lambda: len(sub.on("edge-verify/door1/event")) == 6)
        assert _wait(lambda: ob.count() == 0)
    finally:
        link.stop(2.0)
        sub.close()
        ob.close()


def test_home_assistant_birth_floods_are_rate_limited(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.host, broker.port, ["homeassistant/device/#"])
    link = MqttLink(_cfg(broker), Outbox(tmp_path / "o.sqlite3"), state=lambda: {})
    link.start()
    try:
        assert link.wait_connected(10)
        assert sub.wait(lambda: len(sub.on("homeassistant/device/door1/config")) == 1)
        for _ in range(2000):
            sub.client.publish("homeassistant/status", "online", qos=0)
        time.sleep(3.0)
        assert len(sub.on("homeassistant/device/door1/config")) <= 2  # not 2,000
        assert link.healthy()
    finally:
        link.stop(1.0)
        sub.close()


def test_a_bad_outbox_row_is_quarantined_and_blocks_nothing(broker: Broker, tmp_path: Path) -> None:
    """A row that can never be sent (NaN, as a tau = nan config once wrote, or unreadable JSON) is moved to
    the quarantine table, reported, and the events behind it go out."""
    import sqlite3

    ob = Outbox(tmp_path / "o.sqlite3")
    first = _add(ob, "alice")
    db = sqlite3.connect(tmp_path / "o.sqlite3")
    row = db.execute("SELECT payload FROM events WHERE seq=?", (first,)).fetchone()[0]
    db.execute("UPDATE events SET payload=? WHERE seq=?", (row.replace('"tau":1.38', '"tau":NaN'), first))
    db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (first + 1, "x-broken", time.time(), "{not json"))
    db.commit()
    db.close()
    last = _add(ob, "bob")
    quarantined: list[tuple[int, str]] = []
    sub = Subscriber(broker.host, broker.port, ["edge-verify/door1/event"])
    link = MqttLink(_cfg(broker), ob, state=lambda: {}, on_quarantine=lambda s, r: quarantined.append((s, r)))
    link.start()
    try:
        assert link.wait_connected(10)
        link.submit(last)
        assert sub.wait(lambda: len(sub.on("edge-verify/door1/event")) == 1)
        assert [e["person"] for e in sub.json("edge-verify/door1/event")] == ["bob"]
        assert _wait(lambda: len(quarantined) == 2)
        assert sorted(s for s, _ in quarantined) == [first, first + 1]
        assert _wait(lambda: ob.count() == 0) and ob.quarantined() == 2
    finally:
        link.stop(1.0)
        sub.close()
        ob.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_failures_say_why(tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong CA, a wrong host name, plain MQTT aimed at a TLS port and TLS aimed at a plain port each
    give one log line that names the cause."""
    import logging

    ca, cert, key = _tls_files(tmp_path / "tls")
    other_ca, _, _ = _tls_files(tmp_path / "other")
    tls = Broker(tmp_path / "tlsbroker", extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n").start()
    cases = [
        ({"port": tls.port, "tls": True, "ca_file": str(other_ca)}, "certificate was refused"),
        ({"host": "localhost", "port": tls.port, "tls": True, "ca_file": str(ca)}, "certificate was refused"),
        ({"port": tls.port}, "closed the connection before answering CONNECT"),
        ({"port": broker.port, "tls": True, "ca_file": str(ca)}, "TLS"),
    ]
    try:
        for mqtt, expected in cases:
            caplog.clear()
            link = MqttLink(_cfg(tls, **mqtt), Outbox(tmp_path / f"o{len(mqtt)}.sqlite3"), state=lambda: {})
            with caplog.at_level(logging.WARNING, logger="edge_verify.mqtt"):
                link.start()
                assert _wait(lambda lk=link: lk.last_error is not None, 15), mqtt
                link.stop(0.0)
            assert not link.connected
            lines = [r.getMessage() for r in caplog.records]
            assert any(expected in line for line in lines), (mqtt, lines)
            assert all("\n" not in line for line in lines)
    finally:
        tls.stop()
