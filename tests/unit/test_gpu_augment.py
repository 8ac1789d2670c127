"""The gpu pipeline's device-side operations, run on the CPU: each matches its albumentations 2.0.8 counterpart in the
cpu path, does nothing when it does not fire, and the evaluation preprocessing matches `eval_transform`.

Tolerances are in uint8 levels: albumentations works on uint8 (cv2 resizes with fixed-point weights and every step
rounds), the gpu path keeps floats, so one level per rounding step is the expected difference, no more.
"""

from __future__ import annotations

import random
from pathlib import Path

import albumentations as alb
import cv2
import numpy as np
import pytest
import sklearn.datasets
import torch
from albumentations.augmentations.crops import functional as fcrops
from albumentations.augmentations.geometric import functional as fgeometric
from albumentations.augmentations.pixel import functional as fpixel

from modelyard.api.training_job import Augmentation, ColorJitter, GaussNoise, Normalization
from modelyard.training.data import read_rgb
from modelyard.training.gpu_augment import GpuAugment, adjust_hue, color_jitter, normalize, on_selected, resample
from modelyard.training.gpu_data import CROP_ATTEMPTS, AugmentParams, crop_boxes, draw_parameters
from modelyard.training.gpu_pipeline import decode_images, eval_pixels
from modelyard.training.transforms import eval_transform

pytestmark = pytest.mark.unit

CPU = torch.device("cpu")
IMAGENET = Normalization()
PHOTOS = Path(sklearn.datasets.__file__).parent / "images"  # real photographs (JPEG) that scikit-learn ships
LEVEL = 1 / 255
NOTHING = Augmentation(horizontal_flip=0, random_rotate90=0, color_jitter=ColorJitter(p=0), gauss_noise=GaussNoise(p=0))


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _hwc(batch: torch.Tensor, index: int) -> np.ndarray:
    """One image of a normalised batch back in [0, 1], HWC."""
    mean = torch.tensor(IMAGENET.mean).view(3, 1, 1)
    std = torch.tensor(IMAGENET.std).view(3, 1, 1)
    return (batch[index] * std + mean).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return read_rgb(PHOTOS / "china.jpg")


@pytest.fixture(scope="module")
def tiles(photo: np.ndarray) -> list[np.ndarray]:
    """Eight different 48x48 pieces of the photo: square, so resizing to 48 leaves them as they are."""
    corners = [(40 * row, 60 * col) for row in range(2) for col in range(4)]
    return [np.ascontiguousarray(photo[top : top + 48, left : left + 48]) for top, left in corners]


def _augment(augmentation: Augmentation, tiles: list[np.ndarray], seeds: range) -> tuple[torch.Tensor, AugmentParams]:
    images = [_chw(tiles[index % len(tiles)]) for index in range(len(seeds))]
    params = AugmentParams.stack(np.stack([draw_parameters(seed, augmentation) for seed in seeds]))
    return GpuAugment(48, augmentation, IMAGENET)(images, params, noise_seed=1), params


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
@pytest.mark.parametrize("size", [224, 61])
def test_eval_preprocessing_matches_eval_transform_on_a_real_jpeg(name: str, size: int) -> None:
    path = PHOTOS / name
    expected = eval_transform(size, IMAGENET)(read_rgb(path))
    encoded = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    [image], [error] = decode_images([encoded], CPU)
    assert image is not None, error
    prepared = eval_pixels([image], size, IMAGENET)
    assert prepared.shape == (1, 3, size, size)
    assert prepared.is_contiguous(memory_format=torch.channels_last)
    # In pixel levels: cv2 rounds its uint8 result, the float path does not — at most one level apart.
    levels = ((prepared[0] - expected) * torch.tensor(IMAGENET.std).view(3, 1, 1)).abs() * 255
    assert float(levels.max()) <= 1.0 + 1e-3
    assert float(levels.mean()) <= 0.35


@pytest.mark.parametrize(
    "box",
    [(10, 20, 210, 170), (50, 60, 80, 100), (0, 0, 300, 200), (299, 0, 300, 200)],
    ids=["downscale", "upscale", "whole", "one-column"],
)
def test_crop_and_resize_match_albumentations_crop_then_cv2_resize(photo: np.ndarray, box: tuple[int, ...]) -> None:
    image = np.ascontiguousarray(photo[:200, :300])
    expected = fgeometric.resize(fcrops.crop(image, *box), (64, 64), cv2.INTER_LINEAR).astype(np.float64)
    ours = resample([_chw(image)], np.array([box]), 64)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(ours - expected).max() <= 1.0 + 1e-3


