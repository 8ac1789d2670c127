"""Device-side image operations of the gpu input pipeline, batched with per-image parameters.

Each mirrors its albumentations 2.0.8 counterpart in the cpu path (transforms.py) on float pixels in [0, 1], clipped
where albumentations clips uint8. Per-image choices are applied with `torch.where` or with identity factors for the
images a transform skips, so a batch costs a fixed handful of kernels whatever its parameters; whether any image of
the batch needs a step at all is decided from the parameters on the host, without waiting for the device.
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


def rotate90(images: torch.Tensor, quarter_turns: torch.Tensor, present: Sequence[int]) -> torch.Tensor:
    """np.rot90(image, k) per image (counterclockwise) on square images; `present`: the k > 0 the batch holds."""
    for turns in present:
        images = torch.where(_per_image(quarter_turns == turns), images.rot90(turns, dims=(-2, -1)), images)
    return images


def gray(images: torch.Tensor) -> torch.Tensor:
    weights = constant(GRAY_WEIGHTS, images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


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
    k = torch.remainder(constant((5.0, 3.0, 1.0), images.device).view(1, 3, 1, 1) + sextant, 6.0)
    return value - chroma * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)


def _jitter_step(images: torch.Tensor, step: int, factor: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    if step == HUE:
        return torch.where(_per_image(selected), adjust_hue(images, factor), images)
    # An identity factor leaves a pixel exactly as it was (x * 1 + m * 0), so unselected images need no mask.
    identity = torch.ones_like(factor)
    chosen = torch.where(selected, factor, identity)
    adjust = {BRIGHTNESS: adjust_brightness, CONTRAST: adjust_contrast, SATURATION: adjust_saturation}[step]
    return adjust(images, chosen)


def color_jitter(images: torch.Tensor, params: AugmentParams, on_device: AugmentParams) -> torch.Tensor:
    """ColorJitter with each image's steps in its own order, as albumentations shuffles them per image: in round r
    every image runs its r-th step. Steps whose factor is the identity are skipped, as albumentations does."""
    identity = (1.0, 1.0, 1.0, 0.0)
    active = params.jitter != torch.tensor(identity)  # on the host: decides which kernels run
    active_device = on_device.jitter != constant(identity, on_device.jitter.device)
    for round_ in range(4):
        for step in range(4):
            wanted = (params.jitter_order[:, round_] == step) & active[:, step]
            if not bool(wanted.any()):
                continue
            selected = (on_device.jitter_order[:, round_] == step) & active_device[:, step]
            images = _jitter_step(images, step, on_device.jitter[:, step], selected)
    return images


def gauss_noise(images: torch.Tensor, std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zero-mean noise, independent per pixel and channel, std a fraction of the pixel range, clipped (albumentations'
    GaussNoise with per_channel=True); std 0 leaves an image as it was."""
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + noise * _per_image(std)).clamp_(0.0, 1.0)


def normalize(images: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """(x - mean) / std per channel, as alb.Normalize(max_pixel_value=255) on x * 255; channels_last out."""
    mean = constant(tuple(normalization.mean), images.device).view(1, 3, 1, 1)
    std = constant(tuple(normalization.std), images.device).view(1, 3, 1, 1)
    return ((images - mean) / std).contiguous(memory_format=torch.channels_last)


class GpuAugment:
    """The training augmentation of the gpu pipeline: crop or resize, flip, rotate90, colour jitter, noise,
    normalise, in the cpu path's order, on the device the images are on."""

    def __init__(self, image_size: int, augmentation: Augmentation, normalization: Normalization) -> None:
        self.image_size = image_size
        self.augmentation = augmentation
        self.normalization = normalization

    def __call__(self, images: Sequence[torch.Tensor], params: AugmentParams, noise_seed: int) -> torch.Tensor:
        """`images`: CHW uint8 on the device, any sizes; `params`: the batch's parameters on the host."""
        device = images[0].device
        if self.augmentation.random_resized_crop:
            shapes = np.array([image.shape[1:] for image in images], dtype=np.int64)
            boxes = crop_boxes(shapes[:, 0], shapes[:, 1], params.crop.numpy())
        else:
            boxes = full_boxes(images)
        batch = resample(images, boxes, self.image_size)
        on_device = params._replace(
            flip=to_device(params.flip, device),
            quarter_turns=to_device(params.quarter_turns, device),
            jitter=to_device(params.jitter, device),
            jitter_order=to_device(params.jitter_order, device),
            noise_std=to_device(params.noise_std, device),
        )
        if bool(params.flip.any()):
            batch = horizontal_flip(batch, on_device.flip)
        present = [turns for turns in (1, 2, 3) if bool((params.quarter_turns == turns).any())]
        if present:
            batch = rotate90(batch, on_device.quarter_turns, present)
        batch = color_jitter(batch, params, on_device)
        if bool((params.noise_std > 0).any()):
            generator = torch.Generator(device=device)
            generator.manual_seed(noise_seed)
            batch = gauss_noise(batch, on_device.noise_std, generator)
        return normalize(batch, self.normalization)
