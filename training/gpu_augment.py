"""Device-side image operations of the gpu input pipeline, batched with per-image parameters.

Each mirrors its albumentations 2.0.8 counterpart in the cpu path (transforms.py) on float pixels in [0, 1], clipped
where albumentations clips uint8. Per-image choices are applied with `torch.where`, so everything after the crop is
one function of tensors with no decision on their values (`pixel_steps`): the same kernels for every batch, and one
graph for torch.compile, which fuses its hundred-odd element-wise passes over the batch into a few kernels (measured
on an H200: 11 ms of GPU time per batch of 256 eagerly, time the training step then waits for).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional

from modelyard.api.training_job import Augmentation, Normalization
from modelyard.training.gpu_data import AugmentParams, crop_boxes

# cv2.COLOR_RGB2GRAY's weights, which albumentations' contrast and saturation use.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


@functools.lru_cache(maxsize=64)
def constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """A small constant on the device, copied there once: `torch.tensor(..., device=cuda)` in every batch would make
    the host wait for the device each time (a blocking copy synchronises the stream)."""
    return torch.tensor(values, dtype=torch.float32).to(device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host → device without making the host wait for the device (a pageable copy would synchronise)."""
    if device.type != "cuda":
        return tensor.to(device)
    return (tensor if tensor.is_pinned() else tensor.pin_memory()).to(device, non_blocking=True)


