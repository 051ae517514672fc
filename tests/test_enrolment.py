"""Enrolment at the door: the guided session (pure, frame by frame), the new-person rules on real
photos, and ``edge-verify enroll NAME --camera`` on a replay camera of real photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_verify.enrol_session import EnrolSession, EnrolSettings, Observed, hint
from edge_verify.errors import GalleryError, ImageError, NoFaceError
from edge_verify.match import Decision
from edge_verify.quality import Quality
from tests.conftest import LFW, REPO

OK = Quality(True, [], 80.0, 50.0, 0.0, 0.0, 0.0)
CAMERA_PERSON = "Gerhard_Schroeder"  # 11 photos in the shared subset, one face in each
TWO_FACES = LFW / "images" / "Alejandro_Toledo_0021.jpg"


def _emb(seed: int, base: np.ndarray | None = None, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = (base if base is not None else rng.normal(size=128)) + noise * rng.normal(size=128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _face(emb: np.ndarray | None, yaw: float = 0.0, q: Quality | None = None, bright: float = 120.0) -> Observed:
    q = q or OK
    return Observed(Quality(q.ok, q.reasons, q.size, q.sharpness, yaw, q.pitch, q.roll), emb, bright)


def _no_match(emb: np.ndarray) -> Decision | None:
    return None


def test_session_guides_and_keeps_varied_frames() -> None:
    me = _emb(1, noise=0)
    s = EnrolSession("ann", _no_match, tau=1.0, settings=EnrolSettings(k=3, min_gap_s=0.2, pose_wait_s=1.0))
    assert s.feed(0.0, []).message == "step in front of the camera"
    assert "2 faces in view" in s.feed(0.1, [_face(me), _face(_emb(2))]).message
    far = Observed(OK, _emb(2), 120.0, size=30.0)  # someone far behind: not a second person in view
    assert s.feed(0.15, [Observed(OK, None, 120.0, size=100.0), far]).message == "hold still"
    assert s.feed(0.2, [_face(me, bright=10)]).message.startswith("too dark")
    assert s.feed(0.3, [_face(me, bright=250)]).message.startswith("too bright")
    small = Quality(False, ["face too small (20 px < 32)"], 20.0)
    assert s.feed(0.4, [_face(me, q=small)]).message == "come closer"
    assert s.feed(0.5, [_face(_emb(3, me), yaw=0)]).state == "kept"
    assert s.feed(0.6, [_face(_emb(4, me), yaw=10)]).message == "hold still"  # too soon after the last
    assert s.feed(0.8, [_face(_emb(5, me), yaw=1)]).message == "turn your head a little"  # same pose
    p = s.feed(0.9, [_face(_emb(6, me), yaw=8)])
    assert (p.state, p.kept) == ("kept", 2)
    p = s.feed(2.5, [_face(_emb(7, me), yaw=8)])  # same pose, but over a second later: varied in time
    assert (p.state, p.kept, p.finished) == ("done", 3, True)
    assert s.embeddings().shape == (3, 128)
    assert s.feed(3.0, []).state == "done"  # finished: stays so


def test_session_restarts_on_another_face_and_refuses_someone_enrolled() -> None:
    me, other = _emb(1, noise=0), _emb(99, noise=0)
    s = EnrolSession("ann", _no_match, tau=1.0, settings=EnrolSettings(k=3, min_gap_s=0.0))
    s.feed(0.0, [_face(me)])
    assert s.feed(2.0, [_face(other)]).message == "a different face: starting again"
    assert s.feed(2.1, [_face(other)]).kept == 1

    def bob(emb: np.ndarray) -> Decision:
        return Decision(True, "bob", 0.3, 1.0, [("bob", 0.3)])

    s = EnrolSession("ann", bob, tau=1.0)
    p = s.feed(0.0, [_face(me)])
    assert p.state == "refused" and "already enrolled as 'bob'" in p.message
    # the same person adding frames to their own name is not refused
    s = EnrolSession("bob", bob, tau=1.0)
    assert s.feed(0.0, [_face(me)]).state == "kept"


@pytest.mark.parametrize(("reason", "say"), [
    ("face too blurred (sharpness 3.0 < 12.0)", "hold still (the face is blurred)"),
    ("head turned too far (+50 deg yaw)", "face the camera"),
    ("head tilted too far (+40 deg pitch)", "face the camera"),
    ("detection score too low (0.40 < 0.60)", "face the camera (the face is hard to see)"),
])
def test_quality_reasons_become_plain_hints(reason: str, say: str) -> None:
    assert hint(Quality(False, [reason])) == say


def test_new_person_rules_on_real_photos(verifier_factory, state_dir: Path) -> None:
    from edge_verify.enrolment import enrol_new_person
    from tests.visits import photos

    fv = verifier_factory(state_dir)
    blair = photos("Tony_Blair")
    assert enrol_new_person(fv, "Tony", [(blair[0], "a.jpg"), (blair[1], "b.jpg")]) == 2
    with pytest.raises(GalleryError, match="'Tony' is already enrolled"):
        enrol_new_person(fv, " Tony ", [(blair[2], "c.jpg")])
    with pytest.raises(GalleryError, match="already enrolled as 'Tony'"):
        enrol_new_person(fv, "Anthony", [(blair[3], "d.jpg")])
    with pytest.raises(ImageError, match=r"two\.jpg: 2 faces found: one face per photo"):
        enrol_new_person(fv, "Alejandro", [(TWO_FACES, "two.jpg")])
    blank = np.full((200, 200, 3), 90, np.uint8)
    with pytest.raises(NoFaceError, match=r"blank\.png: no face found"):
        enrol_new_person(fv, "Nobody", [(blank, "blank.png")])
    with pytest.raises(GalleryError, match="control characters"):
        enrol_new_person(fv, "ann\x1b[31m", [(blair[4], "e.jpg")])
    assert fv.people() == ["Tony"]  # nothing else went in


def camera_replay(directory: Path, person: str = CAMERA_PERSON) -> Path:
    """A replay camera: the photos of one person, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    for src in sorted((LFW / "images").glob(f"{person}_*.jpg")):
        (directory / src.name).symlink_to(src)
    return directory


