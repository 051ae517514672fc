"""The edge-verify command, run as a user runs it (a subprocess), on real photos and bad inputs."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_verify.security import DEFAULT_SECURITY

from .conftest import REPO, lfw_photo


def ev(*args: str | Path, state: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edge_verify", *map(str, args), "--state-dir", str(state)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.fixture()
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["missing"] = tmp_path / "missing.jpg"
    files["empty"] = tmp_path / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["truncated"] = tmp_path / "truncated.jpg"
    files["truncated"].write_bytes(lfw_photo("Tony_Blair", 18).read_bytes()[:2500])
    files["text"] = tmp_path / "notes.png"
    files["text"].write_text("not an image at all")
    files["tiny"] = tmp_path / "tiny.png"
    cv2.imwrite(str(files["tiny"]), np.zeros((1, 1, 3), np.uint8))
    files["huge"] = tmp_path / "huge.png"
    small = cv2.imencode(".png", np.zeros((20, 20), np.uint8))[1].tobytes()
    files["huge"].write_bytes(small[:16] + (20000).to_bytes(4, "big") * 2 + small[24:])
    files["noface"] = tmp_path / "wall.jpg"
    cv2.imwrite(str(files["noface"]), np.full((240, 320, 3), 90, np.uint8))
    return files


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert lines[0].startswith("edge-verify: error:")
    return lines[0]


def test_enroll_verify_identify_exit_codes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    p = ev("enroll", "tony", lfw_photo("Tony_Blair", 18), state=state)
    assert p.returncode == 0, p.stderr
    assert ev("verify", "--claim", "tony", lfw_photo("Tony_Blair", 32), state=state).returncode == 0
    assert ev("verify", "--claim", "tony", lfw_photo("Hans_Blix", 7), state=state).returncode == 1
    p = ev("identify", "--json", lfw_photo("Tony_Blair", 32), lfw_photo("Hans_Blix", 7), state=state)
    assert p.returncode == 1
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["person"] for r in rows] == ["tony", None]
    p = ev("people", "list", "--json", state=state)
    assert json.loads(p.stdout)[0]["name"] == "tony"
    assert ev("people", "forget", "tony", state=state).returncode == 0
    assert json.loads(ev("people", "list", "--json", state=state).stdout) == []


def test_embed_json_goes_on_after_bad_paths(tmp_path: Path, bad_files: dict[str, Path]) -> None:
    good = lfw_photo("Tony_Blair", 18)
    paths = [bad_files["missing"], good, bad_files["truncated"], bad_files["noface"]]
    p = ev("embed", "--json", *paths, state=tmp_path / "s")
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(x) for x in paths]
    assert rows[0]["faces"] == [] and "no such file" in rows[0]["error"]
    assert rows[1]["error"] is None and len(rows[1]["faces"][0]["embedding"]) == 128
    face = rows[1]["faces"][0]
    assert len(face["bbox"]) == 4 and len(face["landmarks"]) == 5 and "ok" in face["quality"]
    assert "truncated" in rows[2]["error"]
    assert rows[3]["faces"] == [] and rows[3]["error"] == "no face found"
    assert p.returncode == 1


@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "no such file"), ("empty", "empty"), ("truncated", "truncated"), ("text", "not an image"),
     ("tiny", "too small"), ("huge", "larger than"), ("noface", "no face found")],
)
def test_bad_inputs_one_line_errors(tmp_path: Path, bad_files: dict[str, Path], kind: str, message: str) -> None:
    state = tmp_path / "state"
    assert ev("enroll", "tony", lfw_photo("Tony_Blair", 18), state=state).returncode == 0
    p = ev("verify", "--claim", "tony", bad_files[kind], state=state)
    assert p.returncode == 2
    assert message in one_line_error(p)


def test_unknown_claim_empty_gallery_and_several_faces(tmp_path: Path) -> None:
    state = tmp_path / "state"
    p = ev("identify", lfw_photo("Tony_Blair", 18), state=state)
    assert p.returncode == 2 and "no one is enrolled" in one_line_error(p)
    assert ev("enroll", "tony", lfw_photo("Tony_Blair", 18), state=state).returncode == 0
    p = ev("verify", "--claim", "nobody", lfw_photo("Tony_Blair", 32), state=state)
    assert p.returncode == 2 and "'nobody' is not enrolled" in one_line_error(p)
    a = cv2.imread(str(lfw_photo("Tony_Blair", 32)))
    b = cv2.resize(cv2.imread(str(lfw_photo("Hans_Blix", 7))), (100, 100))
    group = np.zeros((200, 300, 3), np.uint8)
    group[25:175, 0:150] = a
    group[50:150, 180:280] = b
    path = tmp_path / "group.jpg"
    cv2.imwrite(str(path), group)
    p = ev("verify", "--claim", "tony", path, state=state)
    assert p.returncode == 0, p.stderr
    assert "edge-verify: warning:" in p.stderr and "faces found, the largest is used" in p.stderr


def test_debug_shows_traceback(tmp_path: Path) -> None:
    p = ev("verify", "--claim", "x", tmp_path / "missing.jpg", "--debug", state=tmp_path / "s")
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_enrol_refuses_a_face_the_quality_gate_rejects_unless_forced(tmp_path: Path) -> None:
    img = cv2.imread(str(lfw_photo("Tony_Blair", 18)))
    blurred = tmp_path / "blurred.jpg"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(img, (0, 0), 6))
    state = tmp_path / "state"
    p = ev("enroll", "tony", blurred, state=state)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line = p.stderr.strip().splitlines()[-1]  # a warning may come first (the blur makes a second "face")
    assert line.startswith("edge-verify: error:")
    assert "face not usable" in line and "blurred" in line and "--force" in line
    assert not (state / "gallery.sqlite3").exists()  # nothing written, not even an empty gallery
    assert ev("enroll", "tony", blurred, "--force", state=state).returncode == 0


def test_enrolling_two_people_under_one_name_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tony, hans = lfw_photo("Tony_Blair", 18), lfw_photo("Hans_Blix", 7)
    p = ev("enroll", "tony", tony, hans, state=state)
    assert p.returncode == 2
    line = one_line_error(p)
    assert f"{hans} does not look like the same person as {tony}" in line and "--force" in line
    assert not (state / "gallery.sqlite3").exists()
    assert ev("enroll", "tony", tony, state=state).returncode == 0
    p = ev("enroll", "Anthony", lfw_photo("Tony_Blair", 32), state=state)  # tony again, another name
    assert p.returncode == 0
    assert p.stderr.startswith("edge-verify: warning:") and "looks like 'tony', already enrolled" in p.stderr
    p = ev("enroll", "TONY", lfw_photo("Tony_Blair", 32), state=state)
    assert p.returncode == 0 and p.stdout.strip() == "enrolled 'tony': 1 template added"


def test_read_only_commands_never_create_a_gallery(tmp_path: Path) -> None:
    typo = tmp_path / "sate"
    for args in (["people", "list"], ["people", "forget", "tony"], ["identify", lfw_photo("Tony_Blair", 18)],
                 ["verify", "--claim", "tony", lfw_photo("Tony_Blair", 18)]):
        p = ev(*args, state=typo)
        assert p.returncode == 2
        assert f"no gallery at {typo}/gallery.sqlite3" in one_line_error(p)
    assert not typo.exists()


def test_decoder_noise_never_reaches_stderr(tmp_path: Path) -> None:
    """libjpeg's "Corrupt JPEG data" and libpng's warnings are not printed: one line or nothing."""
    photo = cv2.imread(str(lfw_photo("Tony_Blair", 18)))
    jpeg = cv2.imencode(".jpg", photo)[1].tobytes()
    half = tmp_path / "half.jpg"
    half.write_bytes(jpeg[: len(jpeg) // 2] + b"\xff\xd9")  # passes the end-marker check, half grey
    p = ev("enroll", "tony", half, state=tmp_path / "state")
    assert p.returncode == 2 and "JPEG data is corrupt" in one_line_error(p)
    png = cv2.imencode(".png", photo)[1].tobytes()
    bad_iccp = b"iCCP" + b"bogus\0\0" + zlib.compress(b"x" * 200)
    noisy = tmp_path / "noisy.png"
    noisy.write_bytes(png[:33] + struct.pack(">I", len(bad_iccp) - 4) + bad_iccp
                      + struct.pack(">I", zlib.crc32(bad_iccp) & 0xFFFFFFFF) + png[33:])
    p = ev("enroll", "tony", noisy, state=tmp_path / "state")
    assert p.returncode == 0 and p.stderr == ""


def test_people_check_and_enrol_warn_about_one_person_under_two_names(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert ev("enroll", "tony", lfw_photo("Tony_Blair", 18), state=state).returncode == 0
    p = ev("enroll", "hans", lfw_photo("Hans_Blix", 7), state=state)
    assert p.returncode == 0 and "close" not in p.stderr, p.stderr
    p = ev("people", "check", "--json", state=state)
    assert p.returncode == 0 and json.loads(p.stdout)["pairs"] == [], p.stdout + p.stderr
    assert json.loads(p.stdout)["level"] == DEFAULT_SECURITY and json.loads(p.stdout)["tau"] < 1.35
    p = ev("enroll", "blair", lfw_photo("Tony_Blair", 32), state=state)  # the same man again
    assert p.returncode == 0 and "looks like 'tony', already enrolled" in p.stderr, p.stderr
    p = ev("people", "check", state=state)
    assert p.returncode == 1 and p.stdout.startswith("blair\ttony\tdistance"), p.stdout
    assert "1 pair closer than tau" in p.stderr
    assert ev("people", "check", "--tau", "0.01", state=state).returncode == 0


def test_people_check_with_an_uncalibrated_manifest_is_a_one_line_error(tmp_path: Path) -> None:
    model = REPO / "edge_verify" / "models" / "sface_int8.tflite"
    (tmp_path / model.name).symlink_to(model)
    manifest = json.loads(model.with_suffix(".json").read_text())
    del manifest["operating_points"]
    (tmp_path / "sface_int8.json").write_text(json.dumps(manifest))
    mine = tmp_path / model.name
    assert ev("enroll", "tony", lfw_photo("Tony_Blair", 18), "--model", mine, state=tmp_path / "state").returncode == 0
    p = ev("people", "check", "--model", mine, state=tmp_path / "state")
    assert p.returncode == 2 and "stricter than the only calibrated point" in one_line_error(p)
