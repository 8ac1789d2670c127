"""CUDA graphs of the service's forward pass: the batch-size buckets everywhere; on a GPU, that a graphed forward
answers what the eager one answers, for every batch size up to above the largest bucket (chunks)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelyard.bento.graphs import GraphedForward, batch_buckets, bucket_for

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("largest", "expected"), [(1, (1,)), (2, (1, 2)), (32, (1, 2, 4, 8, 16, 32)), (33, (1, 2, 4, 8, 16, 32, 64))]
)
def test_buckets_are_powers_of_two_up_to_the_largest_batch(largest: int, expected: tuple[int, ...]) -> None:
    assert batch_buckets(largest) == expected


def test_a_batch_takes_the_smallest_bucket_that_holds_it() -> None:
    buckets = batch_buckets(32)
    assert [bucket_for(rows, buckets) for rows in (1, 2, 3, 5, 17, 32, 40)] == [1, 2, 4, 8, 32, 32, 32]


def test_no_buckets_for_an_empty_batch_size() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        batch_buckets(0)


def test_graphs_need_a_cuda_device() -> None:
    with pytest.raises(ValueError, match="need a CUDA device"):
        GraphedForward(nn.Identity(), (3, 8, 8), 4, torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graphed_forward_answers_as_the_eager_one() -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    model = model.to(device).eval()
    with torch.inference_mode():
        model(torch.zeros(1, 3, 16, 16, device=device))  # materialise the lazy layer

    def eager(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = model(batch)
        return out

    graphed = GraphedForward(eager, (3, 16, 16), 8, device)
    for rows in (1, 3, 8, 13):
        batch = torch.randn(rows, 3, 16, 16, device=device)
        torch.testing.assert_close(graphed(batch), eager(batch))
    # The answer is the caller's: a later replay does not change it.
    first = torch.randn(2, 3, 16, 16, device=device)
    answer = graphed(first)
    graphed(torch.randn(2, 3, 16, 16, device=device))
    torch.testing.assert_close(answer, eager(first))