def _templates_are_flip_averaged(cfg_path: Path, cam: Path) -> None:
    """Each template enrolled from the camera is a frame's flip-averaged encoding (crop and mirror, as
    photo enrolment makes templates), not its plain one."""
    from edge_verify.config import load
    from edge_verify.gate import verifier_from_config
    from edge_verify.match import squared_l2

    fv = verifier_from_config(load(cfg_path))
    try:
        templates = fv.gallery.matrix().vectors
        frames = [fv.process(str(p), only_ok=True, max_faces=2, flip=f).faces for f in (True, False)
                  for p in sorted(cam.iterdir())]
        enc = np.stack([faces[0].embedding for faces in frames if faces and faces[0].embedding is not None])
        flipped, plain = enc[: len(enc) // 2], enc[len(enc) // 2:]
        for t in templates:
            # stored as int8: ~7e-4 squared error; a frame's plain encoding lies ~0.02 from its flip average
            assert float(squared_l2(t, flipped).min()) < 3e-3
            assert float(squared_l2(t, flipped).min()) < float(squared_l2(t, plain).min())
    finally:
        fv.close()


def test_drive_says_look_at_the_camera_first_and_each_change_once() -> None:
    """drive() opens with the guide line (for the daemon and the CLI alike), then reports each change once;
    a first frame with the same words is still reported (the opening line is not part of the dedup)."""
    from types import SimpleNamespace

    from edge_verify.enrol_camera import drive
    from edge_verify.enrol_session import Progress

    said = [Progress("guide", 0, 3, "look at the camera"), Progress("guide", 0, 3, "look at the camera"),
            Progress("kept", 1, 3, "good"), Progress("done", 3, 3, "done")]
    feed = iter(said)
    session = SimpleNamespace(settings=EnrolSettings(k=3), feed=lambda ts, faces: next(feed))
    lines: list[dict[str, object]] = []
    items = [(float(i), None, None) for i in range(4)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("edge_verify.enrol_camera.observed", lambda result, image: [])
        last, why = drive(session, items, 60.0, lines.append)  # type: ignore[arg-type]
    first = {"state": "guide", "kept": 0, "k": 3, "message": "look at the camera"}
    assert lines == [first, first, said[2].to_dict(), said[3].to_dict()] and (last.state, why) == ("done", "done")
    lines.clear()
    assert drive(session, [], 60.0, lines.append)[1] == "the camera gave no more frames"  # type: ignore[arg-type]
    assert lines == [first]


def test_enroll_from_the_camera_without_a_daemon(tmp_path: Path) -> None:
    cam = camera_replay(tmp_path / "cam")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[device]\nstate_dir = "{tmp_path / "state"}"\n[camera]\ntype = "directory"\n'
                   f'source = "{cam}"\nfps = 10\nat_end = "loop"\n[mqtt]\nenabled = false\n[model]\nthreads = 1\n')
    run = [sys.executable, "-m", "edge_verify", "enroll", "--camera", "--config", str(cfg), "--new"]
    p = subprocess.run([*run, "--json", "Gerhard"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert lines[-1] == {"name": "Gerhard", "templates": 5}
    kept = [x["progress"]["kept"] for x in lines[:-1]]
    assert kept == sorted(kept) and kept[-1] == 5 and lines[-2]["progress"]["state"] == "done"
    _templates_are_flip_averaged(cfg, cam)
    # the same face again, under another name: refused, and said in one line
    p = subprocess.run([*run, "Gerd"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == ("edge-verify: error: this face is already enrolled as 'Gerhard': "
                                                 "nothing enrolled")
    # a replay that ends before enough frames: a clear error, nothing enrolled
    short = tmp_path / "short"
    short.mkdir()
    (short / "a.jpg").symlink_to(sorted((LFW / "images").glob("Colin_Powell_*.jpg"))[0])
    cfg.write_text(cfg.read_text().replace(str(cam), str(short)).replace('"loop"', '"stop"'))
    p = subprocess.run([*run, "Colin"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == ("edge-verify: error: enrolment of 'Colin' not done: the camera gave no more frames, "
                                "with 1 of 5 frames kept (last hint: good: keep looking at the camera, turning a "
                                "little); nothing enrolled")
