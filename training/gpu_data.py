"""The worker side of the gpu input pipeline (`data.pipeline: gpu`): read files, draw augmentation parameters.

DataLoader workers do only what is cheap on a CPU: read each file (a whole JPEG stays encoded; anything else, a
cut-off or malformed JPEG included, is decoded to RGB with PIL, as the cpu path would) and draw the sample's
augmentation parameters from its sampler seed, so an epoch's order and augmentations do not depend on the number of
workers and survive a resume. Decoding, cropping and the augmentations themselves run on the training device
(gpu_pipeline.py, gpu_augment.py); only `data.hostDecodeShare` of the JPEGs are decoded here, to take load off the
device's decoder when it is the limit.

Parameters follow albumentations 2.0.8, the cpu path: a transform fires when `random() < p`; ColorJitter's factors are
uniform over [max(0, 1 - x), 1 + x] (hue over [-x, x]) and its four steps run in a shuffled order; RandomRotate90
turns k ~ {0, 1, 2, 3} quarter turns once it fires; GaussNoise draws its std uniformly from `stdRange`.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from PIL import UnidentifiedImageError
from torch.utils.data import Dataset, get_worker_info
from torchvision.io import ImageReadMode, decode_jpeg

from modelyard.api.training_job import Augmentation
from modelyard.training.data import Sample, SampleKey, first_readable, read_rgb

# torchvision 0.29 deprecates its image decoders for TorchCodec's; the GPU image's 0.26 does not. Same API in both.
TORCHVISION_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"
JPEG_MAGIC = b"\xff\xd8\xff"  # by content, not by file name: a PNG named .jpg still decodes
CROP_ATTEMPTS = 10  # albumentations' RandomResizedCrop tries ten boxes before its central fallback
CROP_SCALE = (0.08, 1.0)  # albumentations' defaults, which the cpu path uses
CROP_RATIO = (3 / 4, 4 / 3)
# One sample's row: flip, quarter turns, 4 jitter factors, 4 jitter order, noise std, then the crop attempts' draws
# (area, log-ratio, top, left each).
_FIXED = 11
PARAMETER_COUNT = _FIXED + CROP_ATTEMPTS * 4


def factor_range(amount: float) -> tuple[float, float]:
    """ColorJitter's range of a brightness, contrast or saturation amount (albumentations clips the low end at 0)."""
    return max(0.0, 1.0 - amount), 1.0 + amount


def draw_parameters(seed: int, augmentation: Augmentation) -> npt.NDArray[np.float64]:
    """The augmentation of one sample, from its seed alone. Every value is always drawn, so that changing one
    probability does not reshuffle the others. Transforms that do not fire get identity values."""
    rng = np.random.default_rng(seed)
    coins = rng.random(4)
    quarter_turns = int(rng.integers(0, 4))
    uniforms = rng.random(4)
    order = rng.permutation(4)
    noise_uniform = rng.random()
    crop = rng.random((CROP_ATTEMPTS, 4))

    jitter, noise = augmentation.color_jitter, augmentation.gauss_noise
    factors = np.array([1.0, 1.0, 1.0, 0.0])
    if coins[2] < jitter.p:
        for index, amount in enumerate((jitter.brightness, jitter.contrast, jitter.saturation)):
            low, high = factor_range(amount)
            factors[index] = low + (high - low) * uniforms[index]
        factors[3] = -jitter.hue + 2 * jitter.hue * uniforms[3]
    low, high = noise.std_range
    values = np.empty(PARAMETER_COUNT)
    values[0] = float(coins[0] < augmentation.horizontal_flip)
    values[1] = quarter_turns if coins[1] < augmentation.random_rotate90 else 0
    values[2:6] = factors
    values[6:10] = order
    values[10] = low + (high - low) * noise_uniform if coins[3] < noise.p else 0.0
    values[_FIXED:] = crop.reshape(-1)
    return values


