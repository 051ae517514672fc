"""The console in a real browser (Debian's headless Chromium through chromedriver and Selenium), served
by the daemon itself, which runs on a replay camera of real photos and publishes to a real mosquitto.
A person logs in, enrols someone from an uploaded photo and someone else from the camera, sees the
camera person's event appear, watches the live view, sets a schedule, and forgets the camera person.
Screenshots are kept under the test's temporary directory (the path is printed)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broker import free_port
from tests.conftest import needs_broker
from tests.mqtt_helpers import Subscriber
from tests.test_enrolment import camera_replay
from tests.visits import DaemonProc, needs_model, photos
from tests.web_helpers import PASSWORD, console_config

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") \
    or "/usr/bin/chromedriver"
needs_browser = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                   reason="chromium and chromium-driver are not installed (apt)")


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1200,900", f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(flag)
    opts.page_load_strategy = "eager"  # the live view's MJPEG never "finishes loading"
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


class Shots:
    def __init__(self, driver: Any, directory: Path) -> None:
        self.driver, self.dir, self.n = driver, directory, 0
        directory.mkdir(parents=True, exist_ok=True)
        print(f"\nscreenshots: {directory}")

    def __call__(self, name: str) -> None:
        self.n += 1
        self.driver.save_screenshot(str(self.dir / f"{self.n:02d}-{name}.png"))


def _wait(pred: Any, timeout: float = 30.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    return pred()


@needs_browser
@needs_broker
@needs_model
@pytest.mark.slow
def test_console_in_a_browser(tmp_path: Path, browser: Any, broker: Any) -> None:
    from selenium.webdriver.common.by import By

    by_css = lambda css: browser.find_elements(By.CSS_SELECTOR, css)  # noqa: E731
    text_of = lambda css: " ".join(e.text for e in by_css(css))  # noqa: E731
    shot = Shots(browser, tmp_path / "screenshots")
    cam = camera_replay(tmp_path / "cam")
    state, port = tmp_path / "state", free_port()
    console_config(state)  # the password
    cfg = tmp_path / "door.toml"
    cfg.write_text(f"""
[device]
id = "door-web"
state_dir = "{state}"
[camera]
type = "directory"
source = "{cam}"
fps = 10
at_end = "loop"
[model]
threads = 1
[decision]
window_s = 1.0
cooldown_s = 1.0
unknown_cooldown_s = 1.0
[mqtt]
host = "127.0.0.1"
port = {broker.port}
telemetry_interval_s = 1.0
[events]
snapshots = "all"
[web]
enabled = true
listen = "127.0.0.1:{port}"
live_view = true
""")
    sub = Subscriber("127.0.0.1", broker.port, ["edge-verify/door-web/event"])
    daemon = DaemonProc("run", "--config", str(cfg))
    assert daemon.wait_log("web console on", 120), daemon.log
    url = f"http://127.0.0.1:{port}"

    # without a session: the login page, and nothing else
    browser.get(f"{url}/people")
    assert browser.current_url == f"{url}/login"
    shot("login")
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.ID, "login").click()
    assert _wait(lambda: text_of("#error") == "wrong password"), browser.page_source
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    assert _wait(lambda: browser.current_url == f"{url}/people")
    assert "No one is enrolled yet." in text_of("#empty")

    # enrol from an uploaded real photo
    form = browser.find_element(By.ID, "add-photos")
    form.find_element(By.NAME, "name").send_keys("Tony Blair")
    form.find_element(By.NAME, "photos").send_keys(str(photos("Tony_Blair")[0]))
    form.find_element(By.CSS_SELECTOR, "button").click()
    assert _wait(lambda: "enrolled 'Tony Blair' from 1 photo" in text_of(".flash"), 60), browser.page_source
    shot("enrolled-from-a-photo")

    # enrol from the camera: the daemon's replay shows Gerhard Schroeder
    form = browser.find_element(By.ID, "add-camera")
    form.find_element(By.NAME, "name").send_keys("Gerhard")
    form.find_element(By.CSS_SELECTOR, "button").click()
    assert _wait(lambda: "/people/enrol/" in browser.current_url)
    shot("enrolling-from-the-camera")
    assert _wait(lambda: by_css("#result"), 60), browser.page_source
    assert text_of("#result") == "enrolled 'Gerhard' from the camera (5 templates)", browser.page_source
    shot("enrolled-from-the-camera")
    browser.get(f"{url}/people")
    assert [e.text for e in by_css("#people .name")] == ["Gerhard", "Tony Blair"]

    # the camera person's event appears, with its snapshot; the broker gets the event, without any image
    def granted_rows() -> list[Any]:
        browser.get(f"{url}/events?type=granted&person=Gerhard")
        return by_css("#events tbody tr")

    rows = _wait(granted_rows, 30, every=1.0)
    assert rows and "Gerhard" in rows[0].text, daemon.log
    assert by_css("#events img.thumb")[0].get_attribute("naturalWidth") != "0"
    shot("event-granted")
    browser.get(f"{url}/events")
    assert "unknown_face" in text_of("#events .type")  # before the enrolment, the same face was unknown
    shot("events")
    assert sub.wait(lambda: any(e["person"] == "Gerhard" for e in sub.json("edge-verify/door-web/event")), 20)
    payloads = sub.on("edge-verify/door-web/event")
    assert all(b"snapshot" not in p and b"jpg" not in p for p in payloads)

    # the live view and health
    browser.get(f"{url}/live")
    assert _wait(lambda: (by_css("#live") or [None])[0] and by_css("#live")[0].get_attribute("naturalWidth") not in
                 (None, "0")), browser.page_source
    time.sleep(0.5)
    shot("live-view")
    browser.get(f"{url}/health")
    assert "running" in text_of("#daemon") and "sface-int8" in text_of("#console")
    shot("health")

    # a schedule for the person enrolled from a photo
    browser.get(f"{url}/people")
    browser.find_elements(By.CSS_SELECTOR, "a.schedule")[1].click()
    assert _wait(lambda: "When Tony Blair may enter" in browser.page_source)
    browser.find_element(By.NAME, "windows").send_keys("Mon-Fri 07:00-19:00")
    browser.find_element(By.CSS_SELECTOR, "#schedule button").click()
    assert _wait(lambda: "Mon-Fri 07:00-19:00" in text_of("#people .access")), browser.page_source
    shot("schedule")

    # forget, with its confirmation step
    browser.get(f"{url}/people")
    browser.find_elements(By.CSS_SELECTOR, "a.forget")[0].click()
    assert _wait(lambda: "Forget Gerhard?" in browser.page_source)
    browser.find_element(By.CSS_SELECTOR, "#forget button").click()
    assert _wait(lambda: text_of("#error") == "tick the box to confirm")
    browser.find_element(By.ID, "confirm").click()
    browser.find_element(By.CSS_SELECTOR, "#forget button").click()
    assert _wait(lambda: "forgot 'Gerhard'" in text_of(".flash")), browser.page_source
    assert [e.text for e in by_css("#people .name")] == ["Tony Blair"]
    shot("forgotten")
    assert not list((state / "snapshots").glob("*.jpg")) or all(
        s.person != "Gerhard" for s in __import__("edge_verify.eventlog").eventlog.EventLog(state).snapshots())

    browser.find_element(By.CSS_SELECTOR, ".logout button").click()
    assert _wait(lambda: browser.current_url == f"{url}/login")
    daemon.proc.send_signal(2)
    assert daemon.wait(60) == 0, daemon.log
    assert "Traceback" not in daemon.log, daemon.log
    assert json.dumps(sorted(p.name for p in (tmp_path / "screenshots").iterdir()))
