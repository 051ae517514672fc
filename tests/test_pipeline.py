"""FaceVerifier on real LFW photos with the bundled int8 model: one-shot enrolment, 1:1, 1:N."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_verify.errors import EnrolmentError, GalleryError, NoFaceError, NoGalleryError, UnknownPersonError

from .conftest import LFW, lfw_photo


def people_with_photos(n: int, min_photos: int = 2) -> list[tuple[str, list[Path]]]:
    """n LFW people with at least min_photos photos each, in a fixed order."""
    with (LFW / "people_in_subset.tsv").open() as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if len(r) == 2 and r[1].isdigit()]
    out = []
    for name, count in sorted(rows):
        if int(count) >= min_photos:
            photos = sorted((LFW / "images").glob(f"{name}_[0-9][0-9][0-9][0-9].jpg"))
            if len(photos) >= min_photos:
                out.append((name, photos))
        if len(out) == n:
            break
    return out


@pytest.fixture()
def fv(verifier_factory: Any, state_dir: Path) -> Any:
    return verifier_factory(state_dir)


def test_embed_gives_unit_encodings_largest_face_first(fv: Any) -> None:
    faces = fv.embed(lfw_photo("Tony_Blair", 18))
    assert faces
    e = faces[0].embedding
    assert e.shape == (128,) and e.dtype == np.float32
    assert abs(float(np.linalg.norm(e)) - 1.0) < 1e-4
    assert faces[0].quality.ok, faces[0].quality.reasons
    areas = [f.face.area for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_one_shot_enrol_then_verify_and_reject(fv: Any) -> None:
    assert fv.enroll("tony", [lfw_photo("Tony_Blair", 18)]) == 1
    same = fv.verify("tony", lfw_photo("Tony_Blair", 32))
    assert same.accepted and same.distance < fv.tau
    for other in [lfw_photo("Hans_Blix", 7), lfw_photo("Jennifer_Garner", 1), lfw_photo("Tiger_Woods", 2)]:
        d = fv.verify("tony", other)
        assert not d.accepted and d.distance >= fv.tau


def test_identify_among_twenty_people(fv: Any) -> None:
    people = people_with_photos(20)
    assert len(people) == 20
    for name, photos in people:
        fv.enroll(name, [photos[0]], require_quality=False)
    right = 0
    for name, photos in people:
        d = fv.identify(photos[1], top_k=3)
        right += d.accepted and d.person == name
    assert right >= 18  # LFW's second photos include profile and occluded faces
    stranger = fv.identify(lfw_photo("Tony_Blair", 18))
    assert not stranger.accepted and stranger.person is None  # a new face matches no one


def test_tightly_cropped_and_large_faces_are_found(fv: Any) -> None:
    img = cv2.imread(str(lfw_photo("Tony_Blair", 18)))
    face = fv.embed(img)[0].face
    x, y, w, h = (int(v) for v in face.bbox)
    tight = np.ascontiguousarray(img[max(y, 0): y + h, max(x, 0): x + w])
    big = cv2.resize(img, (1600, 1600))
    ref = fv.embed(img)[0].embedding
    for variant in (tight, big):
        faces = fv.embed(variant)
        assert faces, "face not found"
        assert float(((faces[0].embedding - ref) ** 2).sum()) < fv.tau


def test_no_face_unknown_claim_and_empty_gallery(fv: Any, tmp_path: Path) -> None:
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    with pytest.raises(GalleryError, match="no one is enrolled"):
        fv.identify(lfw_photo("Tony_Blair", 18))
    with pytest.raises(NoFaceError, match="no face found"):
        fv.enroll("wall", [blank])
    assert fv.people() == []  # nothing written
    fv.enroll("tony", [lfw_photo("Tony_Blair", 18)])
    with pytest.raises(UnknownPersonError, match="'nobody' is not enrolled"):
        fv.verify("nobody", lfw_photo("Tony_Blair", 32))


def test_enrolment_is_all_or_nothing(fv: Any, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    with pytest.raises(Exception, match="no such file"):
        fv.enroll("tony", [lfw_photo("Tony_Blair", 18), missing])
    assert fv.people() == []


def test_gallery_from_another_model_is_refused(verifier_factory: Any, state_dir: Path) -> None:
    from edge_verify.gallery import Gallery

    g = Gallery(state_dir, "0" * 64)
    g.add("tony", np.eye(128, dtype=np.float32)[:1])
    g.close()
    fv = verifier_factory(state_dir)
    with pytest.raises(GalleryError, match="another model"):
        fv.identify(lfw_photo("Tony_Blair", 18))


def test_detection_on_a_small_stream_encodes_from_the_full_frame(fv: Any) -> None:
    """picamera2's lores stream: detect on the small image, align and encode from the main one."""
    main = np.zeros((480, 640, 3), np.uint8)
    main[90:390, 170:470] = cv2.resize(cv2.imread(str(lfw_photo("Tony_Blair", 18))), (300, 300))
    lores = cv2.resize(main, (320, 240), interpolation=cv2.INTER_AREA)
    direct = fv.process(main).faces[0]
    via_lores = fv.process(main, detect_image=lores).faces[0]
    np.testing.assert_allclose(via_lores.face.landmarks, direct.face.landmarks, atol=12)  # 4% of the face
    assert float(((via_lores.embedding - direct.embedding) ** 2).sum()) < 0.3