class AugmentParams(NamedTuple):
    """A batch's parameters, one row per image (collated on the CPU; gpu_augment moves what it needs)."""

    flip: torch.Tensor  # bool (B,)
    quarter_turns: torch.Tensor  # int64 (B,), counterclockwise, as np.rot90
    jitter: torch.Tensor  # float32 (B, 4): brightness, contrast, saturation factors, hue shift (turns)
    jitter_order: torch.Tensor  # int64 (B, 4): the order the four jitter steps run in
    noise_std: torch.Tensor  # float32 (B,): fraction of the pixel range; 0 where GaussNoise does not fire
    crop: torch.Tensor  # float64 (B, CROP_ATTEMPTS, 4): uniform draws for RandomResizedCrop's box

    @classmethod
    def stack(cls, rows: npt.NDArray[np.float64]) -> AugmentParams:
        return cls(
            flip=torch.from_numpy(rows[:, 0] > 0.5),
            quarter_turns=torch.from_numpy(rows[:, 1].astype(np.int64)),
            jitter=torch.from_numpy(rows[:, 2:6].astype(np.float32)),
            jitter_order=torch.from_numpy(rows[:, 6:10].astype(np.int64)),
            noise_std=torch.from_numpy(rows[:, 10].astype(np.float32)),
            crop=torch.from_numpy(np.ascontiguousarray(rows[:, _FIXED:].reshape(-1, CROP_ATTEMPTS, 4))),
        )


