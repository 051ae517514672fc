"""Shared fixtures: real photos from ../shared, the bundled model, a private state directory."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_VERIFY_SHARED", REPO.parent / "shared")).resolve()
LFW = SHARED / "data" / "lfw"
YALEB = SHARED / "data" / "extended_yaleb"
SHARED_MODELS = SHARED / "models"
SFACE_ONNX = SHARED_MODELS / "face_recognition_sface_2021dec_int8bq.onnx"
NUAA = SHARED / "data" / "nuaa"


def lfw_photo(name: str, number: int) -> Path:
    """A real LFW photo, e.g. lfw_photo("Tony_Blair", 3)."""
    path = LFW / "images" / f"{name}_{number:04d}.jpg"
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (set EDGE_VERIFY_SHARED)")
    return path


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A command run in-process configures the root logger: put it back as it was after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not LFW.is_dir():
        pytest.fail(f"shared data not found at {SHARED}: set EDGE_VERIFY_SHARED")
    return SHARED


@pytest.fixture()
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture(scope="session")
def verifier_factory() -> Iterator[object]:
    """Build FaceVerifiers over the bundled model, sharing one detector and embedder (fast)."""
    from edge_verify.pipeline import FaceVerifier

    base = FaceVerifier(state_dir="/nonexistent-unused")
    made: list[FaceVerifier] = []

    def make(state: Path, **kw: object) -> FaceVerifier:
        fv = FaceVerifier.__new__(FaceVerifier)
        fv.__dict__.update(base.__dict__)
        fv.state_dir = Path(state)
        fv._gallery = None
        for k, v in kw.items():
            setattr(fv, k, v)
        made.append(fv)
        return fv

    yield make
    for fv in made:
        fv.close()


needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib (the convert extra) is not installed")


# -- a real mosquitto ---------------------------------------------------------------------------------
def _mosquitto_missing() -> bool:
    from tests.broker import find_mosquitto

    return find_mosquitto() is None


needs_broker = pytest.mark.skipif(_mosquitto_missing(), reason="mosquitto is not installed")


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[object]:
    """A real mosquitto on a free loopback port, anonymous, no persistence."""
    from tests.broker import Broker

    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture()
def pbroker(tmp_path: Path) -> Iterator[object]:
    """A broker that keeps sessions across a kill once saved: a subscriber misses nothing."""
    from tests.broker import Broker

    b = Broker(tmp_path / "pbroker", persistent=True).start()
    yield b
    b.stop()


# -- the daemon's scene -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def enrolled_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory whose gallery holds the first two photos of each of tests.visits.ENROLLED."""
    from edge_verify.pipeline import FaceVerifier
    from tests.visits import ENROLLED, MODEL, photos

    state = tmp_path_factory.mktemp("gallery")
    fv = FaceVerifier(model=MODEL, state_dir=state, num_threads=1)
    for person in ENROLLED:
        fv.enroll(person, photos(person)[:2])
    fv.close()
    return state


@pytest.fixture(autouse=True)
def _no_daemon_left() -> Iterator[None]:
    """A failing test leaves no daemon process behind."""
    yield
    from tests.visits import DaemonProc

    while DaemonProc.running:
        d = DaemonProc.running.pop()
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
