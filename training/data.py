"""Datasets in the class-folder layout: scanning, a deterministic split, bad images, samplers, loaders.

One folder per class under `data.path`; class names are the folder names in sorted order. An image that cannot be
decoded is skipped (its slot in the batch is filled by the next readable image, so batch shapes and the processes of a
distributed run stay in step), counted and logged with its path; past `maxBadImageFraction` the run stops.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from modelyard.api.training_job import DataSpec
from modelyard.training.config import local_path
from modelyard.training.errors import DatasetError
from modelyard.training.transforms import RgbImage

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
# How far a bad image's slot looks for a readable replacement before the batch itself fails.
REPLACEMENT_ATTEMPTS = 64


class Sample(NamedTuple):
    path: Path
    label: int


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    class_names: list[str]
    samples: list[Sample]


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()
    )


def scan_image_folder(root: Path, num_classes: int) -> ImageFolder:
    """The class folders under `root` and their images; DatasetError if it is missing, empty, or the number of class
    folders is not `num_classes`."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    class_dirs = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"dataset folder {root} has no class folders (expected one folder per class)")
    files = {class_dir.name: _image_files(class_dir) for class_dir in class_dirs}
    if not any(files.values()):
        raise DatasetError(f"dataset folder {root} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise DatasetError(f"class folder(s) without images in {root}: {', '.join(empty)}")
    if len(class_dirs) != num_classes:
        names = ", ".join(path.name for path in class_dirs)
        raise DatasetError(
            f"{root} has {len(class_dirs)} class folders ({names}) but model.numClasses is {num_classes}"
        )
    class_names = [path.name for path in class_dirs]
    samples = [Sample(path, label) for label, name in enumerate(class_names) for path in files[name]]
    return ImageFolder(root, class_names, samples)


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices to keep and to hold out: `fraction` of every class, chosen by `seed` (the same seed, the same split).
    Every class with two or more members keeps at least one on each side."""
    rng = np.random.default_rng(seed)
    label_array = np.asarray(labels, dtype=np.int64)
    kept: list[int] = []
    held_out: list[int] = []
    for label in np.unique(label_array):
        members = np.flatnonzero(label_array == label)
        order = members[rng.permutation(len(members))]
        count = min(max(round(len(members) * fraction), 1), len(members) - 1) if len(members) > 1 else 0
        held_out.extend(int(index) for index in order[:count])
        kept.extend(int(index) for index in order[count:])
    return sorted(kept), sorted(held_out)


def dataset_digest(samples: Sequence[Sample], root: Path) -> str:
    """sha256 over each image's class, path relative to the root and size: cheap on a big volume, and it changes
    when an image is added, removed, moved or rewritten with another size."""
    digest = hashlib.sha256()
    for sample in sorted(samples, key=lambda item: str(item.path)):
        relative = sample.path.relative_to(root) if sample.path.is_relative_to(root) else sample.path
        digest.update(f"{sample.label}\t{relative.as_posix()}\t{sample.path.stat().st_size}\n".encode())
    return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True)
class DataSplit:
    class_names: list[str]
    train: list[Sample]
    val: list[Sample]
    digest: str


def load_split(data: DataSpec, num_classes: int, seed: int) -> DataSplit:
    """Train and validation samples: `valPath` when set, else a stratified split of `path` by `seed`."""
    train_folder = scan_image_folder(local_path(data.path), num_classes)
    if data.val_path:
        val_folder = scan_image_folder(local_path(data.val_path), num_classes)
        if val_folder.class_names != train_folder.class_names:
            raise DatasetError(
                f"class folders differ between data.path ({', '.join(train_folder.class_names)}) and "
                f"data.valPath ({', '.join(val_folder.class_names)})"
            )
        train, val = train_folder.samples, val_folder.samples
        digest = dataset_digest(train + val, train_folder.root.parent)
    else:
        samples = train_folder.samples
        kept, held_out = stratified_split([sample.label for sample in samples], data.validation_split, seed)
        train, val = [samples[index] for index in kept], [samples[index] for index in held_out]
        digest = dataset_digest(train_folder.samples, train_folder.root)
    return DataSplit(train_folder.class_names, train, val, digest)


def read_rgb(source: Path | BinaryIO) -> RgbImage:
    """Decode an image file (a path, or its bytes as a file object) into an RGB uint8 array (grey, palette and alpha
    images are converted)."""
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


SampleKey = tuple[int, int | None]  # (index, augmentation seed); None for deterministic evaluation
SampleTransform = Callable[..., torch.Tensor]


BadImages = tuple[tuple[str, str], ...]  # (path, error) of the unreadable files skipped
Read = TypeVar("Read")


class Item(NamedTuple):
    image: torch.Tensor
    label: int
    bad: BadImages  # skipped to produce this item


def first_readable(
    samples: Sequence[Sample], index: int, read: Callable[[Path], Read]
) -> tuple[Sample, Read, BadImages]:
    """The sample at `index`, or when it cannot be read the next one that can (at most REPLACEMENT_ATTEMPTS in a row),
    with what `read` made of it and the unreadable files passed over; DatasetError naming them when none is readable."""
    bad: list[tuple[str, str]] = []
    for attempt in range(min(REPLACEMENT_ATTEMPTS, len(samples))):
        sample = samples[(index + attempt) % len(samples)]
        try:
            value = read(sample.path)
        except (OSError, ValueError, SyntaxError) as error:  # what PIL raises for truncated or foreign files
            bad.append((str(sample.path), f"{type(error).__name__}: {error}"))
            continue
        return sample, value, tuple(bad)
    raise DatasetError(
        f"no readable image among {len(bad)} in a row starting at {samples[index].path}: "
        + "; ".join(f"{path} ({error})" for path, error in bad[:5])
    )


class ImageDataset(Dataset[Item]):
    def __init__(self, samples: Sequence[Sample], transform: SampleTransform) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey) -> Item:
        index, seed = key
        sample, image, bad = first_readable(self.samples, index, read_rgb)
        return Item(self.transform(image, seed=seed), sample.label, bad)


class Batch(NamedTuple):
    images: torch.Tensor
    labels: torch.Tensor
    bad: list[tuple[str, str]]


def collate(items: Sequence[Item]) -> Batch:
    images = torch.stack([item.image for item in items])
    labels = torch.tensor([item.label for item in items], dtype=torch.long)
    return Batch(images, labels, [entry for item in items for entry in item.bad])


def balanced_sample_weights(labels: Sequence[int], num_classes: int) -> npt.NDArray[np.float64]:
    """Per-sample weights that draw every class equally often: scikit-learn's "balanced" class weights,
    n_samples / (n_classes * count[class]), indexed by each sample's label."""
    label_array = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(label_array, minlength=num_classes).astype(np.float64)
    present = counts > 0
    class_weights = np.zeros(num_classes)
    class_weights[present] = len(label_array) / (present.sum() * counts[present])
    weights: npt.NDArray[np.float64] = class_weights[label_array]
    return weights


@dataclass
class EpochSampler(Sampler[SampleKey]):
    """The training order of one epoch: a permutation (or a weighted draw with replacement) seeded by (seed, epoch),
    padded to a multiple of the world size and dealt out by rank, each position with its own augmentation seed.

    The order depends only on (seed, epoch), so a resumed run sees exactly the epochs an uninterrupted one would."""

    size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    weights: npt.NDArray[np.float64] | None = None
    epoch: int = field(default=0, init=False)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size)

    def __iter__(self) -> Iterator[SampleKey]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.weights is not None:
            order = rng.choice(self.size, size=self.size, replace=True, p=self.weights / self.weights.sum())
        else:
            order = rng.permutation(self.size)
        padded = len(self) * self.world_size
        order = np.resize(order, padded)  # repeats the start, like DistributedSampler
        seeds = rng.integers(0, 2**62, size=padded)
        for position in range(self.rank, padded, self.world_size):
            yield int(order[position]), int(seeds[position])


