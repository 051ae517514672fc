"""PAD evaluation (converter.pad): ISO/IEC 30107-3 error rates, the threshold rule, leave-one-subject-out,
the folder layout, and ``evaluate --pad`` through the product on real NUAA frames; the synthetic attacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converter.attacks import KINDS, make_attack
from converter.pad import (
    PadSet,
    choose_threshold,
    error_rates,
    leave_one_subject_out,
    read_pad_dir,
    summarise,
    threshold_at_apcer,
    threshold_at_bpcer,
)

from .conftest import NUAA, lfw_photo, needs_matplotlib


def test_error_rates_count_no_face_as_never_accepted() -> None:
    live = np.array([0.9, 0.8, 0.2, np.nan])
    attack = np.array([0.01, 0.6, np.nan, 0.0])
    assert error_rates(live, attack, 0.5) == (0.25, 0.5)  # 1 of 4 attacks accepted; 2 of 4 live rejected
    assert error_rates(live, attack, 0.0) == (0.75, 0.25)  # NaN never passes, even at 0


def test_thresholds_at_apcer_and_bpcer() -> None:
    attack = np.linspace(0.0, 0.99, 100)  # 0.00 .. 0.99
    t = threshold_at_apcer(attack, 0.01)
    assert error_rates(np.array([1.0]), attack, t)[0] == pytest.approx(0.01)
    assert t > 0.98 and error_rates(np.array([1.0]), attack, 0.98)[0] > 0.01
    live = np.linspace(0.01, 1.0, 100)
    t = threshold_at_bpcer(live, 0.01)
    assert error_rates(live, attack, t)[1] == pytest.approx(0.01)


def test_choose_threshold_takes_the_middle_of_the_window_else_protects_against_attacks() -> None:
    attack = np.array([0.001] * 99 + [0.01])
    live = np.array([0.5] * 99 + [0.1])
    t = choose_threshold(live, attack)
    assert 0.01 < t < 0.5
    assert error_rates(live, attack, t) == (0.0, 0.0) or error_rates(live, attack, t)[1] <= 0.01
    overlap_attack = np.array([0.6] * 10 + [0.0] * 90)
    t = choose_threshold(live, overlap_attack)  # no window: APCER <= 1 % wins
    assert error_rates(live, overlap_attack, t)[0] <= 0.01


def _set(scores_live: list[float], scores_att: list[float], subj_live: list[str], subj_att: list[str]) -> tuple:
    n = len(scores_live) + len(scores_att)
    s = PadSet([Path(f"{i}.jpg") for i in range(n)], np.array([True] * len(scores_live) + [False] * len(scores_att)),
               ["bona fide"] * len(scores_live) + ["print"] * len(scores_att), subj_live + subj_att)
    return np.array(scores_live + scores_att, np.float64), s


def test_leave_one_subject_out_never_tunes_on_the_held_out_subject() -> None:
    # subject "c" is an outlier: its live faces score like the others' attacks
    scores, s = _set([0.9, 0.9, 0.8, 0.85, 0.05, 0.06], [0.01, 0.02, 0.01, 0.02, 0.0, 0.0],
                     ["a", "a", "b", "b", "c", "c"], ["a", "a", "b", "b", "c", "c"])
    lo = leave_one_subject_out(scores, s)
    assert lo is not None and lo["subjects"] == 3
    assert lo["per_subject"]["c"]["rejected_bona_fide"] == 2  # a threshold chosen on a and b rejects c
    assert lo["bpcer"] == pytest.approx(2 / 6) and lo["apcer"] == 0.0
    report = summarise(scores, s, 0.03)
    assert report["bpcer"] == 0.0 and report["apcer"] == 0.0 and report["apcer_by_species"] == {"print": 0.0}


def test_read_pad_dir_layouts(tmp_path: Path) -> None:
    jpg = lfw_photo("Tony_Blair", 18)
    for rel in ("live/s1/a.jpg", "live/s2/b.jpg", "photo_attack/s1/c.jpg", "attack/screen/d.jpg", "attack/e.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).symlink_to(jpg)
    s = read_pad_dir(tmp_path)
    assert int(s.live.sum()) == 2 and len(s.paths) == 5
    assert sorted(s.species) == ["attack", "bona fide", "bona fide", "photo", "screen"]
    assert s.subjects[:2] == ["s1", "s2"] and "s1" in s.subjects[2:]
    with pytest.raises(Exception, match="no live/"):
        read_pad_dir(tmp_path / "live")


@needs_matplotlib
def test_evaluate_pad_through_the_product_on_nuaa_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from converter.evaluate import main

    data = tmp_path / "nuaa"
    for cls in ("live", "photo_attack"):
        for subject in ("0002", "0005"):
            d = data / cls / subject
            d.mkdir(parents=True)
            for p in sorted((NUAA / cls / subject).glob("*.jpg"))[:3]:
                (d / p.name).symlink_to(p)
    out = tmp_path / "pad.json"
    assert main(["--pad", str(data), "--json", str(out), "--plot", str(tmp_path / "det.png"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "APCER" in text and "BPCER" in text and "LOSO (2 subjects)" in text
    r = json.loads(out.read_text())
    at = r["at_threshold"]
    assert at["bona_fide"] == 6 and at["attacks"] == 6 and at["no_face"] == {"bona_fide": 0, "attacks": 0}
    assert at["apcer"] == 0.0 and at["bpcer"] == 0.0  # these frames are clear cases
    assert (tmp_path / "det.png").stat().st_size > 1000


def test_synthetic_attacks_are_camera_frames_with_a_detectable_face() -> None:
    from edge_verify.detect import FaceDetector
    from edge_verify.imageio import read_image

    photo = read_image(lfw_photo("Tony_Blair", 18))
    det = FaceDetector()
    for kind in KINDS:
        a = make_attack(photo, kind, np.random.default_rng(0))
        b = make_attack(photo, kind, np.random.default_rng(0))
        assert a.shape == (480, 640, 3) and a.dtype == np.uint8
        assert np.array_equal(a, b)  # seeded: the same attack every time
        assert det.detect(a), kind
    with pytest.raises(ValueError, match="unknown attack kind"):
        make_attack(photo, "mask", np.random.default_rng(0))
