"""The systemd notify protocol on a real datagram socket."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_verify import sdnotify


@pytest.fixture()
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "notify"))
    s.settimeout(2)
    yield s
    s.close()


def test_messages_arrive(listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.getsockname())
    n = sdnotify.Notifier()
    assert n.enabled
    assert n.ready("3 people")
    assert listener.recv(4096) == b"READY=1\nSTATUS=3 people"
    n.watchdog()
    assert listener.recv(4096) == b"WATCHDOG=1"
    n.status("camera reopening")
    assert listener.recv(4096) == b"STATUS=camera reopening"
    n.stopping()
    assert listener.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edge-verify-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(2)
    try:
        n = sdnotify.Notifier("@" + name)
        assert n.ready()
        assert s.recv(100) == b"READY=1"
    finally:
        s.close()


def test_no_socket_means_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.Notifier().ready()
    assert not sdnotify.Notifier(str(tmp_path / "gone")).ready()  # a vanished socket is not an error


def test_watchdog_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_period() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_period() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_period() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_period() == 30.0


def test_journald_log_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from edge_verify import logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = (tmp_path / "journal").open("w+")
    st = os.fstat(out.fileno())
    try:
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert logs.under_journald(out)
        logs.setup_logging(stream=out)
        logging.getLogger("edge_verify.test").warning("camera stalled\nsecond line")
        logging.getLogger("edge_verify.test").info("event #1 granted")
        out.flush()
        out.seek(0)
        assert out.read().splitlines() == ["<4>edge_verify.test: camera stalled", "<4>second line",
                                           "<6>edge_verify.test: event #1 granted"]
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another file: not the journal
        assert not logs.under_journald(out)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not logs.under_journald(out)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        out.close()


def test_a_full_queue_never_blocks(listener: socket.socket) -> None:
    n = sdnotify.Notifier(listener.getsockname())
    sent = [n.watchdog() for _ in range(2000)]  # nobody reads: the queue fills, then messages are dropped
    assert sent[0] and not sent[-1]
    assert listener.recv(100) == b"WATCHDOG=1"
    n.close()
