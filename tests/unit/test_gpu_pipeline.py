"""The gpu input pipeline around the device operations, run on the CPU: parameters come from the sample seed alone
(so batches do not depend on the number of workers), workers hand over JPEG bytes or PIL-decoded pixels, and an
unreadable JPEG is skipped, counted with its path and replaced inside its batch, which keeps its size."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch
from PIL import Image
from torch.utils.data import DataLoader

from modelyard.api.training_job import Augmentation, ColorJitter, DataSpec, GaussNoise, InputPipeline
from modelyard.training.data import BadImageTracker, EpochSampler, ShardSampler, load_split, read_rgb
from modelyard.training.errors import DatasetError
from modelyard.training.gpu_data import (
    EncodedDataset,
    EncodedItem,
    collate_encoded,
    decoded_on_host,
    draw_parameters,
    host_rgb,
    pil_rgb,
    whole_jpeg,
)
from modelyard.training.gpu_pipeline import (
    DeviceLoader,
    EvalPreparation,
    decode_images,
    eval_pixels,
    host_images_to_device,
    make_gpu_loader,
)
from modelyard.training.transforms import eval_transform

pytestmark = pytest.mark.unit

CPU = torch.device("cpu")
NOTHING = Augmentation(horizontal_flip=0, random_rotate90=0, color_jitter=ColorJitter(p=0), gauss_noise=GaussNoise(p=0))


def _write_folder(root: Path, per_class: int = 8, classes: int = 3, size: int = 40) -> Path:
    """JPEG class folders of smooth, distinct colour fields (each class its own hue)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)[:, None, None]
    for label in range(classes):
        (root / f"c{label}").mkdir(parents=True)
        for index in range(per_class):
            colour = np.roll(np.array([220.0, 60.0, 30.0]), label) * (0.5 + 0.5 * ramp)
            pixels = np.clip(colour + rng.normal(0, 8, (size, size + 8 * index % 24, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / f"c{label}" / f"{index:02d}.jpg", quality=92)
    return root


def _data(root: Path, **fields: object) -> DataSpec:
    return DataSpec(path=str(root), image_size=32, num_workers=0, pipeline=InputPipeline.GPU, **fields)


def test_the_spec_defaults_to_the_cpu_pipeline() -> None:
    assert DataSpec(path="/data").pipeline is InputPipeline.CPU
    assert DataSpec.model_validate({"path": "/data", "pipeline": "gpu"}).pipeline is InputPipeline.GPU
    with pytest.raises(ValueError, match="pipeline"):
        DataSpec.model_validate({"path": "/data", "pipeline": "tpu"})


def test_parameters_come_from_the_seed_alone_with_albumentations_probabilities() -> None:
    augmentation = Augmentation()  # flip 0.5, rotate90 0.5, jitter b/c 0.2 p 0.5, noise 0.012..0.028 p 0.3
    assert np.array_equal(draw_parameters(11, augmentation), draw_parameters(11, augmentation))
    rows = np.stack([draw_parameters(seed, augmentation) for seed in range(4000)])
    assert len({row.tobytes() for row in rows}) == 4000
    assert rows[:, 0].mean() == pytest.approx(0.5, abs=0.03)  # flip
    turns = np.bincount(rows[:, 1].astype(int), minlength=4) / 4000
    assert turns[0] == pytest.approx(0.5 + 0.5 / 4, abs=0.03)  # not rotated, or rotated by k=0
    assert turns[1:] == pytest.approx([0.125] * 3, abs=0.02)
    jittered = rows[:, 2] != 1.0
    assert jittered.mean() == pytest.approx(0.5, abs=0.03)
    assert rows[jittered, 2].min() >= 0.8
    assert rows[jittered, 2].max() <= 1.2
    assert np.ptp(rows[jittered, 2]) > 0.35
    assert (rows[:, 4] == 1.0).all()  # saturation 0 by default: the identity
    assert (rows[:, 5] == 0.0).all()  # hue 0 by default
    noisy = rows[:, 10] > 0
    assert noisy.mean() == pytest.approx(0.3, abs=0.03)
    assert rows[noisy, 10].min() >= 0.012
    assert rows[noisy, 10].max() <= 0.028
    orders = {tuple(row[6:10].astype(int)) for row in rows}
    assert len(orders) == 24  # every order of the four jitter steps


def test_batches_are_the_same_whatever_the_number_of_workers(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs")
    data = _data(root, augmentation=Augmentation(random_resized_crop=True, color_jitter=ColorJitter(hue=0.1, p=0.8)))
    split = load_split(data, 3, seed=0)

    def epoch(workers: int, number: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sampler = EpochSampler(len(split.train), seed=5)
        sampler.set_epoch(number)
        loader = make_gpu_loader(
            split.train, sampler, 6, data.model_copy(update={"num_workers": workers}), CPU, train=True
        )
        return [(batch.images, batch.labels) for batch in loader]

    inline, parallel = epoch(0, 1), epoch(2, 1)
    assert len(inline) == len(parallel) == 3
    for (images, labels), (other_images, other_labels) in zip(inline, parallel, strict=True):
        assert images.shape == (6, 3, 32, 32)
        assert torch.equal(images, other_images)
        assert torch.equal(labels, other_labels)
    assert not torch.equal(epoch(0, 2)[0][0], inline[0][0])  # the next epoch: another order, other augmentations


def test_workers_hand_over_jpeg_bytes_and_pil_decoded_pixels(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs", per_class=2, classes=2)
    png = root / "c1" / "zz.png"
    Image.open(root / "c1" / "00.jpg").save(png)
    misnamed = root / "c0" / "png-named.jpg"  # a PNG behind a .jpg name: told apart by content
    Image.open(root / "c0" / "00.jpg").save(misnamed, format="PNG")
    split = load_split(_data(root, val_path=str(root)), 2, seed=0)
    dataset = EncodedDataset(split.val, None)
    items = {Path(item.path).name: item for item in (dataset[(index, None)] for index in range(len(dataset)))}
    assert items["00.jpg"].data.ndim == 1
    assert bytes(items["00.jpg"].data[:3].tolist()) == b"\xff\xd8\xff"
    assert items["zz.png"].data.shape == (40, 40, 3)  # decoded pixels travel HWC
    assert items["png-named.jpg"].data.ndim == 3
    assert items["zz.png"].params is None  # evaluation draws nothing
    # Through the whole evaluation path, the PNG is preprocessed exactly as the cpu path's eval_transform.
    validation = EvalPreparation(DataSpec.model_validate({"path": "/x", "imageSize": 32}), CPU)
    prepared = validation(collate_encoded([items["zz.png"]]))
    expected = eval_transform(32, DataSpec(path="/x").normalization)(read_rgb(png))
    assert float((prepared.images[0] - expected).abs().max()) < 0.02  # one uint8 level / std


def test_the_host_decode_share_picks_an_even_spread_of_samples_by_index() -> None:
    for share in (0.1, 0.25, 0.5, 0.9):
        picked = np.array([decoded_on_host(index, share) for index in range(10_000)])
        assert picked.mean() == pytest.approx(share, abs=0.002)
        windows = picked[: 256 * 39].reshape(39, 256).mean(axis=1)  # any run of consecutive indices, not just all
        assert np.abs(windows - share).max() < 0.02
    assert not any(decoded_on_host(index, 0.0) for index in range(1000))
    assert all(decoded_on_host(index, 1.0) for index in range(1000))
    with pytest.raises(ValueError, match="hostDecodeShare"):
        DataSpec.model_validate({"path": "/data", "hostDecodeShare": 1.5})


def test_a_host_decode_share_hands_over_pil_pixels_and_changes_no_batch_but_for_the_decoder(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs")
    kinds = _corrupt(root)
    for kind in ("truncated", "garbage", "marker"):
        kinds.pop(kind).unlink()
    corrupt = kinds["huffman"]  # whole: only decoding finds it, here in the worker
    data = _data(root, augmentation=NOTHING, val_path=str(root))
    split = load_split(data, 3, seed=0)
    order = [sample.path for sample in split.train]
    on_host = [index for index in range(len(order)) if decoded_on_host(index, 0.5)]
    assert 0.3 < len(on_host) / len(order) < 0.7
    dataset = EncodedDataset(split.train, None, host_decode_share=0.5)
    for index, path in enumerate(order):
        item = dataset[(index, None)]
        if index not in on_host:
            assert item.data.ndim == 1
        elif path != corrupt:
            assert torch.equal(item.data, torch.from_numpy(read_rgb(path).copy()))  # PIL's pixels, to the bit
    # Decoded in the worker, the corrupt file is skipped there, named, for the next readable one.
    item = EncodedDataset(split.train, None, host_decode_share=1.0)[(order.index(corrupt), None)]
    assert item.path != str(corrupt)
    assert item.data.ndim == 3
    assert [bad for bad, _ in item.bad] == [str(corrupt)]

    def epoch(share: float) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        spec = data.model_copy(update={"host_decode_share": share})
        loader = make_gpu_loader(split.train, EpochSampler(len(order), seed=3), 6, spec, CPU, train=True)
        return [(batch.images, batch.labels, [path for path, _ in batch.bad]) for batch in loader]

    devices, hosts = epoch(0.0), epoch(0.5)
    assert len(devices) == len(hosts) == len(order) // 6
    for (images, labels, _), (host_images, host_labels, _) in zip(devices, hosts, strict=True):
        assert torch.equal(labels, host_labels)
        assert (images - host_images).abs().max() < 0.05  # decode_jpeg on a CPU and PIL: both libjpeg-turbo
    assert [path for *_, bad in devices for path in bad] == [str(corrupt)]  # reported wherever it was decoded
    assert [path for *_, bad in hosts for path in bad] == [str(corrupt)]


def _collated_in_shared_memory(items: list[EncodedItem]) -> bool:
    return bool(collate_encoded(items).buffer.is_shared())


def test_a_worker_collates_its_batch_straight_into_shared_memory(tmp_path: Path) -> None:
    """Else handing the batch over copies it there: 75 MiB for 256 images decoded in the worker."""
    root = _write_folder(tmp_path / "jpegs", per_class=2, classes=2)
    split = load_split(_data(root, val_path=str(root)), 2, seed=0)
    dataset = EncodedDataset(split.val, None, host_decode_share=1.0)
    keys = [(index, None) for index in range(len(dataset))]
    loader = DataLoader(dataset, batch_size=2, sampler=keys, num_workers=1, collate_fn=_collated_in_shared_memory)
    assert list(loader) == [True, True]
    batch = collate_encoded([dataset[key] for key in keys])  # in this process: ordinary memory
    assert not batch.buffer.is_shared()
    assert [item.shape for item in batch.items()] == [dataset[key].data.shape for key in keys]


def _corrupt(root: Path) -> dict[str, Path]:
    """Four kinds of bad JPEG: cut off (a worker notices, PIL refuses it there), not a JPEG past its first bytes
    (likewise), a reserved marker inside its scan (likewise), and whole but with a broken Huffman table (only
    decoding finds it, in the training process)."""
    good = (root / "c1" / "01.jpg").read_bytes()
    marker = root / "c1" / "reserved-marker.jpg"
    marker.write_bytes(_reserved_marker_in_scan(good))
    truncated = root / "c2" / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = root / "c0" / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    broken = bytearray(good)
    table = broken.find(b"\xff\xc4")
    broken[table + 5 : table + 21] = b"\xff" * 16  # its 16 code counts: a table no decoder builds
    huffman = root / "c1" / "broken-huffman.jpg"
    huffman.write_bytes(bytes(broken))
    return {"truncated": truncated, "garbage": garbage, "marker": marker, "huffman": huffman}


def _reserved_marker_in_scan(jpeg: bytes) -> bytes:
    """The JPEG with a reserved marker (0xFFC8) just inside its scan data: its header reads and it ends whole; PIL and
    libjpeg-turbo refuse it, nvJPEG returned pixels for it (bench/RESULTS.md, 2026-12-02)."""
    scan = jpeg.find(b"\xff\xda")
    data = scan + 2 + int.from_bytes(jpeg[scan + 2 : scan + 4], "big") + 4
    return jpeg[:data] + b"\xff\xc8\x00\x04\x00\x00" + jpeg[data:]


def _with_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """An APP1 segment holding a whole JPEG, as an EXIF thumbnail does, after the start-of-image marker."""
    payload = b"Exif\x00\x00" + thumbnail
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_only_whole_jpegs_are_left_for_the_device_to_decode(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs", per_class=1, classes=1)
    source = Image.open(root / "c0" / "00.jpg")
    variants = {
        "progressive": {"progressive": True},
        "restarts": {"restart_marker_blocks": 1},
        "444": {"subsampling": 0},
    }
    for name, options in variants.items():
        source.save(root / f"{name}.jpg", **options)
    source.convert("L").save(root / "grey.jpg")
    photos = Path(sklearn.datasets.__file__).parent / "images"
    wholes = [path.read_bytes() for path in [root / "c0" / "00.jpg", *root.glob("*.jpg")]]
    wholes += [(photos / name).read_bytes() for name in ("china.jpg", "flower.jpg")]
    wholes.append(_with_thumbnail(wholes[0], wholes[1]))  # the thumbnail's own markers are not the image's
    assert b"\xff\xd0" in (root / "restarts.jpg").read_bytes()
    for data in wholes:
        assert whole_jpeg(data)
        assert not whole_jpeg(data[: len(data) - 2])
        assert not whole_jpeg(data[: len(data) // 2])
        assert not whole_jpeg(_reserved_marker_in_scan(data))
    assert not whole_jpeg(b"\xff\xd8\xff\xe0 not really")
    assert not whole_jpeg(b"\0\0" + wholes[0][2:])  # a JPEG's segments without its start marker: not a JPEG
    # A second image after the first's end, as in an MPO file: the first is what is decoded.
    assert whole_jpeg(wholes[0] + wholes[1][:100])
    assert not whole_jpeg(_reserved_marker_in_scan(wholes[0]) + wholes[1])


def test_the_host_decoder_gives_pil_pixels_and_leaves_pil_to_judge(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs", per_class=2, classes=3)
    for path in sorted(root.rglob("*.jpg")):
        assert torch.equal(host_rgb(path.read_bytes()), torch.from_numpy(read_rgb(path).copy()))

    def error(decode: Callable[[bytes], torch.Tensor], data: bytes) -> str:
        try:
            decode(data)
        except OSError as raised:
            return f"{type(raised).__name__}: {raised}"
        return "decoded"

    for path in _corrupt(root).values():  # PIL's word on each, whether libjpeg-turbo saw the file or not
        assert error(host_rgb, path.read_bytes()) == error(pil_rgb, path.read_bytes()) != "decoded"
    png = tmp_path / "grey.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(png)
    assert torch.equal(host_rgb(png.read_bytes()), torch.from_numpy(read_rgb(png).copy()))
    assert host_rgb(png.read_bytes()).shape == (6, 8, 3)


def test_a_corrupt_jpeg_is_skipped_counted_with_its_path_and_its_slot_filled(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs", per_class=4)
    corrupt = _corrupt(root)
    data = _data(root, augmentation=NOTHING, val_path=str(root))  # every image on both sides
    split = load_split(data, 3, seed=0)
    order = [sample.path for sample in split.train]
    assert set(corrupt.values()) <= set(order)
    dataset = EncodedDataset(split.train, None)
    assert dataset[(order.index(corrupt["huffman"]), None)].data.ndim == 1  # left whole to the device
    loader = make_gpu_loader(split.train, ShardSampler(len(split.train)), len(split.train), data, CPU, train=False)
    [batch] = list(loader)
    assert batch.images.shape == (len(split.train), 3, 32, 32)  # the batch keeps its size
    assert sorted(path for path, _ in batch.bad) == sorted(map(str, corrupt.values()))
    for path, error in batch.bad:
        assert error.startswith(("OSError", "UnidentifiedImageError")), (path, error)  # PIL's word on it
        slot = order.index(Path(path))
        following = [(slot + step) % len(order) for step in range(1, len(order))]  # the batch's next, wrapping round
        donor = next(index for index in following if order[index] not in corrupt.values())
        assert torch.equal(batch.images[slot], batch.images[donor])  # the next readable image took the slot
        assert batch.labels[slot] == batch.labels[donor]
    readable = [index for index, path in enumerate(order) if path not in corrupt.values()]
    assert len({batch.images[index].numpy().tobytes() for index in readable}) == len(readable)

    logged: list[str] = []
    tracker = BadImageTracker(len(split.train), 0.3, lambda path, error: logged.append(path))
    tracker.record(batch.bad)
    tracker.record(batch.bad)  # met again next epoch: counted once
    assert sorted(logged) == sorted(map(str, corrupt.values()))
    strict = BadImageTracker(len(split.train), 0.0, lambda path, error: None)
    with pytest.raises(DatasetError, match=r"4 unreadable images, more than data\.maxBadImageFraction=0\.0") as caught:
        strict.record(batch.bad)
    for path in corrupt.values():
        assert str(path) in str(caught.value)


def test_training_batches_with_a_corrupt_jpeg_keep_their_size_and_report_it(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs", per_class=4)
    corrupt = _corrupt(root)
    for kind in ("truncated", "garbage", "marker"):
        corrupt.pop(kind).unlink()
    data = _data(root, val_path=str(root))
    split = load_split(data, 3, seed=0)
    loader = make_gpu_loader(split.train, EpochSampler(len(split.train), seed=1), 4, data, CPU, train=True)
    batches = list(loader)
    assert [batch.images.shape[0] for batch in batches] == [4] * (len(split.train) // 4)
    assert [path for batch in batches for path, _ in batch.bad] == [str(corrupt["huffman"])]
    assert all(torch.isfinite(batch.images).all() for batch in batches)


def test_a_batch_of_nothing_but_unreadable_jpegs_stops_naming_them(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs", per_class=2, classes=2)
    for path in root.rglob("*.jpg"):  # whole JPEGs, so the workers pass them on, with broken Huffman tables
        broken = bytearray(path.read_bytes())
        table = broken.find(b"\xff\xc4")
        broken[table + 5 : table + 21] = b"\xff" * 16  # its 16 code counts: a table no decoder builds
        path.write_bytes(bytes(broken))
    data = _data(root, val_path=str(root))
    split = load_split(data, 2, seed=0)
    loader = make_gpu_loader(split.train, ShardSampler(len(split.train)), 8, data, CPU, train=False)
    with pytest.raises(DatasetError, match="no readable image in a batch of 4") as caught:
        list(loader)
    assert str(split.train[0].path) in str(caught.value)


def test_decoding_leaves_out_unreadable_inputs_and_says_why(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs", per_class=1, classes=2)
    good = torch.frombuffer(bytearray((root / "c0" / "00.jpg").read_bytes()), dtype=torch.uint8)
    bad = torch.frombuffer(bytearray(b"\xff\xd8\xff\xe0 not really"), dtype=torch.uint8)
    pixels = torch.zeros((10, 12, 3), dtype=torch.uint8)  # decoded on the host: HWC
    images, errors = decode_images([bad, good, pixels], CPU)
    assert images[0] is None
    assert errors[0].startswith(("OSError", "UnidentifiedImageError"))  # what PIL said
    assert errors[1:] == ["", ""]
    readable = [image for image in images if image is not None]
    assert [tuple(image.shape) for image in readable] == [(3, 40, 40), (3, 10, 12)]
    assert eval_pixels(readable, 16, DataSpec(path="/x").normalization).shape == (2, 3, 16, 16)


DEVICES = [CPU, *([torch.device("cuda")] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_host_images_reach_the_device_as_chw_views_of_one_buffer(device: torch.device) -> None:
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    tall = rng.integers(0, 256, (13, 5, 3), dtype=np.uint8)
    cropped = rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)[1:8, ::2]  # not contiguous
    moved = host_images_to_device([wide, tall, cropped], device)
    for image, view in zip([wide, tall, cropped], moved, strict=True):
        assert view.device.type == device.type
        assert torch.equal(view.cpu(), torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
    # One buffer: the images lie one after another in the storage of the first.
    assert {view.untyped_storage().data_ptr() for view in moved} == {moved[0].untyped_storage().data_ptr()}
    assert [view.storage_offset() for view in moved] == [0, wide.size, wide.size + tall.size]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs a GPU")
def test_nvjpeg_is_not_left_to_judge_a_jpeg_pil_refuses(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "jpegs", per_class=1, classes=1)
    good = (root / "c0" / "00.jpg").read_bytes()
    items = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in (good, _reserved_marker_in_scan(good))]
    images, errors = decode_images(items, torch.device("cuda"))
    assert images[0] is not None
    assert images[0].is_cuda
    assert images[1] is None
    assert errors[1].startswith("OSError"), errors[1]  # PIL's word, not nvJPEG's pixels


def test_preparing_one_batch_ahead_in_a_thread_gives_the_same_batches(tmp_path: Path) -> None:
    """The CUDA path prepares batches ahead in a helper thread; here the same thread logic runs on the CPU."""
    root = _write_folder(tmp_path / "jpegs")
    data = _data(root, val_path=str(root))
    split = load_split(data, 3, seed=0)
    inline = make_gpu_loader(split.train, EpochSampler(len(split.train), seed=2), 4, data, CPU, train=True)
    assert not inline.ahead  # on a CPU, batches are prepared inline
    ahead = DeviceLoader(inline.loader, inline.prepare, CPU, ahead=True)
    expected, got = list(inline), list(ahead)
    assert len(got) == len(expected) == 6
    for one, other in zip(expected, got, strict=True):
        assert torch.equal(one.images, other.images)
        assert torch.equal(one.labels, other.labels)

    before = threading.active_count()
    for _ in ahead:
        break  # the trainer stops early at maxStepsPerEpoch: the helper must end too
    assert threading.active_count() == before

    def failing(batch: object) -> object:
        raise DatasetError("bad batch")

    with pytest.raises(DatasetError, match="bad batch"):
        list(DeviceLoader(inline.loader, failing, CPU, ahead=True))
    assert threading.active_count() == before