def resample(images: Sequence[torch.Tensor], boxes: npt.NDArray[np.int64], size: int) -> torch.Tensor:
    """Crop each CHW uint8 image to its box (x0, y0, x1, y1) and resize it to size x size: bilinear as cv2's
    INTER_LINEAR (pixel centres, align_corners=False, no antialiasing, edge pixels repeated at the crop's border).
    Returns float (B, 3, size, size) in [0, 1]. The sampling grid is built once for the batch; images of one shape
    share a grid_sample, so a batch of mixed sizes costs two or three kernels per shape."""
    device = images[0].device
    box = to_device(torch.from_numpy(boxes).float(), device)
    widths_heights = [[image.shape[2], image.shape[1]] for image in images]
    extent = to_device(torch.tensor(widths_heights, dtype=torch.float32), device)
    steps = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    # Source coordinates of the output pixels' centres, clamped to the box as cv2 clamps to the cropped image.
    xs = box[:, :1] + steps * ((box[:, 2:3] - box[:, :1]) / size) - 0.5
    ys = box[:, 1:2] + steps * ((box[:, 3:4] - box[:, 1:2]) / size) - 0.5
    xs = torch.minimum(torch.maximum(xs, box[:, :1]), box[:, 2:3] - 1)
    ys = torch.minimum(torch.maximum(ys, box[:, 1:2]), box[:, 3:4] - 1)
    grid = torch.stack(  # grid_sample's [-1, 1] coordinates (align_corners=False: -1 is the first pixel's edge)
        [
            ((2 * xs + 1) / extent[:, :1] - 1)[:, None, :].expand(-1, size, -1),
            ((2 * ys + 1) / extent[:, 1:] - 1)[:, :, None].expand(-1, -1, size),
        ],
        dim=-1,
    )

    def sample(pixels: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        pixels = pixels.float()
        return functional.grid_sample(pixels, where, mode="bilinear", padding_mode="border", align_corners=False)

    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(index)
    if len(groups) == 1:
        return sample(torch.stack(list(images)), grid).div_(255.0)
    results, order = [], []
    for members in groups.values():
        if len(members) == 1:
            index = members[0]
            results.append(sample(images[index].unsqueeze(0), grid[index : index + 1]))
        else:
            chosen = grid.index_select(0, to_device(torch.tensor(members), device))
            results.append(sample(torch.stack([images[index] for index in members]), chosen))
        order += members
    back = to_device(torch.from_numpy(np.argsort(np.asarray(order))), device)
    return torch.cat(results).index_select(0, back).div_(255.0)


def full_boxes(images: Sequence[torch.Tensor]) -> npt.NDArray[np.int64]:
    return np.array([[0, 0, image.shape[2], image.shape[1]] for image in images], dtype=np.int64).reshape(-1, 4)


def _per_image(mask: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, 1, 1, 1)


def horizontal_flip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return torch.where(_per_image(flip), images.flip(-1), images)


def rotate90(images: torch.Tensor, quarter_turns: torch.Tensor) -> torch.Tensor:
    """np.rot90(image, k) per image (counterclockwise) on square images."""
    for turns in (1, 2, 3):
        images = torch.where(_per_image(quarter_turns == turns), images.rot90(turns, dims=(-2, -1)), images)
    return images


def gray(images: torch.Tensor) -> torch.Tensor:
    # Python constants, not a cached weights tensor: torch.compile traces no cache (this runs inside pixel_steps).
    red, green, blue = GRAY_WEIGHTS
    return images[:, 0:1] * red + images[:, 1:2] * green + images[:, 2:3] * blue


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * _per_image(factor)).clamp_(0.0, 1.0)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean grey level (albumentations: the mean of cv2's grey image)."""
    mean = gray(images).mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
    factor = _per_image(factor)
    return (images * factor + mean * (1 - factor)).clamp_(0.0, 1.0)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = _per_image(factor)
    return (images * factor + gray(images) * (1 - factor)).clamp_(0.0, 1.0)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by `shift` turns in HSV, saturation and value kept (albumentations: shift * 360 degrees)."""
    red, green, blue = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    value = images.amax(dim=1, keepdim=True)
    chroma = value - images.amin(dim=1, keepdim=True)
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    sextant = torch.where(  # the hue in sixths of a turn, as cv2.COLOR_RGB2HSV computes it
        value == red,
        (green - blue) / safe,
        torch.where(value == green, 2.0 + (blue - red) / safe, 4.0 + (red - green) / safe),
    )
    sextant = torch.where(chroma > 0, sextant, torch.zeros_like(sextant)) + 6.0 * shift.view(-1, 1, 1, 1)
    # HSV → RGB without branches: channel n is V - C * clamp(min(k, 4 - k), 0, 1), k = (n + hue) mod 6.
    k = torch.remainder(torch.cat([sextant + 5.0, sextant + 3.0, sextant + 1.0], dim=1), 6.0)
    return value - chroma * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)


ALL_STEPS = (BRIGHTNESS, CONTRAST, SATURATION, HUE)
_ADJUST = {BRIGHTNESS: adjust_brightness, CONTRAST: adjust_contrast, SATURATION: adjust_saturation, HUE: adjust_hue}


def jitter_round(
    images: torch.Tensor, step: torch.Tensor, factor: torch.Tensor, active: torch.Tensor, steps: Sequence[int]
) -> torch.Tensor:
    """One round of ColorJitter: each image runs its own step (`step`, with its `factor`) where `active`, else stays
    as it was. Each of `steps` is computed for the whole batch and each image takes its own: fused, one pass."""
    chosen = images
    for kind in steps:
        chosen = torch.where(_per_image(step == kind), _ADJUST[kind](images, factor), chosen)
    return torch.where(_per_image(active), chosen, images)


def color_jitter(
    images: torch.Tensor, jitter: torch.Tensor, order: torch.Tensor, steps: Sequence[int] = ALL_STEPS
) -> torch.Tensor:
    """ColorJitter with each image's steps in its own order, as albumentations shuffles them per image: in round r
    every image runs its r-th step. A step whose factor is the identity is skipped, as albumentations does; `steps`:
    the only ones whose factor can be other than the identity (the spec's, not a batch's: no recompilation)."""
    if not steps:
        return images
    for round_ in range(4):
        step = order[:, round_]
        factor = jitter.gather(1, step[:, None]).squeeze(1)
        active = factor != (step != HUE).to(factor.dtype)  # the identity: factor 1, or a hue shift of 0
        images = jitter_round(images, step, factor, active, steps)
    return images


def gauss_noise(images: torch.Tensor, noise: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Zero-mean noise (a standard normal field, or a zero scalar for none), independent per pixel and channel, std
    a fraction of the pixel range, clipped (albumentations' GaussNoise with per_channel=True); std 0 leaves an image
    as it was."""
    return (images + noise * _per_image(std)).clamp_(0.0, 1.0)


def normalize(images: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """(x - mean) / std per channel, as alb.Normalize(max_pixel_value=255) on x * 255; channels_last out."""
    return _normalize(images, *_mean_std(normalization, images.device))


def _mean_std(normalization: Normalization, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return constant(tuple(normalization.mean), device), constant(tuple(normalization.std), device)


def _normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return ((images - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)).contiguous(memory_format=torch.channels_last)


def pixel_steps(
    images: torch.Tensor,
    flip: torch.Tensor,
    quarter_turns: torch.Tensor,
    jitter: torch.Tensor,
    jitter_order: torch.Tensor,
    noise: torch.Tensor,
    noise_std: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    jitter_steps: Sequence[int] = ALL_STEPS,
) -> torch.Tensor:
    """Everything after the crop, in the cpu path's order: flip, rotate90, colour jitter, noise, normalise. Tensors
    in, tensors out, no branch on their values: what torch.compile takes as one graph."""
    images = horizontal_flip(images, flip)
    images = rotate90(images, quarter_turns)
    images = color_jitter(images, jitter, jitter_order, jitter_steps)
    images = gauss_noise(images, noise, noise_std)
    return _normalize(images, mean, std)


class GpuAugment:
    """The training augmentation of the gpu pipeline: crop or resize, flip, rotate90, colour jitter, noise,
    normalise, in the cpu path's order, on the device the images are on. `compile`: run `pixel_steps` through
    torch.compile (the trainer's `training.compile`)."""

    def __init__(
        self, image_size: int, augmentation: Augmentation, normalization: Normalization, *, compile: bool = False
    ) -> None:
        self.image_size = image_size
        self.augmentation = augmentation
        self.normalization = normalization
        self.pixel_steps = torch.compile(pixel_steps) if compile else pixel_steps
        jitter = augmentation.color_jitter
        amounts = (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
        # Steps the spec leaves at the identity never run: eagerly each would cost a dozen passes over the batch.
        self.jitter_steps = tuple(kind for kind, amount in zip(ALL_STEPS, amounts, strict=True) if amount and jitter.p)

    def __call__(self, images: Sequence[torch.Tensor], params: AugmentParams, noise_seed: int) -> torch.Tensor:
        """`images`: CHW uint8 on the device, any sizes; `params`: the batch's parameters on the host."""
        device = images[0].device
        if self.augmentation.random_resized_crop:
            shapes = np.array([image.shape[1:] for image in images], dtype=np.int64)
            boxes = crop_boxes(shapes[:, 0], shapes[:, 1], params.crop.numpy())
        else:
            boxes = full_boxes(images)
        batch = resample(images, boxes, self.image_size)
        if bool((params.noise_std > 0).any()):
            generator = torch.Generator(device=device)
            generator.manual_seed(noise_seed)
            noise = torch.randn(batch.shape, generator=generator, device=device, dtype=batch.dtype)
        else:
            noise = torch.zeros((), device=device, dtype=batch.dtype)
        return self.pixel_steps(
            batch,
            to_device(params.flip, device),
            to_device(params.quarter_turns, device),
            to_device(params.jitter, device),
            to_device(params.jitter_order, device),
            noise,
            to_device(params.noise_std, device),
            *_mean_std(self.normalization, device),
            self.jitter_steps,
        )
