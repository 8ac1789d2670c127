"""The proposal's network and where its pretrained weights come from (disk only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from modelyard.api.training_job import ModelSpec
from modelyard.training.errors import ConfigError
from modelyard.training.model import (
    FrozenBatchNorm2d,
    WeightsNotFoundError,
    build_model,
    resolve_weights,
    weights_candidates,
)

pytestmark = pytest.mark.unit


def _spec(**fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"backbone": "resnet18", "pretrained": False, **fields})


def test_maps_images_to_one_logit_per_class() -> None:
    model = build_model(_spec(numClasses=7, hiddenDim=64, attentionHeads=8)).eval()
    with torch.no_grad():
        logits = model(torch.randn(3, 3, 64, 64))
    assert logits.shape == (3, 7)
    assert model.attention.num_heads == 8
    assert model.attention.embed_dim == 64
    assert model.dropout.p == pytest.approx(0.3)


@pytest.mark.parametrize(("backbone", "channels"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_projects_each_backbone_to_the_hidden_width(backbone: str, channels: int) -> None:
    model = build_model(_spec(backbone=backbone, hiddenDim=32, attentionHeads=4))
    assert model.project.in_channels == channels
    assert model.project.out_channels == 32


def test_attention_looks_across_the_spatial_tokens() -> None:
    """Changing one corner of the input changes every other token's output: the tokens attend to each other."""
    model = build_model(_spec(hiddenDim=32, attentionHeads=4)).eval()
    images = torch.randn(1, 3, 128, 128)
    changed = images.clone()
    changed[..., :32, :32] += 5
    with torch.no_grad():
        tokens = model.project(model.features(images)).flatten(2).transpose(1, 2)
        attended = model.attention(tokens, tokens, tokens, need_weights=False)[0]
        tokens2 = model.project(model.features(changed)).flatten(2).transpose(1, 2)
        attended2 = model.attention(tokens2, tokens2, tokens2, need_weights=False)[0]
    assert tokens.shape[1] == 16  # a 4x4 feature map
    # The last token's own features barely change (far corner), but attention mixes in the changed one.
    assert not torch.allclose(attended[0, -1], attended2[0, -1], atol=1e-4)


def test_pretrained_weights_come_from_the_file_the_spec_names(tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model(_spec(pretrained=True, weights=path.as_uri()))
    assert torch.equal(model.features.conv1.weight, reference.conv1.weight)
    assert torch.equal(model.features.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_a_backbone_only_state_dict_is_accepted(tmp_path: Path) -> None:
    state = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items() if not k.startswith("fc")}
    torch.save(state, tmp_path / "backbone.pth")
    model = build_model(_spec(pretrained=True, weights=str(tmp_path / "backbone.pth")))
    assert torch.equal(model.features.conv1.weight, state["conv1.weight"])


def test_weights_of_another_network_are_refused(tmp_path: Path) -> None:
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ConfigError, match=r"does not match a torchvision ResNet: missing \[\], unexpected \['layer1.2"):
        build_model(_spec(pretrained=True, weights=str(tmp_path / "r34.pth")))


def test_the_torchvision_cache_is_used_when_no_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), cached)
    assert resolve_weights(_spec(pretrained=True)) == cached


def test_a_missing_cache_file_is_an_error_that_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    candidates = weights_candidates("resnet50")
    assert [path.name for path in candidates] == ["resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"]  # default first
    with pytest.raises(WeightsNotFoundError) as raised:
        build_model(ModelSpec())  # the proposal's default: pretrained resnet50
    message = str(raised.value)
    assert all(str(path) in message for path in candidates)
    assert "model.pretrained=false" in message
    assert isinstance(raised.value, ConfigError)


def test_a_missing_named_file_and_a_remote_uri_are_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match=f"no such file {tmp_path / 'absent.pth'}"):
        build_model(_spec(pretrained=True, weights=str(tmp_path / "absent.pth")))
    with pytest.raises(WeightsNotFoundError, match="nothing is downloaded at run time"):
        build_model(_spec(pretrained=True, weights="https://example.org/r18.pth"))


def test_serving_builds_without_looking_for_pretrained_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build_model(_spec(pretrained=True), load_pretrained=False)  # no file anywhere, and no error
    assert model.classifier.out_features == _spec().num_classes


def _pretrained_file(path: Path) -> Path:
    """resnet18 weights whose BatchNorm layers hold statistics and scales other than a fresh network's."""
    torch.manual_seed(5)
    resnet = torchvision.models.resnet18(weights=None)
    for module in resnet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    torch.save(resnet.state_dict(), path)
    return path


def test_frozen_batch_norm_keeps_the_pretrained_values_through_a_training_step(tmp_path: Path) -> None:
    spec = _spec(pretrained=True, weights=str(_pretrained_file(tmp_path / "r18.pth")), freezeBatchNorm=True,
                 hiddenDim=32, attentionHeads=4)  # fmt: skip
    model = build_model(spec).train()
    norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    assert len(norms) == 20
    assert all(isinstance(module, FrozenBatchNorm2d) for module in norms)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert not any(".bn" in key or "downsample.1" in key or key.startswith("features.1.") for key in changed)
    assert "features.conv1.weight" in changed
    assert "classifier.weight" in changed
    assert not any(module.training for module in norms)  # model.train() left them normalising with stored values


def test_a_model_trained_with_frozen_batch_norm_loads_into_the_plain_network(tmp_path: Path) -> None:
    frozen = build_model(_spec(pretrained=True, weights=str(_pretrained_file(tmp_path / "r18.pth")),
                               freezeBatchNorm=True, hiddenDim=32, attentionHeads=4))  # fmt: skip
    plain = build_model(_spec(hiddenDim=32, attentionHeads=4), load_pretrained=False)
    plain.load_state_dict(frozen.state_dict())  # strict: the same keys, num_batches_tracked included
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(plain.eval()(images), frozen.eval()(images))
        # In train mode only dropout differs: with it off, a frozen network computes what it serves (up to the
        # rounding of attention's inference fast path).
        frozen.dropout.p = 0.0
        torch.testing.assert_close(frozen.train()(images), plain(images))
