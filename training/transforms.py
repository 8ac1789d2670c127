"""Image preprocessing: the proposal's albumentations training pipeline and the one evaluation transform.

`eval_transform` is the only preprocessing of validation and of serving (the Bento service imports it), so a served
model never sees inputs prepared differently from the ones it was validated on.
"""

from __future__ import annotations

from typing import Any

import albumentations as alb
import numpy as np
import numpy.typing as npt
import torch
from albumentations.pytorch import ToTensorV2

from modelyard.api.training_job import Augmentation, Normalization

RgbImage = npt.NDArray[np.uint8]


def _check_rgb(image: npt.NDArray[Any]) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image of shape HxWx3, got {image.dtype} {tuple(image.shape)}")


def _normalize(normalization: Normalization) -> alb.Normalize:
    return alb.Normalize(mean=normalization.mean, std=normalization.std, max_pixel_value=255.0)


class EvalTransform:
    """Resize to the network's square input, normalise, HWC uint8 → CHW float32. Deterministic."""

    def __init__(self, image_size: int, normalization: Normalization) -> None:
        self.image_size = image_size
        self.normalization = normalization
        self._pipeline = alb.Compose([alb.Resize(image_size, image_size), _normalize(normalization), ToTensorV2()])

    def __call__(self, image: RgbImage, seed: int | None = None) -> torch.Tensor:
        """`seed` is accepted (and unused) so that datasets call training and evaluation transforms alike."""
        _check_rgb(image)
        tensor: torch.Tensor = self._pipeline(image=image)["image"]
        return tensor


def eval_transform(image_size: int, normalization: Normalization) -> EvalTransform:
    """The preprocessing of validation and serving: RGB uint8 HxWx3 numpy array → float CHW tensor."""
    return EvalTransform(image_size, normalization)


class TrainTransform:
    """The proposal's augmentation pipeline, made reproducible per sample.

    Each call is seeded by the sampler (seed, epoch, position), so an epoch's augmentations are the same whatever the
    number of DataLoader workers and whether training was resumed. Albumentations' own `set_random_seed` hands the
    same seed to every transform, which makes their coin flips identical (flip ⇔ rotate); each transform gets its own
    seed derived from the sample's instead.
    """

    def __init__(self, image_size: int, augmentation: Augmentation, normalization: Normalization) -> None:
        self.image_size = image_size
        resize: alb.BasicTransform = (
            alb.RandomResizedCrop(size=(image_size, image_size))
            if augmentation.random_resized_crop
            else alb.Resize(image_size, image_size)
        )
        jitter = augmentation.color_jitter
        noise = augmentation.gauss_noise
        optional: list[tuple[float, alb.BasicTransform]] = [
            (augmentation.horizontal_flip, alb.HorizontalFlip(p=augmentation.horizontal_flip)),
            (augmentation.random_rotate90, alb.RandomRotate90(p=augmentation.random_rotate90)),
            (
                jitter.p,
                alb.ColorJitter(
                    brightness=jitter.brightness,
                    contrast=jitter.contrast,
                    saturation=jitter.saturation,
                    hue=jitter.hue,
                    p=jitter.p,
                ),
            ),
            (noise.p, alb.GaussNoise(std_range=noise.std_range, p=noise.p)),
        ]
        # A transform that never fires still costs a random draw per image: leave it out.
        augmentations = [transform for probability, transform in optional if probability > 0]
        self._pipeline = alb.Compose([resize, *augmentations, _normalize(normalization), ToTensorV2()])

    def __call__(self, image: RgbImage, seed: int | None = None) -> torch.Tensor:
        _check_rgb(image)
        if seed is not None:
            self._reseed(seed)
        tensor: torch.Tensor = self._pipeline(image=image)["image"]
        return tensor

    def _reseed(self, seed: int) -> None:
        states = np.random.SeedSequence(seed).generate_state(len(self._pipeline.transforms) + 1)
        self._pipeline.set_random_seed(int(states[0]))
        for transform, state in zip(self._pipeline.transforms, states[1:], strict=False):
            transform.set_random_seed(int(state))


def train_transform(image_size: int, augmentation: Augmentation, normalization: Normalization) -> TrainTransform:
    """The augmentation pipeline of the training set (configured by `spec.data.augmentation`)."""
    return TrainTransform(image_size, augmentation, normalization)