def test_pad_retry_finds_tight_crops_and_can_be_turned_off(fv: Any) -> None:
    """Faces cropped inside their own box (ID-photo style) are missed by YuNet unless padded."""
    from edge_verify.detect import FaceDetector

    plain, padded = FaceDetector(pad_retry=False), FaceDetector()
    found_plain = found_padded = 0
    photos = sorted((LFW / "images").glob("*.jpg"))[::400]
    for path in photos:
        img = cv2.imread(str(path))
        x, y, w, h = (int(v) for v in padded.detect(img)[0].bbox)
        dx, dy = w // 5, h // 5
        tight = cv2.resize(img[max(y, 0) + dy: y + h - dy, max(x, 0) + dx: x + w - dx], (400, 400))
        found_plain += bool(plain.detect(tight))
        found_padded += bool(padded.detect(tight))
    assert found_padded >= 0.9 * len(photos) > found_plain
    assert plain.detect(np.full((240, 320, 3), 100, np.uint8)) == []


def test_photos_of_two_people_in_one_enrolment_are_refused(fv: Any) -> None:
    tony, hans = lfw_photo("Tony_Blair", 18), lfw_photo("Hans_Blix", 7)
    with pytest.raises(EnrolmentError) as err:
        fv.enroll("tony", [tony, lfw_photo("Tony_Blair", 32), hans])
    text = str(err.value)
    assert f"{hans} does not look like the same person as {tony} and " in text and "nothing enrolled" in text
    assert not fv.gallery.people()
    fv.enroll("tony", [tony, lfw_photo("Tony_Blair", 32)])  # two photos of one person: fine
    with pytest.raises(EnrolmentError, match=rf"{hans} does not look like the same person as 'tony' as enrolled"):
        fv.enroll("TONY", [hans])  # the same name in capitals: the same person, so Hans is refused
    fv.enroll("tony", [hans], check_identity=False)  # the caller's explicit override
    assert [p.templates for p in fv.gallery.people()] == [3]


def test_a_face_enrolled_under_two_names_warns_and_is_ambiguous(fv: Any, caplog: pytest.LogCaptureFixture) -> None:
    photo = lfw_photo("Tony_Blair", 18)
    fv.enroll("tony", [photo])
    fv.enroll("Hans", [lfw_photo("Hans_Blix", 7)])
    caplog.clear()
    fv.enroll("anthony", [photo])
    assert f"{photo} looks like 'tony', already enrolled" in caplog.text and "Hans" not in caplog.text
    d = fv.identify(photo)
    assert not d.accepted and d.person is None
    assert d.reason is not None and "ambiguous" in d.reason and "'anthony'" in d.reason and "'tony'" in d.reason
    assert fv.verify("TONY", photo).person == "tony"  # a claim is found in any case


def test_reading_does_not_create_a_gallery(verifier_factory: Any, tmp_path: Path) -> None:
    fv = verifier_factory(tmp_path / "typo", create_gallery=False)
    with pytest.raises(NoGalleryError, match="no gallery at"):
        fv.identify(lfw_photo("Tony_Blair", 18))
    assert not (tmp_path / "typo").exists()
    fv.enroll("tony", [lfw_photo("Tony_Blair", 18)])  # enrolling creates it
    assert fv.identify(lfw_photo("Tony_Blair", 32)).person == "tony"
