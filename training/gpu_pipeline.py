"""The gpu input pipeline (`data.pipeline: gpu`) in the training process: decode on the device, keep a batch whole
when one of its images is unreadable, then augment (training) or resize and normalise (evaluation, and serving).

Workers hand over encoded batches (gpu_data.py); `DeviceLoader` turns each into a `Batch` already on the device, so
`train_epoch` and `evaluate` run unchanged and their data-wait figure still means time spent waiting for input: on
CUDA a helper thread prepares the next batch while the current one trains, and the wait is for a batch not ready yet;
on a CPU (device cpu, as in the tests) batches are prepared inline and the wait includes preparing them.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Sampler
from torchvision.io import ImageReadMode, decode_jpeg

from modelyard.api.training_job import DataSpec, Normalization
from modelyard.training.data import Batch, Sample, SampleKey, make_loader
from modelyard.training.errors import DatasetError
from modelyard.training.gpu_augment import GpuAugment, full_boxes, normalize, resample, to_device
from modelyard.training.gpu_data import (
    TORCHVISION_DEPRECATION,
    EncodedBatch,
    EncodedDataset,
    collate_encoded,
    pil_rgb,
    whole_jpeg,
)


@functools.lru_cache(maxsize=8)
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    # From the high-priority pool: the low-priority one, which torch.cuda.Stream() and torchvision's decoder draw
    # from round-robin, would sooner or later hand out this same stream to code that queues kernels on it.
    return torch.cuda.Stream(device, priority=-1)  # type: ignore[no-untyped-call]


def decode_jpegs(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """One batched torchvision decode_jpeg (nvJPEG on CUDA) to RGB CHW uint8 on `device`. Like torchvision, it fails
    as a whole (RuntimeError) when any one image cannot be decoded."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCHVISION_DEPRECATION, category=DeprecationWarning)
        if device.type != "cuda":
            return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
        # nvJPEG writes its outputs from a stream of its own without waiting for the caller's, so the caching
        # allocator can hand it a block that queued kernels still read (pytorch/vision#9606). Allocate the outputs
        # on a side stream nothing else runs on, and keep them from reuse until the main stream is done with them.
        main = torch.cuda.current_stream(device)
        with torch.cuda.stream(_side_stream(device)):
            decoded = list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
        main.wait_stream(_side_stream(device))
        for image in decoded:
            image.record_stream(main)
        return decoded