def test_images_of_different_sizes_keep_their_places_in_the_batch(photo: np.ndarray) -> None:
    small, large = _chw(np.ascontiguousarray(photo[:50, :70])), _chw(np.ascontiguousarray(photo[100:300, 200:500]))
    boxes = np.array([[0, 0, 70, 50], [0, 0, 300, 200], [0, 0, 70, 50]])
    together = resample([small, large, small], boxes, 32)
    assert torch.equal(together[0], resample([small], boxes[:1], 32)[0])
    assert torch.equal(together[1], resample([large], boxes[1:2], 32)[0])
    assert torch.equal(together[2], together[0])
    assert not torch.allclose(together[0], together[1], atol=0.1)


class _Replay(random.Random):
    """albumentations' py_random answering with given draws: per attempt uniform(area) and uniform(log-ratio), then
    random() twice (top, left) for the box that fits."""

    def __init__(self, draws: np.ndarray) -> None:
        super().__init__(0)
        self.draws, self.uniforms, self.randoms = draws, 0, 0

    def uniform(self, a: float, b: float) -> float:
        attempt, which = divmod(self.uniforms, 2)
        self.uniforms += 1
        return float(a + (b - a) * self.draws[attempt, which])

    def random(self) -> float:
        self.randoms += 1
        return float(self.draws[(self.uniforms - 1) // 2, 1 + self.randoms])


@pytest.mark.parametrize("shape", [(200, 300), (300, 200), (40, 400), (400, 40), (64, 64), (1, 500)])
def test_random_resized_crop_boxes_are_albumentations_boxes(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    draws = rng.random((50, CROP_ATTEMPTS, 4))
    heights, widths = np.full(50, shape[0]), np.full(50, shape[1])
    ours = crop_boxes(heights, widths, draws)
    for index in range(50):
        transform = alb.RandomResizedCrop(size=(32, 32))
        transform.py_random = _Replay(draws[index])
        expected = transform.get_params_dependent_on_data({"shape": (*shape, 3)}, {})["crop_coords"]
        assert tuple(int(value) for value in ours[index]) == tuple(expected), f"draw {index}"
    assert (ours[:, 2] <= shape[1]).all()
    assert (ours[:, 3] <= shape[0]).all()
    assert (ours[:, 2] > ours[:, 0]).all()
    assert (ours[:, 3] > ours[:, 1]).all()


def test_nothing_changes_when_no_augmentation_fires(tiles: list[np.ndarray]) -> None:
    output, params = _augment(NOTHING, tiles, range(16))
    plain = eval_pixels([_chw(tile) for tile in tiles * 2], 48, IMAGENET)
    assert torch.equal(output, plain)
    assert not params.flip.any()
    assert not params.quarter_turns.any()
    assert not params.noise_std.any()
    assert torch.equal(params.jitter, torch.tensor([[1.0, 1.0, 1.0, 0.0]]).expand(16, 4))


def test_a_certain_flip_mirrors_every_image(tiles: list[np.ndarray]) -> None:
    output, params = _augment(NOTHING.model_copy(update={"horizontal_flip": 1.0}), tiles, range(8))
    plain = eval_pixels([_chw(tile) for tile in tiles], 48, IMAGENET)
    assert params.flip.all()
    assert torch.equal(output, plain.flip(-1))
    mirrored = eval_pixels([_chw(np.ascontiguousarray(tile[:, ::-1])) for tile in tiles], 48, IMAGENET)
    assert torch.allclose(output, mirrored, atol=1e-4)
    assert not torch.allclose(output, plain, atol=0.1)


def test_a_certain_rotation_turns_each_image_by_its_own_k(tiles: list[np.ndarray]) -> None:
    output, params = _augment(NOTHING.model_copy(update={"random_rotate90": 1.0}), tiles, range(32))
    plain = eval_pixels([_chw(tiles[index % 8]) for index in range(32)], 48, IMAGENET)
    turns = params.quarter_turns.tolist()
    assert set(turns) == {0, 1, 2, 3}  # RandomRotate90 draws k from 0..3 once it fires, 0 included
    for index, k in enumerate(turns):
        expected = fgeometric.rot90(_hwc(plain, index), k)  # albumentations' own: np.rot90, counterclockwise
        assert np.allclose(_hwc(output, index), expected, atol=1e-6), f"image {index}, k={k}"


def _jitter_only(**amounts: float) -> Augmentation:
    jitter = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "p": 1.0, **amounts}
    return NOTHING.model_copy(update={"color_jitter": ColorJitter(**jitter)})


def test_brightness_multiplies_by_each_images_factor(tiles: list[np.ndarray]) -> None:
    output, params = _augment(_jitter_only(brightness=0.5), tiles, range(8))
    factors = params.jitter[:, 0].numpy()
    assert ((factors >= 0.5) & (factors <= 1.5)).all()
    assert np.ptp(factors) > 0.2
    for index, tile in enumerate(tiles):
        expected = np.clip(tile / 255.0 * factors[index], 0, 1)
        assert np.abs(_hwc(output, index) - expected).max() < 1e-4
        reference = fpixel.adjust_brightness_torchvision(tile, float(factors[index])) / 255.0
        # albumentations truncates the product to uint8 (a lookup table), the float path does not.
        assert np.abs(_hwc(output, index) - reference).max() <= LEVEL + 1e-6


@pytest.mark.parametrize("step", ["contrast", "saturation"])
def test_contrast_and_saturation_match_albumentations(tiles: list[np.ndarray], step: str) -> None:
    output, params = _augment(_jitter_only(**{step: 0.6}), tiles, range(8))
    column = {"contrast": 1, "saturation": 2}[step]
    function = {"contrast": fpixel.adjust_contrast_torchvision, "saturation": fpixel.adjust_saturation_torchvision}
    for index, tile in enumerate(tiles):
        factor = float(params.jitter[index, column])
        assert 0.4 <= factor <= 1.6
        reference = function[step](tile, factor) / 255.0
        # One rounding of the result, and cv2's grey image is rounded to uint8 before it is used.
        assert np.abs(_hwc(output, index) - reference).max() <= 1.5 * LEVEL, f"image {index}, factor {factor}"


def test_hue_shift_matches_albumentations_on_float_pixels(tiles: list[np.ndarray]) -> None:
    images = torch.stack([_chw(tile) for tile in tiles]).float() / 255
    shifts = torch.linspace(-0.5, 0.5, len(tiles))
    shifted = adjust_hue(images, shifts)
    for index, tile in enumerate(tiles):
        reference = fpixel.adjust_hue_torchvision(tile.astype(np.float32) / 255, float(shifts[index]))
        assert np.abs(shifted[index].permute(1, 2, 0).numpy() - reference).max() < 1e-4, f"shift {shifts[index]}"
    assert torch.allclose(adjust_hue(images, torch.zeros(len(tiles))), images, atol=1e-6)
    assert torch.allclose(adjust_hue(images, torch.ones(len(tiles))), images, atol=1e-5)  # a whole turn


def test_colour_jitter_runs_each_images_steps_in_its_own_order(tiles: list[np.ndarray]) -> None:
    """The whole ColorJitter (brightness, contrast, saturation) against albumentations' own apply with the same
    factors and order; bright tiles, so that clipping makes the order visible."""
    rng = np.random.default_rng(3)
    images = [_chw(np.clip(tile.astype(np.int64) + 90, 0, 255).astype(np.uint8)) for tile in tiles] * 3
    count = len(images)
    augmentation = _jitter_only(brightness=0.5, contrast=0.5, saturation=0.5)
    rows = np.stack([draw_parameters(seed, augmentation) for seed in range(count)])
    rows[:, 6:10] = np.stack([rng.permutation(4) for _ in range(count)])
    params = AugmentParams.stack(rows)
    batch = resample(images, np.array([[0, 0, 48, 48]] * count), 48)
    jittered = color_jitter(batch.clone(), params, params.jitter)  # it changes its batch in place
    reference_transform = alb.ColorJitter()
    orders_seen = set()
    for index, image in enumerate(images):
        brightness, contrast, saturation, hue = (float(value) for value in params.jitter[index])
        order = params.jitter_order[index].tolist()
        orders_seen.add(tuple(step for step in order if step != 3))
        pixels = image.permute(1, 2, 0).numpy()
        reference = reference_transform.apply(pixels, brightness, contrast, saturation, hue, order) / 255.0
        ours = jittered[index].permute(1, 2, 0).numpy()
        assert np.abs(ours - reference).max() <= 3 * LEVEL, f"image {index}, order {order}"
    assert len(orders_seen) >= 4
    # And the order matters: the same image and factors in two orders give different pixels.
    swapped = params._replace(jitter_order=params.jitter_order.flip(1))
    assert not torch.allclose(color_jitter(batch.clone(), swapped, swapped.jitter), jittered, atol=2 * LEVEL)


def test_gauss_noise_has_each_images_std_per_channel_and_is_clipped() -> None:
    augmentation = NOTHING.model_copy(update={"gauss_noise": GaussNoise(std_range=(0.02, 0.1), p=1.0)})
    grey = [torch.full((3, 64, 64), 128, dtype=torch.uint8)] * 12
    params = AugmentParams.stack(np.stack([draw_parameters(seed, augmentation) for seed in range(12)]))
    output = GpuAugment(64, augmentation, IMAGENET)(grey, params, noise_seed=7)
    plain = eval_pixels(grey, 64, IMAGENET)
    stds = params.noise_std.numpy()
    assert ((stds >= 0.02) & (stds <= 0.1)).all()
    assert np.ptp(stds) > 0.02
    for index in range(12):
        residual = _hwc(output, index) - _hwc(plain, index)
        for channel in range(3):
            assert residual[..., channel].std() == pytest.approx(stds[index], rel=0.05)
            assert abs(residual[..., channel].mean()) < 0.1 * stds[index]
        # Independent per channel, as albumentations' per_channel=True.
        assert abs(np.corrcoef(residual[..., 0].ravel(), residual[..., 1].ravel())[0, 1]) < 0.1
    again = GpuAugment(64, augmentation, IMAGENET)(grey, params, noise_seed=7)
    assert torch.equal(output, again)
    white = [torch.full((3, 64, 64), 255, dtype=torch.uint8)] * 2
    noisy_white = GpuAugment(64, augmentation, IMAGENET)(white, AugmentParams(*(value[:2] for value in params)), 7)
    denormalised = _hwc(noisy_white, 0)
    assert denormalised.max() <= 1.0 + 1e-6
    assert denormalised.mean() < 1.0 - stds[0] / 4


def test_normalisation_matches_albumentations_normalize() -> None:
    image = np.random.default_rng(5).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    expected = alb.Normalize(mean=IMAGENET.mean, std=IMAGENET.std, max_pixel_value=255.0)(image=image)["image"]
    ours = normalize(_chw(image).float().unsqueeze(0) / 255, IMAGENET)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert np.allclose(ours[0].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_an_images_augmentation_does_not_depend_on_the_rest_of_its_batch(tiles: list[np.ndarray]) -> None:
    """Each step runs on the images it picks only, gathered and put back: an image comes out of a batch of 24 as it
    does alone (where every step either takes the whole batch or nothing)."""
    jitter = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.7)
    augmentation = NOTHING.model_copy(update={"horizontal_flip": 0.5, "random_rotate90": 0.5, "color_jitter": jitter})
    output, params = _augment(augmentation, tiles, range(24))
    assert 0 < int(params.flip.sum()) < 24
    assert len(set(params.quarter_turns.tolist())) == 4
    assert len({tuple(row) for row in params.jitter_order.tolist()}) > 4
    for index in range(24):
        alone = AugmentParams(*(field[index : index + 1] for field in params))
        image = GpuAugment(48, augmentation, IMAGENET)([_chw(tiles[index % len(tiles)])], alone, noise_seed=1)
        assert torch.allclose(image[0], output[index], atol=1e-6), f"image {index}"


def test_on_selected_changes_the_picked_images_in_place_and_nothing_else() -> None:
    batch = torch.arange(4 * 3 * 2 * 2, dtype=torch.float32).view(4, 3, 2, 2)
    before = batch.clone()
    picked = torch.tensor([False, True, False, True])
    changed = on_selected(batch, picked, lambda chosen, index: chosen * 10 + index.view(-1, 1, 1, 1))
    assert changed is batch
    assert torch.equal(changed[1], before[1] * 10 + 1)
    assert torch.equal(changed[3], before[3] * 10 + 3)
    assert torch.equal(changed[[0, 2]], before[[0, 2]])
    assert on_selected(batch, torch.zeros(4, dtype=torch.bool), lambda chosen, index: chosen * 0) is batch
    everything = on_selected(before, torch.ones(4, dtype=torch.bool), lambda chosen, index: chosen + 1)
    assert torch.equal(everything, before + 1)
