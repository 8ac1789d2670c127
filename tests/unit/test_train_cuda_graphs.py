"""training.cudaGraphs: the recipe picks torch.compile's graph-replaying mode; on a GPU, the graphed step trains the
same weights as the compiled step it replaces (bench/cuda_graphs_check.py compares more cases: fp16, DDP)."""

from __future__ import annotations

import pytest
import torch

from modelyard.api.training_job import ModelSpec, Precision, TrainingSpec
from modelyard.training.data import BadImageTracker, Batch
from modelyard.training.distributed import Distributed
from modelyard.training.loop import compile_mode, prepare_trainee, train_epoch
from modelyard.training.model import build_model

pytestmark = pytest.mark.unit


def test_only_cuda_graphs_change_the_compile_mode() -> None:
    assert compile_mode(TrainingSpec(cuda_graphs=True, compile=True)) == "reduce-overhead"
    assert compile_mode(TrainingSpec(compile=True)) is None  # torch.compile's default mode: no graphs


def _train(graphs: bool, steps: int = 4) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The weights before and after `steps` bf16 steps from the same seed on the same batches."""
    torch._dynamo.reset()  # a fresh compile and graph tree, as a new process would have
    torch.manual_seed(0)
    model = build_model(
        ModelSpec(backbone="resnet18", pretrained=False, num_classes=4, hidden_dim=32, attention_heads=4)
    )
    initial = [parameter.detach().clone() for parameter in model.parameters()]
    training = TrainingSpec(batch_size=16, warmup_epochs=0, precision=Precision.BF16, compile=True, cuda_graphs=graphs)
    context = Distributed(0, 1, 0, torch.device("cuda", 0))
    trainee, _ = prepare_trainee(model, training, context, steps)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(steps, 16, 3, 32, 32, generator=generator).cuda()
    labels = torch.randint(0, 4, (steps, 16), generator=generator).cuda()
    batches = [Batch(images[step], labels[step], []) for step in range(steps)]
    tracker = BadImageTracker(10**9, 1.0, lambda path, error: None)
    train_epoch(
        trainee, batches, epoch=0, first_step=0, training=training, max_steps=steps, context=context,
        bad_images=tracker, on_step=lambda report: None,
    )  # fmt: skip
    # On the host, where `initial` was taken (the model is built there and moved by prepare_trainee).
    return initial, [parameter.detach().cpu() for parameter in model.parameters()]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_the_graphed_step_trains_the_weights_the_compiled_step_trains() -> None:
    initial, compiled = _train(graphs=False)
    _, graphed = _train(graphs=True)
    assert any(not torch.equal(before, after) for before, after in zip(initial, compiled, strict=True))
    # Bit for bit on the H100 (2026-12-05); a little room for cuDNN picking other kernels in another run.
    torch.testing.assert_close(graphed, compiled, rtol=1e-3, atol=1e-5)