@dataclass
class ShardSampler(Sampler[SampleKey]):
    """Evaluation: every sample exactly once over all ranks (no padding: metrics are summed across ranks)."""

    size: int
    rank: int = 0
    world_size: int = 1

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self) -> Iterator[SampleKey]:
        for index in range(self.rank, self.size, self.world_size):
            yield index, None


def make_loader(
    dataset: Dataset[Any],
    sampler: Sampler[SampleKey],
    batch_size: int,
    workers: int,
    *,
    train: bool,
    pin: bool,
    collate_fn: Callable[[Sequence[Any]], Any] = collate,
) -> DataLoader[Any]:
    # A last partial training batch is dropped (it is reshuffled next epoch): a batch of one breaks BatchNorm.
    drop_last = train and len(sampler) > batch_size  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=pin,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # Its own generator for the workers' base seed: drawn from the global one (DataLoader's default), it would
        # shift the dropout masks after a resume, since persistent workers draw it in a process's first epoch only.
        # (Augmentations do not use it: they are seeded per sample by the sampler.)
        generator=torch.Generator().manual_seed(0),
    )


class BadImageTracker:
    """Counts the distinct unreadable images met so far and stops the run once they exceed the allowed share."""

    def __init__(self, total_images: int, max_fraction: float, on_new: Callable[[str, str], None]) -> None:
        self.total_images = total_images
        self.max_fraction = max_fraction
        self.allowed = math.floor(total_images * max_fraction)
        self.seen: dict[str, str] = {}
        self._on_new = on_new

    def record(self, bad: Sequence[tuple[str, str]]) -> None:
        for path, error in bad:
            if path not in self.seen:
                self.seen[path] = error
                self._on_new(path, error)
        if len(self.seen) > self.allowed:
            listed = "\n".join(f"  {path}: {error}" for path, error in list(self.seen.items())[:20])
            more = f"\n  ... and {len(self.seen) - 20} more" if len(self.seen) > 20 else ""
            raise DatasetError(
                f"{len(self.seen)} unreadable images, more than data.maxBadImageFraction={self.max_fraction} of "
                f"{self.total_images} allows ({self.allowed}); fix or remove them:\n{listed}{more}"
            )
