"""The model's forward pass replayed from CUDA graphs, one graph per batch size bucket.

An eager ResNet-50 forward launches a few hundred kernels, each a Python call: at small batches the GPU waits for
the host, and the batch call holds the worker's CPU (and, between kernels, the GIL its event loop needs) for
milliseconds. A graph replays the same kernels in one call. Graphs have fixed shapes, so a batch is padded to the
next power of two (the padding rows are computed and dropped: in eval mode the rows of a batch do not interact) and
a batch above the largest bucket runs in chunks. The graphs share one memory pool and replay under a lock, one at a
time, so the pool holds the activations of one batch, the largest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]


def batch_buckets(largest: int) -> tuple[int, ...]:
    """Batch sizes with a graph: powers of two from 1 to the first at or above `largest`."""
    if largest < 1:
        raise ValueError(f"the largest batch must be at least 1, not {largest}")
    sizes = [1]
    while sizes[-1] < largest:
        sizes.append(sizes[-1] * 2)
    return tuple(sizes)


def bucket_for(rows: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds `rows` (at most the largest: more rows run in chunks of it)."""
    return next((size for size in buckets if size >= rows), buckets[-1])


class GraphedForward:
    """`forward` (a pure function of its input batch, run under inference mode) captured once per bucket for inputs
    of `item_shape` on a CUDA device; called like `forward` with batches of any size."""

    def __init__(
        self,
        forward: Forward,
        item_shape: tuple[int, ...],
        largest: int,
        device: torch.device,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {device}")
        self.buckets = batch_buckets(largest)
        self._lock = threading.Lock()
        self._inputs: dict[int, torch.Tensor] = {}
        self._outputs: dict[int, torch.Tensor] = {}
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        with torch.inference_mode():
            # Largest first: the smaller graphs then fit in the memory the first one reserved.
            for size in reversed(self.buckets):
                batch = torch.zeros((size, *item_shape), device=device).contiguous(memory_format=memory_format)
                # Warm-up outside the capture: cuDNN picks its algorithms and the allocator its blocks.
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for _ in range(2):
                        forward(batch)
                torch.cuda.current_stream(device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    self._outputs[size] = forward(batch)
                self._inputs[size], self._graphs[size] = batch, graph
        torch.cuda.synchronize(device)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        largest = self.buckets[-1]
        if batch.shape[0] > largest:
            return torch.cat([self(batch[start : start + largest]) for start in range(0, batch.shape[0], largest)])
        rows = batch.shape[0]
        size = bucket_for(rows, self.buckets)
        with self._lock, torch.inference_mode():
            self._inputs[size][:rows].copy_(batch)
            self._graphs[size].replay()
            # A copy: the next replay overwrites the graph's output.
            return self._outputs[size][:rows].clone()