def crop_boxes(
    heights: npt.NDArray[np.int64], widths: npt.NDArray[np.int64], draws: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """RandomResizedCrop's boxes (x0, y0, x1, y1) for images of these sizes, vectorised over the batch: the first of
    ten attempts whose box fits, else albumentations' central fallback (`get_params_dependent_on_data`)."""
    heights, widths = heights.astype(np.float64), widths.astype(np.float64)
    area = (heights * widths)[:, None]
    target = CROP_SCALE[0] * area + (CROP_SCALE[1] * area - CROP_SCALE[0] * area) * draws[..., 0]
    log_low, log_high = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    aspect = np.exp(log_low + (log_high - log_low) * draws[..., 1])
    crop_w, crop_h = np.round(np.sqrt(target * aspect)), np.round(np.sqrt(target / aspect))  # round half to even
    fits = (crop_w > 0) & (crop_w <= widths[:, None]) & (crop_h > 0) & (crop_h <= heights[:, None])
    first = fits.argmax(axis=1)
    rows = np.arange(len(heights))
    crop_w, crop_h = crop_w[rows, first], crop_h[rows, first]
    y0 = np.floor((heights - crop_h + 1) * draws[rows, first, 2])
    x0 = np.floor((widths - crop_w + 1) * draws[rows, first, 3])

    # Fallback: the whole image, or its central part at the nearest allowed aspect ratio.
    ratio = widths / heights
    too_tall, too_wide = ratio < CROP_RATIO[0], ratio > CROP_RATIO[1]
    fall_w = np.where(too_wide, np.round(heights * CROP_RATIO[1]), widths)
    fall_h = np.where(too_tall, np.round(widths / CROP_RATIO[0]), heights)
    found = fits.any(axis=1)
    crop_w, crop_h = np.where(found, crop_w, fall_w), np.where(found, crop_h, fall_h)
    y0 = np.where(found, y0, (heights - crop_h) // 2)
    x0 = np.where(found, x0, (widths - crop_w) // 2)
    return np.stack([x0, y0, x0 + crop_w, y0 + crop_h], axis=1).astype(np.int64)


def pil_rgb(data: bytes) -> torch.Tensor:
    """Decode with the cpu path's `read_rgb`, into an HWC uint8 tensor (decoded pixels travel HWC, as decoders lay
    them out: turning them CHW is left to the device, as a view)."""
    try:
        pixels = read_rgb(io.BytesIO(data))
    except UnidentifiedImageError:  # its own message names a BytesIO object; the caller names the file
        raise UnidentifiedImageError("cannot identify the image format") from None
    return torch.from_numpy(np.require(pixels, requirements="W"))  # PIL's array is read-only: a copy then


def host_rgb(data: bytes) -> torch.Tensor:
    """Decode on the host, HWC uint8. A whole JPEG goes to libjpeg-turbo through torchvision: PIL's pixels, to the bit
    on photo-like JPEGs, without PIL's array export and transpose (bench/RESULTS.md, 2026-12-05, night). Anything
    else, or a JPEG libjpeg-turbo refuses, goes to PIL, which has the last word on what is unreadable."""
    if whole_jpeg(data):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TORCHVISION_DEPRECATION, category=DeprecationWarning)
            try:
                encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                pixels: torch.Tensor = decode_jpeg(encoded, mode=ImageReadMode.RGB)
                return pixels.permute(1, 2, 0)  # its CHW is a view of HWC: no copy
            except RuntimeError:
                pass
    return pil_rgb(data)


# What may follow 0xFF from a JPEG's first scan to its end: a stuffed zero or fill byte inside a scan, a restart
# marker; between the scans of a progressive or multi-scan file, tables, a restart interval, a line count, comments,
# application data and the next scan. Any other marker there is one a decoder must refuse.
_SCAN_MARKERS = np.zeros(256, dtype=bool)
_SCAN_MARKERS[[0x00, 0xFF, *range(0xD0, 0xD8), 0xC4, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)]] = True
# Markers without a length after them.
_STANDALONE = frozenset([0x01, 0xD8, *range(0xD0, 0xD8)])


def _first_scan(data: bytes) -> int:
    """Where the main image's first scan starts, found by walking the segments from the start, so that a thumbnail's
    markers (inside an APP1 segment) are skipped with it; -1 when the segments lead nowhere."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return -1
        marker = data[position + 1]
        if marker == 0xDA:
            return position
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker in _STANDALONE:
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return -1


def whole_jpeg(data: bytes) -> bool:
    """Whether the bytes are a JPEG (by content) that a JPEG decoder may be given, which must then fail where PIL (the
    cpu path's judge) would: its segments lead to a scan, the scans end with the end-of-image marker (a cut-off file's
    do not, and nvJPEG does not always notice), and no marker among the scans is one a decoder must refuse (nvJPEG
    returned pixels for a reserved marker inside the scan data, which PIL and libjpeg-turbo refuse: bench/RESULTS.md,
    2026-12-02). 0xFF inside scan data is always stuffed, so the check cannot mistake data for a marker; the rare
    false alarm, a 0xFF inside a table between scans, only costs a decode with PIL in the worker."""
    if not data.startswith(JPEG_MAGIC):
        return False
    first = _first_scan(data)
    end = data.find(b"\xff\xd9", first) if first >= 0 else -1
    if end < 0:
        return False
    scans = np.frombuffer(data, dtype=np.uint8, count=end - first, offset=first)
    return bool(_SCAN_MARKERS[scans[1:][scans[:-1] == 0xFF]].all())


class EncodedItem(NamedTuple):
    data: torch.Tensor  # 1-D uint8: a JPEG's bytes; or 3-D HWC uint8: pixels decoded in the worker
    path: str
    label: int
    seed: int | None
    params: npt.NDArray[np.float64] | None
    bad: tuple[tuple[str, str], ...]  # unreadable files skipped to produce this item


# The golden ratio's fractional part: index * it mod 1 spreads any share of indices evenly over the dataset.
_SPREAD = (math.sqrt(5) - 1) / 2


def decoded_on_host(index: int, share: float) -> bool:
    """Whether the workers decode sample `index`'s JPEG themselves (`data.hostDecodeShare`): by index alone, so the
    choice is the same whatever the number of workers, and about `share` of any batch."""
    return (index * _SPREAD) % 1.0 < share


class EncodedDataset(Dataset[EncodedItem]):
    """Items keyed like ImageDataset's, (index, seed); parameters are drawn only for training (`augmentation`).
    `host_decode_share`: the share of JPEGs decoded here (`host_rgb`) rather than on the device."""

    def __init__(
        self, samples: Sequence[Sample], augmentation: Augmentation | None, host_decode_share: float = 0.0
    ) -> None:
        self.samples = list(samples)
        self.augmentation = augmentation
        self.host_decode_share = host_decode_share

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey) -> EncodedItem:
        index, seed = key
        read = _decoded if decoded_on_host(index, self.host_decode_share) else _encoded
        sample, data, bad = first_readable(self.samples, index, read)
        params = None
        if self.augmentation is not None and seed is not None:
            params = draw_parameters(seed, self.augmentation)
        return EncodedItem(data, str(sample.path), sample.label, seed, params, bad)


def _encoded(path: Path) -> torch.Tensor:
    """A whole JPEG's bytes (1-D uint8) for the device's decoder; anything else decoded here, HWC uint8. Raises what
    PIL raises for a file it cannot read (a JPEG that is not `whole_jpeg` included)."""
    raw = path.read_bytes()
    if whole_jpeg(raw):
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return pil_rgb(raw)


def _decoded(path: Path) -> torch.Tensor:
    """Any image decoded here (`host_rgb`), HWC uint8; raises what PIL raises for a file it cannot read."""
    return host_rgb(path.read_bytes())


class EncodedBatch(NamedTuple):
    """One flat buffer per batch instead of a tensor per image: each tensor a worker hands over costs a shared-memory
    segment and a file descriptor."""

    buffer: torch.Tensor  # uint8, every item's data back to back
    spans: torch.Tensor  # int64 (B, 2): start and end of each item in `buffer`
    shapes: torch.Tensor  # int64 (B, 3): HWC of pixels decoded in the worker; zeros for a JPEG
    paths: list[str]
    labels: torch.Tensor
    params: AugmentParams | None
    noise_seed: int  # seeds the batch's noise field: from the batch's sample seeds, so workers do not matter
    bad: list[tuple[str, str]]

    def items(self) -> list[torch.Tensor]:
        """Each item's data: views into `buffer` (pinned with it), JPEG bytes 1-D, decoded pixels HWC."""
        return [
            self.buffer[start:end].view(shape) if shape[0] else self.buffer[start:end]
            for (start, end), shape in zip(self.spans.tolist(), self.shapes.tolist(), strict=True)
        ]


def _batch_buffer(size: int) -> torch.Tensor:
    """A batch's uint8 buffer; in a DataLoader worker, in shared memory from the start, as default_collate does: else
    handing it over copies it there, 75 MiB a batch of 256 pixel images."""
    if get_worker_info() is None:
        return torch.empty(size, dtype=torch.uint8)
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(size))  # type: ignore[no-untyped-call]


def collate_encoded(items: Sequence[EncodedItem]) -> EncodedBatch:
    sizes = [item.data.numel() for item in items]
    ends = np.cumsum(sizes)
    buffer = _batch_buffer(int(ends[-1]) if len(items) else 0)
    torch.cat([item.data.reshape(-1) for item in items], out=buffer)
    spans = torch.from_numpy(np.stack([ends - np.asarray(sizes), ends], axis=1).astype(np.int64))
    shapes = torch.tensor([list(item.data.shape) if item.data.ndim == 3 else [0, 0, 0] for item in items])
    rows = [item.params for item in items]
    params = AugmentParams.stack(np.stack(rows)) if all(row is not None for row in rows) else None  # type: ignore[arg-type]
    seeds = [item.seed for item in items if item.seed is not None]
    noise_seed = int(np.random.SeedSequence(seeds).generate_state(1, dtype=np.uint64)[0] >> 1) if seeds else 0
    return EncodedBatch(
        buffer=buffer,
        spans=spans,
        shapes=shapes,
        paths=[item.path for item in items],
        labels=torch.tensor([item.label for item in items], dtype=torch.long),
        params=params,
        noise_seed=noise_seed,
        bad=[entry for item in items for entry in item.bad],
    )
