"""The proposal's network: a torchvision ResNet, multi-head self-attention over its feature map, dropout, a classifier.

Pretrained backbone weights come only from disk (spec.weights, or the torchvision cache): nothing is downloaded at
run time, and a missing file is an error that says where it looked.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Self
from urllib.parse import unquote, urlparse

import torch
import torchvision
from torch import nn

from modelyard.api.training_job import ModelSpec
from modelyard.training.errors import ConfigError


class WeightsNotFoundError(ConfigError, FileNotFoundError):
    """The pretrained backbone weights are not on disk where the spec says (or in the torchvision cache)."""


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that always normalises with its stored statistics and is never trained: `train()` leaves it in
    eval mode. Unlike torchvision's FrozenBatchNorm2d it keeps BatchNorm2d's state dict, so a model trained with it
    loads into the plain network that serving builds, and vice versa."""

    def __init__(self, source: nn.BatchNorm2d) -> None:
        super().__init__(source.num_features, eps=source.eps, momentum=source.momentum, affine=source.affine)
        self.load_state_dict(source.state_dict())
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> Self:
        return super().train(False)


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm2d replaced by a FrozenBatchNorm2d holding the same values (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, FrozenBatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child))
        else:
            freeze_batch_norm(child)
    return module


class AttentionClassifier(nn.Module):
    """ResNet features → 1x1 projection to hidden_dim → self-attention over the HxW tokens (residual + LayerNorm)
    → mean pooling → dropout → linear logits. Softmax is left to inference."""

    def __init__(self, features: nn.Module, feature_channels: int, spec: ModelSpec) -> None:
        super().__init__()
        self.features = features
        self.project = nn.Conv2d(feature_channels, spec.hidden_dim, kernel_size=1)
        self.attention = nn.MultiheadAttention(spec.hidden_dim, spec.attention_heads, batch_first=True)
        self.norm = nn.LayerNorm(spec.hidden_dim)
        self.dropout = nn.Dropout(spec.dropout_rate)
        self.classifier = nn.Linear(spec.hidden_dim, spec.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature_map = self.project(self.features(images))
        tokens = feature_map.flatten(2).transpose(1, 2)  # (batch, height*width, hidden_dim)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        tokens = self.norm(tokens + attended)
        logits: torch.Tensor = self.classifier(self.dropout(tokens.mean(dim=1)))
        return logits


def weights_candidates(backbone: str) -> list[Path]:
    """Files in the torchvision cache that hold this backbone's ImageNet weights, the default first."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    enum = torchvision.models.get_model_weights(backbone)
    ordered = [enum.DEFAULT, *(member for member in enum if member is not enum.DEFAULT)]
    return [cache / Path(urlparse(member.url).path).name for member in ordered]


def resolve_weights(spec: ModelSpec) -> Path:
    """The local file of the pretrained backbone, or WeightsNotFoundError naming every place looked at."""
    if spec.weights:
        parsed = urlparse(spec.weights)
        if parsed.scheme not in ("", "file"):
            raise WeightsNotFoundError(
                f"model.weights must be a local path or file:// URI (nothing is downloaded at run time): {spec.weights}"
            )
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(spec.weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"model.weights: no such file {path}")
        return path
    candidates = weights_candidates(spec.backbone.value)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise WeightsNotFoundError(
        f"pretrained weights for {spec.backbone.value} not found; looked for {looked} (the torchvision cache, "
        f"$TORCH_HOME/hub/checkpoints). Put the file there, set model.weights to a local file, "
        f"or set model.pretrained=false."
    )


def _load_backbone_weights(resnet: nn.Module, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ConfigError(f"model.weights: {path} does not hold a state dict")
    missing, unexpected = resnet.load_state_dict(state, strict=False)
    # The ImageNet classifier (fc) is replaced anyway, so a backbone-only file is fine; anything else is not.
    missing = [key for key in missing if not key.startswith("fc.")]
    if missing or unexpected:
        raise ConfigError(
            f"model.weights: {path} does not match a torchvision {type(resnet).__name__}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )


def build_model(spec: ModelSpec, *, load_pretrained: bool = True) -> AttentionClassifier:
    """The classifier described by `spec`. Pretrained weights are loaded when the spec asks and `load_pretrained` is
    true (serving passes false: the trained state dict replaces every weight anyway)."""
    resnet = torchvision.models.get_model(spec.backbone.value, weights=None)
    if spec.pretrained and load_pretrained:
        _load_backbone_weights(resnet, resolve_weights(spec))
    feature_channels: int = resnet.fc.in_features
    # Everything up to the last residual stage; the ImageNet pooling and classifier are replaced by attention.
    features = nn.Sequential(
        OrderedDict((name, child) for name, child in resnet.named_children() if name not in ("avgpool", "fc"))
    )
    if spec.freeze_batch_norm:
        freeze_batch_norm(features)
    return AttentionClassifier(features, feature_channels, spec)


def parameters_digest(model: nn.Module) -> str:
    """sha256 of the parameters: equal on every rank when DDP kept them in step."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()
