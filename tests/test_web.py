"""The console over HTTP (the real app, in process): nothing without a login, CSRF on every form, the
login rate limit, and a clear message for each bad input. Enrolment runs the real worker process on
real photos."""

from __future__ import annotations

import io
import re
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the console's web extra is not installed (pip install '.[web]')")
pytest.importorskip("jinja2", reason="the console's web extra is not installed (pip install '.[web]')")

from edge_verify.web.app import COOKIE
from tests.conftest import LFW
from tests.visits import needs_model, photos
from tests.web_helpers import PASSWORD, console_config, csrf_of, login, messages

warnings.filterwarnings("ignore", message=".*httpx.*")
TWO_FACES = LFW / "images" / "Alejandro_Toledo_0021.jpg"


@pytest.fixture()
def app_for(tmp_path: Path) -> Iterator[Any]:
    from edge_verify.web.app import create_app
    from edge_verify.web.auth import read_password_hash
    from edge_verify.web.console import Console

    made: list[Console] = []

    def make(secure: bool = False, **web: Any) -> Any:
        cfg = console_config(tmp_path / "state", **web)
        console = Console(cfg)
        made.append(console)
        return create_app(console, read_password_hash(cfg.state_path / "web-password"), secure_cookies=secure)

    yield make
    for c in made:
        c.close()


@pytest.fixture()
def client(app_for: Any) -> Any:
    from starlette.testclient import TestClient

    return TestClient(app_for(), follow_redirects=False)