def pixels_to_device(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """HWC pixels decoded on the host as a CHW view on `device`: copied as they lie, turned there for nothing."""
    return to_device(pixels, device).permute(2, 0, 1)


def host_images_to_device(images: Sequence[npt.NDArray[np.uint8]], device: torch.device) -> list[torch.Tensor]:
    """HWC uint8 images decoded on the host (the service's uploads) as CHW views on `device`. Each is copied once,
    into one staging buffer (pinned on CUDA), which crosses to the device in one copy: one transfer per batch, where
    pinning and sending image by image made one each, after a transposed copy."""
    sizes = [image.size for image in images]
    staging = torch.empty(sum(sizes), dtype=torch.uint8, pin_memory=device.type == "cuda")
    np.concatenate([image.reshape(-1) for image in images], out=staging.numpy())
    moved = torch.split(to_device(staging, device), sizes)
    return [part.view(image.shape).permute(2, 0, 1) for part, image in zip(moved, images, strict=True)]


def _pil(data: torch.Tensor, device: torch.device) -> tuple[torch.Tensor | None, str]:
    try:
        return pixels_to_device(pil_rgb(data.numpy().tobytes()), device), ""
    except (OSError, ValueError, SyntaxError) as error:
        return None, f"{type(error).__name__}: {error}"


def _decode_one(data: torch.Tensor, device: torch.device) -> tuple[torch.Tensor | None, str]:
    try:
        return decode_jpegs([data], device)[0], ""
    except RuntimeError:
        # PIL, the cpu path's decoder, has the last word on what counts as unreadable (nvJPEG and libjpeg refuse a
        # few rare JPEG flavours that PIL reads).
        return _pil(data, device)


def decode_images(
    items: Sequence[torch.Tensor], device: torch.device, *, checked: bool = False
) -> tuple[list[torch.Tensor | None], list[str]]:
    """Each item (encoded bytes 1-D, or HWC uint8 pixels) as CHW uint8 on `device`, None where it cannot be decoded,
    and one error per item ('' where it decoded). Whole JPEGs go through one batched call (when that fails, one by
    one to find the bad ones); anything else, a JPEG that is not `whole_jpeg` included, through PIL on the host.
    `checked`: the bytes are whole JPEGs already (the workers saw to it)."""
    images: list[torch.Tensor | None] = [None] * len(items)
    errors = [""] * len(items)
    jpegs = []
    for index, item in enumerate(items):
        if item.ndim == 3:
            images[index] = pixels_to_device(item, device)
        elif checked or whole_jpeg(item.numpy().tobytes()):
            jpegs.append(index)
        else:
            images[index], errors[index] = _pil(item, device)
    if not jpegs:
        return images, errors
    try:
        for index, image in zip(jpegs, decode_jpegs([items[index] for index in jpegs], device), strict=True):
            images[index] = image
    except RuntimeError:
        for index in jpegs:
            images[index], errors[index] = _decode_one(items[index], device)
    return images, errors


class Decoded(NamedTuple):
    images: list[torch.Tensor]  # CHW uint8 on the device, one per slot
    labels: torch.Tensor  # on the host
    bad: list[tuple[str, str]]  # (path, error) of the JPEGs that failed to decode


def decode_batch(batch: EncodedBatch, device: torch.device) -> Decoded:
    """The batch's images on the device. A slot whose JPEG cannot be decoded takes the next readable image of the
    batch (and its label), as the cpu path fills a bad image's slot, so the batch keeps its size and the processes
    of a distributed run stay in step; the bad file is reported for the BadImageTracker."""
    decoded, errors = decode_images(batch.items(), device, checked=True)
    readable = [index for index, image in enumerate(decoded) if image is not None]
    bad = [(batch.paths[index], errors[index]) for index, image in enumerate(decoded) if image is None]
    if not readable:
        raise DatasetError(
            f"no readable image in a batch of {len(decoded)}: "
            + "; ".join(f"{path} ({error})" for path, error in bad[:5])
        )
    labels = batch.labels
    if bad:
        labels = labels.clone()
        for index, image in enumerate(decoded):
            if image is None:
                donor = next((other for other in readable if other > index), readable[0])
                decoded[index] = decoded[donor]
                labels[index] = batch.labels[donor]
    images = [image for image in decoded if image is not None]
    return Decoded(images, labels, bad)


def eval_pixels(images: Sequence[torch.Tensor], image_size: int, normalization: Normalization) -> torch.Tensor:
    """Resize CHW uint8 images (on the device) to image_size x image_size and normalise: the gpu path's counterpart
    of `transforms.eval_transform`, (B, 3, S, S) float, channels_last."""
    return normalize(resample(images, full_boxes(images), image_size), normalization)


class TrainPreparation:
    def __init__(self, data: DataSpec, device: torch.device) -> None:
        self.augment = GpuAugment(data.image_size, data.augmentation, data.normalization)
        self.device = device

    def __call__(self, batch: EncodedBatch) -> Batch:
        if batch.params is None:
            raise ValueError("a training batch without augmentation parameters (its sampler gave no seeds)")
        decoded = decode_batch(batch, self.device)
        images = self.augment(decoded.images, batch.params, batch.noise_seed)
        return Batch(images, to_device(decoded.labels, self.device), [*batch.bad, *decoded.bad])


class EvalPreparation:
    def __init__(self, data: DataSpec, device: torch.device) -> None:
        self.image_size, self.normalization, self.device = data.image_size, data.normalization, device

    def __call__(self, batch: EncodedBatch) -> Batch:
        decoded = decode_batch(batch, self.device)
        images = eval_pixels(decoded.images, self.image_size, self.normalization)
        return Batch(images, to_device(decoded.labels, self.device), [*batch.bad, *decoded.bad])


_END = object()


class DeviceLoader:
    """Batches ready on the device from a DataLoader of encoded batches; what train_epoch and evaluate iterate.

    With `ahead` (on CUDA), a thread prepares the next batch on a stream of its own while the caller trains on the
    current one: nvJPEG's decode blocks its caller until done, and it then blocks a helper thread, not the thread that
    launches the training step. The caller's wait is then only for a batch that is not ready yet."""

    def __init__(
        self,
        loader: DataLoader[EncodedBatch],
        prepare: Callable[[EncodedBatch], Batch],
        device: torch.device,
        *,
        ahead: bool,
    ) -> None:
        self.loader, self.prepare, self.device, self.ahead = loader, prepare, device, ahead
        self._stream: torch.cuda.Stream | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        if not self.ahead:
            for batch in self.loader:
                yield self.prepare(batch)
            return
        ready: queue.Queue[Any] = queue.Queue(maxsize=1)
        stop = threading.Event()
        thread = threading.Thread(target=self._produce, args=(ready, stop), name="modelyard-gpu-input", daemon=True)
        thread.start()
        try:
            while (item := ready.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                batch, event = item
                if event is not None:  # the batch was made on the helper's stream: order it before our use
                    stream = torch.cuda.current_stream(self.device)
                    stream.wait_event(event)
                    batch.images.record_stream(stream)
                    batch.labels.record_stream(stream)
                yield batch
        finally:  # also when the caller stops early (maxStepsPerEpoch): let the helper see it and end
            stop.set()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    ready.get(timeout=0.05)
            thread.join()

    def _produce(self, ready: queue.Queue[Any], stop: threading.Event) -> None:
        def offer(item: Any) -> bool:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    ready.put(item, timeout=0.05)
                    return True
            return False

        try:
            stream = None
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)  # the current device is per thread
                if self._stream is None:  # one per loader: a new one each epoch would cycle through the pool
                    self._stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
                stream = self._stream
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                for raw in self.loader:
                    batch = self.prepare(raw)
                    event = torch.cuda.Event() if stream is not None else None  # type: ignore[no-untyped-call]
                    if event is not None:
                        event.record(stream)
                    if not offer((batch, event)):
                        return
            offer(_END)
        except BaseException as error:  # handed to the caller, raised there
            offer(error)


def make_gpu_loader(
    samples: Sequence[Sample],
    sampler: Sampler[SampleKey],
    batch_size: int,
    data: DataSpec,
    device: torch.device,
    *,
    train: bool,
) -> DeviceLoader:
    """The gpu path's loader of the training (augmented) or validation set, on `device`."""
    dataset = EncodedDataset(samples, data.augmentation if train else None, data.host_decode_share)
    loader = make_loader(
        dataset, sampler, batch_size, data.num_workers, train=train, pin=device.type == "cuda",
        collate_fn=collate_encoded,
    )  # fmt: skip
    prepare = TrainPreparation(data, device) if train else EvalPreparation(data, device)
    return DeviceLoader(loader, prepare, device, ahead=device.type == "cuda")
