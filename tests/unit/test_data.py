"""Datasets in the class-folder layout: scanning and its errors, the split, samplers, bad images."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelyard.api.training_job import DataSpec, Normalization
from modelyard.training.data import (
    BadImageTracker,
    EpochSampler,
    ImageDataset,
    Sample,
    ShardSampler,
    balanced_sample_weights,
    collate,
    dataset_digest,
    load_split,
    read_rgb,
    scan_image_folder,
    stratified_split,
)
from modelyard.training.errors import DatasetError
from modelyard.training.transforms import eval_transform

pytestmark = pytest.mark.unit


def _image(path: Path, value: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (6, 6), value if mode == "L" else (value, value, value)).save(path)
    return path


def _folder(root: Path, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            _image(root / name / f"{index}.png", index)
    return root


def test_scans_class_folders_in_sorted_order(tmp_path: Path) -> None:
    root = _folder(tmp_path / "set", {"tulip": 2, "daisy": 3, "rose": 1})
    (root / "daisy" / "notes.txt").write_text("not an image")
    (root / "daisy" / ".hidden.png").write_bytes(b"")
    _image(root / "rose" / "nested" / "deep.JPG")
    folder = scan_image_folder(root, 3)
    assert folder.class_names == ["daisy", "rose", "tulip"]
    assert Counter(sample.label for sample in folder.samples) == {0: 3, 1: 2, 2: 2}


def test_a_missing_folder_an_empty_one_and_one_without_images_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_image_folder(tmp_path / "absent", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no class folders"):
        scan_image_folder(tmp_path / "empty", 2)
    (tmp_path / "blank" / "a").mkdir(parents=True)
    (tmp_path / "blank" / "b").mkdir()
    with pytest.raises(DatasetError, match="has no images"):
        scan_image_folder(tmp_path / "blank", 2)


def test_an_empty_class_folder_is_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "set", {"cat": 2, "dog": 0, "eel": 1})
    with pytest.raises(DatasetError, match=r"class folder\(s\) without images in .*set: dog"):
        scan_image_folder(root, 3)


def test_a_class_count_other_than_num_classes_is_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path / "set", {"cat": 1, "dog": 1, "eel": 1})
    with pytest.raises(DatasetError, match=r"has 3 class folders \(cat, dog, eel\) but model.numClasses is 2"):
        scan_image_folder(root, 2)


def test_the_split_is_stratified_disjoint_and_fixed_by_the_seed() -> None:
    labels = [0] * 50 + [1] * 10 + [2] * 2
    kept, held_out = stratified_split(labels, 0.2, seed=1)
    assert sorted(kept + held_out) == list(range(len(labels)))
    assert Counter(labels[index] for index in held_out) == {0: 10, 1: 2, 2: 1}  # at least one of each
    assert stratified_split(labels, 0.2, seed=1) == (kept, held_out)
    assert stratified_split(labels, 0.2, seed=2) != (kept, held_out)


def test_a_separate_validation_folder_must_have_the_same_classes(tmp_path: Path) -> None:
    _folder(tmp_path / "train", {"a": 2, "b": 2})
    _folder(tmp_path / "val", {"a": 1, "c": 1})
    spec = DataSpec(path=str(tmp_path / "train"), val_path=str(tmp_path / "val"))
    with pytest.raises(DatasetError, match=r"differ between data.path \(a, b\) and data.valPath \(a, c\)"):
        load_split(spec, 2, seed=0)
    _folder(tmp_path / "val2", {"a": 1, "b": 1})
    split = load_split(DataSpec(path=str(tmp_path / "train"), val_path=str(tmp_path / "val2")), 2, seed=0)
    assert (len(split.train), len(split.val)) == (4, 2)


def test_the_digest_changes_when_an_image_is_added_or_rewritten(tmp_path: Path) -> None:
    root = _folder(tmp_path / "set", {"a": 2, "b": 2})
    first = dataset_digest(scan_image_folder(root, 2).samples, root)
    assert first == dataset_digest(scan_image_folder(root, 2).samples, root)
    (root / "a" / "0.png").write_bytes((root / "a" / "0.png").read_bytes() + b"\0")
    second = dataset_digest(scan_image_folder(root, 2).samples, root)
    _image(root / "b" / "9.png")
    third = dataset_digest(scan_image_folder(root, 2).samples, root)
    assert len({first, second, third}) == 3


def test_grey_and_palette_images_are_read_as_rgb(tmp_path: Path) -> None:
    grey = read_rgb(_image(tmp_path / "g.png", 200, mode="L"))
    assert grey.shape == (6, 6, 3)
    assert grey.dtype == np.uint8
    assert (grey == 200).all()


def test_an_unreadable_image_is_replaced_by_the_next_and_reported(tmp_path: Path) -> None:
    good = [_image(tmp_path / f"{index}.png", 10 * index) for index in range(3)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    samples = [Sample(good[0], 0), Sample(broken, 1), Sample(good[1], 1), Sample(good[2], 0)]
    dataset = ImageDataset(samples, eval_transform(4, Normalization()))
    item = dataset[(1, None)]
    assert item.label == 1  # the image at index 2 stood in
    assert [path for path, _ in item.bad] == [str(broken)]
    assert item.bad[0][1].startswith("OSError: ")  # what PIL says about a cut-off PNG
    batch = collate([dataset[(0, None)], item])
    assert batch.images.shape == (2, 3, 4, 4)
    assert batch.labels.tolist() == [0, 1]
    assert batch.bad == list(item.bad)


def test_a_dataset_of_only_unreadable_images_fails_naming_them(tmp_path: Path) -> None:
    paths = [tmp_path / f"{index}.png" for index in range(2)]
    for path in paths:
        path.write_bytes(b"nope")
    dataset = ImageDataset([Sample(path, 0) for path in paths], eval_transform(4, Normalization()))
    with pytest.raises(DatasetError, match=r"no readable image among 2 .*0.png"):
        dataset[(0, None)]


def test_bad_images_are_counted_once_and_stop_the_run_past_the_allowed_share() -> None:
    reported: list[str] = []
    tracker = BadImageTracker(200, 0.01, lambda path, error: reported.append(path))
    tracker.record([("/d/a.png", "broken"), ("/d/b.png", "broken")])
    tracker.record([("/d/a.png", "broken")])  # met again next epoch: still one image
    assert reported == ["/d/a.png", "/d/b.png"]
    with pytest.raises(DatasetError, match=r"3 unreadable images, more than .*0.01 of 200 allows \(2\)") as raised:
        tracker.record([("/d/c.png", "truncated")])
    assert "/d/a.png: broken" in str(raised.value)
    assert "/d/c.png: truncated" in str(raised.value)


def test_the_epoch_order_depends_only_on_seed_and_epoch() -> None:
    sampler = EpochSampler(10, seed=4)
    sampler.set_epoch(1)
    first = list(sampler)
    assert list(sampler) == first
    assert sorted(index for index, _ in first) == list(range(10))
    sampler.set_epoch(2)
    assert list(sampler) != first
    again = EpochSampler(10, seed=4)
    again.set_epoch(1)
    assert list(again) == first


def test_ranks_share_an_epoch_without_overlap_and_with_the_same_augmentation_seeds() -> None:
    whole = EpochSampler(11, seed=0)
    ranks = [EpochSampler(11, seed=0, rank=rank, world_size=2) for rank in range(2)]
    for sampler in (whole, *ranks):
        sampler.set_epoch(3)
    keys = [list(sampler) for sampler in ranks]
    assert len(keys[0]) == len(keys[1]) == 6  # padded to equal length, so the ranks step together
    assert set(keys[0][:5]).isdisjoint(keys[1][:5])
    merged = [key for pair in zip(*keys, strict=True) for key in pair]
    assert merged[:11] == list(whole)  # each sample keeps its augmentation seed whatever the world size


def test_evaluation_shards_cover_every_sample_once() -> None:
    shards = [list(ShardSampler(7, rank, 3)) for rank in range(3)]
    assert sorted(index for shard in shards for index, _ in shard) == list(range(7))
    assert all(seed is None for shard in shards for _, seed in shard)


def test_the_weighted_sampler_draws_classes_equally_often() -> None:
    labels = [0] * 90 + [1] * 10
    weights = balanced_sample_weights(labels, 2)
    assert weights[0] == pytest.approx(100 / (2 * 90))
    assert weights[-1] == pytest.approx(100 / (2 * 10))
    sampler = EpochSampler(len(labels), seed=0, weights=weights)
    drawn = Counter()
    for epoch in range(20):
        sampler.set_epoch(epoch)
        drawn.update(labels[index] for index, _ in sampler)
    # 2,000 draws at p=0.5: a standard deviation of about 22, so 900..1100 is a margin of over 4 of them.
    assert 900 <= drawn[1] <= 1100