def _paths(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, path parameters filled in."""
    from starlette.routing import Route

    out = []
    for r in app.routes:
        if not isinstance(r, Route):
            continue
        path = r.path.replace("{job:int}", "1").replace("{event_id}", str(uuid.uuid4()))
        out += [(m, path) for m in sorted(r.methods or []) if m != "HEAD"]
    return out


def test_nothing_is_reachable_without_a_login(app_for: Any, verifier_factory: Any) -> None:
    from starlette.testclient import TestClient

    app = app_for()
    console = app.state.web.console
    console.gallery.add("Secret_Person", np.eye(1, 128, dtype=np.float32))
    paths = _paths(app)
    assert len(paths) >= 18 and ("POST", "/people/photos") in paths
    anonymous = TestClient(app, follow_redirects=False)
    for method, path in paths:
        r = anonymous.request(method, path, data={"name": "Secret_Person", "csrf": "x"})
        if path == "/login":
            assert r.status_code in (200, 403), (method, path)
        elif path.startswith("/api/"):
            assert (r.status_code, r.json()) == (401, {"error": "login required"}), (method, path)
        else:
            assert (r.status_code, r.headers["location"]) == (303, "/login"), (method, path)
        assert "Secret_Person" not in r.text, (method, path)
    # only /login itself is open, not what merely starts with it
    assert (anonymous.get("/login/x").status_code, anonymous.get("/loginx").status_code) == (303, 303)
    # a made-up or expired session cookie is no session
    anonymous.cookies.set(COOKIE, "forged")
    assert anonymous.get("/people").status_code == 303
    anonymous.cookies.clear()
    # logged in, every page answers
    assert login(anonymous).status_code == 303
    for method, path in paths:
        skip = ("/live.mjpeg", "/people/enrol/1", "/login", "/people/forget", "/people/schedule")  # need a name
        if method == "GET" and path not in skip and not path.startswith("/snapshots/"):
            r = anonymous.get(path)
            assert r.status_code == 200 or (path, r.headers.get("location")) == ("/", "/people"), path


def test_login_cookie_flags_and_logout(app_for: Any) -> None:
    from starlette.testclient import TestClient

    c = TestClient(app_for(secure=True), base_url="https://testserver", follow_redirects=False)
    r = login(c)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Secure" in cookie
    html = c.get("/people").text
    assert c.post("/logout", data={}).status_code == 403  # logging out is a form too
    assert c.post("/logout", data={"csrf": csrf_of(html)}).headers["location"] == "/login"
    assert c.get("/people").status_code == 303


def test_every_form_needs_its_csrf_token(client: Any, app_for: Any) -> None:
    login(client)
    good = csrf_of(client.get("/people").text)
    posts = [p for m, p in _paths(client.app) if m == "POST" and p != "/login"]
    assert set(posts) >= {"/logout", "/people/photos", "/people/camera", "/people/forget", "/people/schedule"}
    for path in posts:
        for token in (None, "", "not-the-token", good[:-1]):
            data = {"name": "x"} if token is None else {"name": "x", "csrf": token}
            r = client.post(path, data=data)
            assert r.status_code == 403 and "did not come from this console" in r.text, (path, token)
    # the login form has its own token, bound to a cookie
    from starlette.testclient import TestClient

    fresh = TestClient(client.app, follow_redirects=False)
    r = fresh.post("/login", data={"csrf": "guess", "password": PASSWORD})
    assert r.status_code == 403 and messages(r.text) == ["the login form expired: try again"]


def test_failed_logins_are_rate_limited(client: Any) -> None:
    for _ in range(5):
        r = login(client, "wrong password!")
        assert r.status_code == 401 and messages(r.text) == ["wrong password"]
    r = login(client)  # even the right password waits now
    assert r.status_code == 429 and re.fullmatch(r"too many failed logins: try again in \d+ s", messages(r.text)[0])
    assert client.get("/people").status_code == 303


def _upload(client: Any, name: str, files: list[tuple[str, bytes]]) -> Any:
    csrf = csrf_of(client.get("/people").text)
    return client.post("/people/photos", data={"csrf": csrf, "name": name},
                       files=[("photos", (n, data, "image/jpeg")) for n, data in files])


def _png(image: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", image)[1].tobytes()


@needs_model
def test_bad_inputs_get_clear_messages(client: Any) -> None:
    login(client)
    blair = [p.read_bytes() for p in photos("Tony_Blair")[:3]]
    r = _upload(client, "Tony", [("tony.jpg", blair[0])])
    assert r.status_code == 303
    assert messages(client.get("/people").text, "flash") == ["enrolled 'Tony' from 1 photo (1 template)"]
    cases = [
        ("", [("a.jpg", blair[1])], "a person's name cannot be empty"),
        ("   ", [("a.jpg", blair[1])], "a person's name cannot be empty"),
        ("ann\x07", [("a.jpg", blair[1])], "name 'ann\\x07' contains control characters"),
        ("x" * 65, [("a.jpg", blair[1])], "name too long (65 characters, at most 64)"),
        ("Tony", [("a.jpg", blair[1])], "'Tony' is already enrolled: choose another name, or forget 'Tony' first"),
        ("Ann", [], "choose at least one photo"),
        ("Ann", [("notes.jpg", b"these are not pixels")], "notes.jpg: not an image (JPEG, PNG, BMP, PGM, WebP or GIF)"),
        ("Ann", [("cut.jpg", blair[1][:3000])], "cut.jpg: JPEG file is truncated"),
        ("Ann", [("wall.png", _png(np.full((200, 200, 3), 90, np.uint8)))], "wall.png: no face found"),
        ("Ann", [("two.jpg", TWO_FACES.read_bytes())], "two.jpg: 2 faces found: one face per photo, please"),
        ("Anthony", [("a.jpg", blair[1])], "already enrolled as 'Tony'"),
        ("Ann", [(f"{i}.jpg", blair[1]) for i in range(11)], "11 photos: at most 10 at a time"),
    ]
    for name, files, message in cases:
        r = _upload(client, name, files)
        assert r.status_code == 400, (name, message)
        got = messages(r.text)
        assert len(got) == 1 and message in got[0], (name, got)
        if name.strip() and "\x07" not in name and len(name) <= 64:
            assert f'value="{name}"' in r.text  # the form keeps what was typed
    people = client.get("/api/people").json()
    assert [p["name"] for p in people] == ["Tony"]  # nothing else went in
    csrf = csrf_of(client.get("/people").text)
    for name, message in [("", "a person's name cannot be empty"), ("Tony", "'Tony' is already enrolled")]:
        r = client.post("/people/camera", data={"csrf": csrf, "name": name})
        assert r.status_code == 400 and message in messages(r.text)[0]


def test_forget_asks_first(client: Any, app_for: Any) -> None:
    login(client)
    console = client.app.state.web.console
    console.gallery.add("Ann", np.eye(1, 128, dtype=np.float32))
    page = client.get("/people/forget", params={"name": "Ann"})
    assert page.status_code == 200 and "Forget Ann?" in page.text
    csrf = csrf_of(page.text)
    r = client.post("/people/forget", data={"csrf": csrf, "name": "Ann"})
    assert r.status_code == 400 and messages(r.text) == ["tick the box to confirm"]
    assert console.people()[0].name == "Ann"
    r = client.post("/people/forget", data={"csrf": csrf, "name": "Ann", "confirm": "yes"})
    assert r.status_code == 303 and console.people() == []
    assert messages(client.get("/people").text, "flash") == ["forgot 'Ann': 1 templates and 0 snapshots deleted"]
    r = client.post("/people/forget", data={"csrf": csrf, "name": "Ann", "confirm": "yes"})
    assert r.status_code == 404 and messages(r.text) == ["'Ann' is not enrolled"]
    assert client.get("/people/forget", params={"name": "Nobody"}).status_code == 404


def test_event_filters_check_their_input(client: Any) -> None:
    login(client)
    for query, message in [({"type": "opened"}, "type: unknown event type 'opened'"),
                           ({"since": "yesterday"}, "since: expected a date such as 2025-01-31"),
                           ({"until": "2025-13-45"}, "until: expected a date"),
                           ({"limit": "lots"}, "limit: not a number")]:
        r = client.get("/events", params=query)
        assert r.status_code == 400 and message in messages(r.text)[0], query
        assert client.get("/api/events", params=query).status_code == 400
    ok = client.get("/events", params={"type": "granted", "person": "x", "since": "2025-01-31",
                                       "until": "2030-01-01T08:00"})
    assert ok.status_code == 200 and "No event matches these filters" in ok.text
    assert client.get("/snapshots/not-an-id.jpg").status_code == 404


def test_live_view_and_health_say_why_without_a_daemon(app_for: Any) -> None:
    from starlette.testclient import TestClient

    c = TestClient(app_for(live_view=True), follow_redirects=False)
    login(c)
    assert "The daemon is not running" in c.get("/live").text
    h = c.get("/api/health").json()
    assert h["daemon"] is None and "no daemon answers" in h["daemon_error"]
    assert h["console"]["model_name"] == "sface-int8" and h["console"]["people"] == 0
    assert "The daemon is not running, or does not answer" in c.get("/health").text


def test_listening_beyond_localhost_needs_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_verify import config
    from edge_verify.cli import main

    state = tmp_path / "s"
    assert main(["web", "--state-dir", str(state), "--listen", "0.0.0.0:8080"]) == 2
    assert "web.listen: 0.0.0.0:8080 is reachable beyond this machine: set web.tls_cert" in capsys.readouterr().err
    assert main(["web", "--state-dir", str(state), "--listen", "nonsense"]) == 2
    assert "web.listen: expected HOST:PORT, got 'nonsense'" in capsys.readouterr().err
    assert config.load(None, {"web": {"listen": "0.0.0.0:8080", "insecure_listen": True}}).web.insecure_listen
    for local in ("127.0.0.1:8080", "localhost:9000", "[::1]:8080"):
        assert config.load(None, {"web": {"listen": local}}).web.listen == local


def test_set_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import stat

    from edge_verify.cli import main
    from edge_verify.web.auth import check_password, read_password_hash

    state = tmp_path / "s"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["web", "--state-dir", str(state), "set-password", "--password-stdin"]) == 2
    assert "password too short: at least 8 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough one\n"))
    assert main(["web", "--state-dir", str(state), "set-password", "--password-stdin"]) == 0
    path = state / "web-password"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = read_password_hash(path)
    assert stored.startswith("scrypt$") and "a long enough one" not in stored
    assert check_password("a long enough one", stored) and not check_password("a long enough on", stored)
    r = main(["web", "--state-dir", str(tmp_path / "none")])
    assert r == 2 and "run `edge-verify web set-password` first" in capsys.readouterr().err


def test_the_console_loads_no_model_and_no_opencv() -> None:
    """The console stays small (bench/web.py: <= 80 MB): face work is done by other processes."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys, edge_verify.cli, edge_verify.web.server, edge_verify.web.app, edge_verify.web.routes;"
            "import edge_verify.web.console as c;"
            "print(sorted(m for m in ('cv2', 'ai_edge_litert', 'tflite_runtime', 'edge_verify.pipeline') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_edge_verify_web_serves_the_console(tmp_path: Path) -> None:
    """``edge-verify web`` as a process: the login page, and 303 for everything else."""
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from tests.broker import free_port
    from tests.conftest import REPO

    console_config(tmp_path / "state")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge_verify", "web", "--config", str(tmp_path / "console.toml"),
                             "--listen", f"127.0.0.1:{port}"], cwd=REPO, stderr=subprocess.PIPE, text=True)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: Any, **k: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = opener.open(f"http://127.0.0.1:{port}/login", timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()  # type: ignore[union-attr]
                time.sleep(0.2)
        assert page.status == 200 and "Log in" in page.read().decode()
        try:
            opener.open(f"http://127.0.0.1:{port}/people", timeout=5)
            raise AssertionError("/people answered without a login")
        except urllib.error.HTTPError as e:
            assert e.code == 303 and e.headers["location"] == "/login"
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_schedules_are_set_per_person_with_clear_messages(client: Any) -> None:
    login(client)
    console = client.app.state.web.console
    console.gallery.add("Ann", np.eye(1, 128, dtype=np.float32))
    people = client.get("/people").text
    assert '<td class="access">any time</td>' in people
    page = client.get("/people/schedule", params={"name": "ann"})  # any case finds her
    assert page.status_code == 200 and "When Ann may enter" in page.text
    csrf = csrf_of(page.text)
    for fields, message in [({"windows": "Mon-Fri 7-19"}, ""), ({"windows": "Funday 07:00-19:00"}, ""),
                            ({"valid_from": "2025-12-31", "valid_until": "2025-01-01"}, "is not after valid from"),
                            ({"valid_until": "someday"}, "")]:
        r = client.post("/people/schedule", data={"csrf": csrf, "name": "Ann", **fields})
        assert r.status_code == 400, fields
        got = messages(r.text)
        assert len(got) == 1 and message in got[0], (fields, got)
        assert all(f'value="{v}"' in r.text for v in fields.values())  # what was typed stays
    assert console.access("Ann").unrestricted  # nothing changed on bad input
    r = client.post("/people/schedule", data={"csrf": csrf, "name": "Ann", "windows": "Mon-Fri 07:00-19:00",
                                              "valid_until": "2030-12-31"})
    assert r.status_code == 303
    assert messages(client.get("/people").text, "flash") == ["'Ann' may enter: Mon-Fri 07:00-19:00, until 2030-12-31"]
    assert '<td class="access">Mon-Fri 07:00-19:00, until 2030-12-31</td>' in client.get("/people").text
    r = client.post("/people/schedule", data={"csrf": csrf, "name": "Ann", "windows": "", "valid_until": ""})
    assert r.status_code == 303 and console.access("Ann").unrestricted
    assert client.post("/people/schedule", data={"csrf": csrf, "name": "Bob"}).status_code == 404
    assert client.get("/people/schedule", params={"name": "Bob"}).status_code == 404
