"""Horizontal-flip averaging in the Embedder, and flip-averaged enrolment templates (docs/ENCODERS.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_verify.embed import Embedder
from edge_verify.match import l2_normalize, squared_l2
from edge_verify.models import resolve_encoder

from .conftest import lfw_photo


@pytest.fixture(scope="module")
def crop(verifier_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    from edge_verify.align import align_face
    from edge_verify.imageio import read_image

    fv = verifier_factory(tmp_path_factory.mktemp("crop"))
    img = read_image(lfw_photo("Tony_Blair", 18))
    return align_face(img, fv.detector.detect(img)[0].landmarks)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(resolve_encoder().model_path, num_threads=1)


def test_flip_is_the_renormalised_mean_of_crop_and_mirror(embedder: Embedder, crop: np.ndarray) -> None:
    mirror = np.ascontiguousarray(crop[:, ::-1])
    plain, mirrored = embedder.embed(crop), embedder.embed(mirror)
    flipped = embedder.embed(crop, flip=True)
    assert abs(float(np.linalg.norm(flipped)) - 1.0) < 1e-5
    np.testing.assert_allclose(flipped, l2_normalize(plain + mirrored), atol=1e-6)
    # the crop and its mirror give different encodings, and the same one once averaged
    assert float(squared_l2(plain, mirrored[None])[0]) > 1e-3
    np.testing.assert_allclose(embedder.embed(mirror, flip=True), flipped, atol=1e-6)


def test_flip_setting_is_the_default_and_a_call_overrides_it(crop: np.ndarray) -> None:
    flipping = Embedder(resolve_encoder().model_path, num_threads=1, flip=True)
    assert flipping.flip
    np.testing.assert_allclose(flipping.embed(crop), flipping.embed(crop, flip=True), atol=1e-6)
    plain = flipping.embed(crop, flip=False)
    assert float(squared_l2(plain, flipping.embed(crop)[None])[0]) > 1e-4
    batch = flipping.embed_batch([crop, crop], flip=False)
    np.testing.assert_allclose(batch, np.stack([plain, plain]), atol=1e-6)


def test_enrolment_templates_are_flip_averaged_probes_are_not(verifier_factory: Any, tmp_path: Path) -> None:
    photo = lfw_photo("Tony_Blair", 18)
    fv = verifier_factory(tmp_path / "flip")
    assert fv.flip_enrolment
    fv.enroll("tony", [photo])
    template = fv.gallery.matrix().vectors[0]
    probe = fv.encode_one(photo)
    flipped = fv.encode_one(photo, flip=True)
    # stored as int8 (1/127 steps, ~7e-4 squared error): the template is the flip average (the plain
    # encoding of this photo lies ~0.02 from it)
    assert float(squared_l2(flipped, template[None])[0]) < 3e-3
    assert float(squared_l2(probe, template[None])[0]) > 1e-2
    assert fv.verify("tony", photo).accepted

    plain_fv = verifier_factory(tmp_path / "plain", flip_enrolment=False)
    plain_fv.enroll("tony", [photo])
    assert float(squared_l2(probe, plain_fv.gallery.matrix().vectors[0][None])[0]) < 3e-3


def test_new_person_enrolment_stores_flip_averaged_templates(verifier_factory: Any, tmp_path: Path) -> None:
    """``enroll --new`` and the console's photo enrolment (``enrolment.enrol_new_person``) make templates
    as ``FaceVerifier.enroll`` does: the photo and its mirror averaged."""
    from edge_verify.enrolment import enrol_new_person

    photo = lfw_photo("Tony_Blair", 18)
    fv = verifier_factory(tmp_path / "new")
    assert enrol_new_person(fv, "tony", [(photo, "a.jpg")]) == 1
    template = fv.gallery.matrix().vectors[0]
    assert float(squared_l2(fv.encode_one(photo, flip=True), template[None])[0]) < 3e-3
    assert float(squared_l2(fv.encode_one(photo), template[None])[0]) > 1e-2


def test_only_the_main_face_is_encoded_when_one_is_wanted(verifier_factory: Any, tmp_path: Path) -> None:
    from .conftest import LFW

    fv = verifier_factory(tmp_path / "two")
    two = LFW / "images" / "Alejandro_Toledo_0021.jpg"  # two faces
    every = fv.process(two).faces
    main = fv.process(two, encode=1).faces
    assert len(every) == len(main) >= 2
    assert all(f.embedding is not None for f in every)
    assert main[0].embedding is not None and all(f.embedding is None for f in main[1:])
    np.testing.assert_allclose(main[0].embedding, every[0].embedding, atol=1e-6)
    assert [f.quality for f in main] == [f.quality for f in every]
    np.testing.assert_allclose(fv.encode_one(two), every[0].embedding, atol=1e-6)
