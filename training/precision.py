"""Mixed precision, one rule for training and serving: auto is bf16 on a GPU that has it (no loss scaler needed,
fp32's range), fp32 elsewhere; fp16 trains with a gradient scaler."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from modelyard.api.training_job import Precision


def resolve_precision(requested: Precision, device: torch.device) -> Precision:
    """auto: bf16 on GPUs that support it, else fp32."""
    if requested is not Precision.AUTO:
        return requested
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return Precision.BF16
    return Precision.FP32


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    return {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}.get(precision)


def make_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 do not need it."""
    return torch.amp.GradScaler(device.type) if precision is Precision.FP16 else None


def autocast(
    device: torch.device, dtype: torch.dtype | None, *, cache_enabled: bool = True
) -> contextlib.AbstractContextManager[Any]:
    """`cache_enabled=False` for a forward pass captured in a CUDA graph: the cast weights autocast caches are freed
    when the context exits, and the graph would go on reading them."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache_enabled)
