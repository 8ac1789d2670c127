"""Preprocessing: the one evaluation transform (shared with serving) and the seeded training augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelyard.api.training_job import Augmentation, ColorJitter, GaussNoise, Normalization
from modelyard.training.transforms import eval_transform, train_transform

pytestmark = pytest.mark.unit

IMAGENET = Normalization()


def _asymmetric_image(size: int = 16) -> np.ndarray:
    """An image that no flip or rotation maps onto itself."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def test_eval_transform_resizes_normalises_and_returns_chw_float() -> None:
    image = np.full((50, 70, 3), (255, 128, 0), dtype=np.uint8)
    tensor = eval_transform(32, IMAGENET)(image)
    assert tensor.shape == (3, 32, 32)
    assert tensor.dtype == torch.float32
    expected = [
        (value / 255 - mean) / std for value, mean, std in zip((255, 128, 0), IMAGENET.mean, IMAGENET.std, strict=False)
    ]
    for channel, value in enumerate(expected):
        assert torch.allclose(tensor[channel], torch.full((32, 32), value), atol=1e-5)


def test_eval_transform_is_deterministic_and_ignores_a_seed() -> None:
    image = _asymmetric_image(40)
    transform = eval_transform(24, IMAGENET)
    assert torch.equal(transform(image), transform(image, seed=123))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((8, 8), dtype=np.uint8),
        np.zeros((8, 8, 4), dtype=np.uint8),
        np.zeros((8, 8, 3), dtype=np.float32),
    ],
    ids=["grey", "rgba", "float"],
)
def test_eval_transform_refuses_anything_but_rgb_uint8(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected an RGB uint8 image"):
        eval_transform(8, IMAGENET)(image)


def test_training_augmentation_is_reproducible_per_seed() -> None:
    transform = train_transform(16, Augmentation(), IMAGENET)
    image = _asymmetric_image()
    assert torch.equal(transform(image, seed=5), transform(image, seed=5))
    distinct = {transform(image, seed=seed).numpy().tobytes() for seed in range(16)}
    assert len(distinct) > 8


def test_each_augmentation_draws_its_own_coin() -> None:
    """Albumentations' set_random_seed gives every transform the same seed, so a flip would always come with a
    rotation. Each transform must decide on its own: a flip alone and a rotation alone both happen."""
    augmentation = Augmentation(
        horizontal_flip=0.5,
        random_rotate90=0.5,
        color_jitter=ColorJitter(p=0.0),
        gauss_noise=GaussNoise(p=0.0),
    )
    transform = train_transform(16, augmentation, IMAGENET)
    preprocess = eval_transform(16, IMAGENET)
    image = _asymmetric_image()
    flipped_only = preprocess(np.ascontiguousarray(image[:, ::-1]))
    rotated_only = {preprocess(np.ascontiguousarray(np.rot90(image, k))).numpy().tobytes() for k in (1, 2, 3)}
    outcomes = [transform(image, seed=seed) for seed in range(64)]
    assert any(torch.equal(outcome, flipped_only) for outcome in outcomes), "a flip never came without a rotation"
    assert any(outcome.numpy().tobytes() in rotated_only for outcome in outcomes), "a rotation never came alone"


def test_random_resized_crop_keeps_the_output_size() -> None:
    transform = train_transform(20, Augmentation(random_resized_crop=True), IMAGENET)
    assert transform(_asymmetric_image(64), seed=1).shape == (3, 20, 20)


def test_disabled_augmentations_leave_training_equal_to_evaluation() -> None:
    augmentation = Augmentation(
        horizontal_flip=0.0, random_rotate90=0.0, color_jitter=ColorJitter(p=0.0), gauss_noise=GaussNoise(p=0.0)
    )
    image = _asymmetric_image(30)
    assert torch.equal(train_transform(12, augmentation, IMAGENET)(image, seed=3), eval_transform(12, IMAGENET)(image))
