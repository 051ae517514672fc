"""Training data: LFW folds, crops cut by the runtime's detector, P x K batches, augmentation, bundles."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from converter.data import (
    NO_AUGMENT,
    Augment,
    DataError,
    FaceSet,
    PKSampler,
    load_bundle,
    load_folder,
    save_bundle,
)
from converter.lfw import LfwError, parse_folds, read_pairs
from converter.lfw import person_folds as lfw_person_folds

from .conftest import LFW, SHARED

PEOPLE = ("Tony_Blair", "Hans_Blix", "David_Beckham", "Tiger_Woods", "Hugo_Chavez", "Jennifer_Garner")


def people_tree(root: Path, people: tuple[str, ...] = PEOPLE, per_person: int = 5) -> Path:
    """A folder-per-person tree of real LFW photos."""
    if not LFW.is_dir():
        pytest.fail(f"shared data not found at {SHARED}: set EDGE_VERIFY_SHARED")
    for name in people:
        (root / name).mkdir(parents=True)
        for src in sorted((LFW / "images").glob(f"{name}_[0-9][0-9][0-9][0-9].jpg"))[:per_person]:
            shutil.copy(src, root / name / src.name)
    return root


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> FaceSet:
    tmp = tmp_path_factory.mktemp("faces")
    return load_folder(people_tree(tmp / "people"), cache_dir=tmp / "cache")


def test_parse_folds() -> None:
    assert parse_folds("1-5") == [1, 2, 3, 4, 5]
    assert parse_folds("6,8-10") == [6, 8, 9, 10]
    for bad in ("0-3", "5-2", "x", "11", ""):
        with pytest.raises(LfwError):
            parse_folds(bad)


def test_lfw_pairs_and_folds() -> None:
    pairs = read_pairs(LFW / "pairs.txt")
    assert len(pairs) == 6000
    assert [sum(p.fold == f for p in pairs) for f in range(1, 11)] == [600] * 10
    assert sum(p.same for p in pairs if p.fold == 3) == 300
    first = pairs[0]
    assert (first.fold, first.name1, first.i1, first.i2, first.same) == (1, "Abel_Pacheco", 1, 4, True)
    folds = lfw_person_folds(pairs)  # raises if a person were in two folds
    assert folds["Abel_Pacheco"] == 1
    assert set(folds.values()) == set(range(1, 11))


def test_folder_crops_are_aligned_faces_and_cached(faces: FaceSet, tmp_path: Path) -> None:
    assert len(faces) == 5 * len(PEOPLE)  # YuNet finds a face in each of these photos
    assert faces.crops.shape[1:] == (112, 112, 3) and faces.crops.dtype == np.uint8
    assert sorted(set(faces.person)) == sorted(f"extra:{p}" for p in PEOPLE)
    # aligned: the crops of one person look alike far more than random noise would
    assert 40 < faces.crops.mean() < 200


def test_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = people_tree(tmp_path / "p", PEOPLE[:2], 2)
    first = load_folder(root, cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").glob("crops-*.npz"))

    def no_detector(*args: object, **kwargs: object) -> None:
        raise AssertionError("the detector ran although every crop is cached")

    monkeypatch.setattr("edge_verify.detect.FaceDetector.__init__", no_detector)
    again = load_folder(root, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(first.crops, again.crops)


def test_pk_batches(faces: FaceSet) -> None:
    sampler = PKSampler(faces, np.arange(len(faces)), P=4, K=3, seed=7)
    x, labels, idx = sampler.batch(0, 0)
    assert x.shape == (12, 112, 112, 3) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 255.0
    assert sorted(np.bincount(labels)) == [3, 3, 3, 3]
    for lab in range(4):  # each label is one person
        assert len({str(faces.person[i]) for i in idx[labels == lab]}) == 1
    x2, _, idx2 = sampler.batch(0, 0)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_array_equal(x, x2)  # same (seed, epoch, step): same batch, augmentation included
    assert not np.array_equal(sampler.batch(0, 1)[2], idx)
    with pytest.raises(DataError, match="fewer than P"):
        PKSampler(faces, np.arange(len(faces)), P=10, K=2)


def test_augment_changes_pixels_reproducibly(faces: FaceSet) -> None:
    crop = faces.crops[0]
    a = Augment()(crop, np.random.default_rng(1))
    b = Augment()(crop, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (112, 112, 3) and np.abs(a - crop).mean() > 1.0
    np.testing.assert_array_equal(NO_AUGMENT(crop, np.random.default_rng(1)), crop.astype(np.float32))
    grey = Augment(flip=0, shift=0, scale=0, rotate=0, brightness=0, contrast=0, blur=0, grey=1.0)(
        crop, np.random.default_rng(0)
    )
    assert np.allclose(grey[..., 0], grey[..., 1]) and np.allclose(grey[..., 1], grey[..., 2])


def test_bundle_round_trip(faces: FaceSet, tmp_path: Path) -> None:
    teacher = np.random.default_rng(0).normal(size=(len(faces), 128)).astype(np.float32)
    with_teacher = dataclasses.replace(faces, teacher=teacher)
    save_bundle(tmp_path / "b.npz", with_teacher)
    back = load_bundle(tmp_path / "b.npz")
    assert back.keys == faces.keys and list(back.person) == list(faces.person)
    assert np.abs(back.crops.astype(int) - faces.crops).mean() < 3.0  # JPEG, quality 92
    assert back.teacher is not None and np.abs(back.teacher - teacher).max() < 1e-2  # float16
