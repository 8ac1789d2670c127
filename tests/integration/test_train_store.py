"""The model saved into the BentoML store loads back (as the Bento service loads it) and predicts exactly what the
trained model in memory predicts, on unseen digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelyard.training.config import load_config
from modelyard.training.data import read_rgb
from modelyard.training.export import load_from_store
from modelyard.training.trainer import run_training
from modelyard.training.transforms import eval_transform
from tests.integration.train_support import digits, in_process_run, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_stored_model_predicts_what_the_trained_one_does(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dataset = digits(tmp_path_factory.getbasetemp())
    config = load_config(
        write_config(tmp_path / "job.yaml", dataset.train, tmp_path, training={"epochs": 1, "maxStepsPerEpoch": 8})
    )
    run = in_process_run(tmp_path, "store-test")
    result = run_training(config, run)
    assert result.model is not None
    assert result.model_tag is not None
    assert result.model_tag.startswith("digits:")

    loaded = load_from_store(result.model_tag, "cpu", store=tmp_path / "store")
    assert not loaded.module.training
    assert loaded.info.class_names == result.class_names
    preprocess = eval_transform(loaded.info.image_size, loaded.info.normalization)
    images = torch.stack([preprocess(read_rgb(path)) for path in sorted(dataset.held_out.rglob("*.png"))[:64]])
    with torch.no_grad():
        in_memory = result.model(images)
        from_store = loaded.module(images)
    # The same weights through the same kernels: identical logits, so identical predictions.
    assert torch.equal(in_memory, from_store)
    assert len(set(from_store.argmax(dim=1).tolist())) > 1  # a model that answers one class would pass trivially
    assert loaded.info.training_job == "ml/store-test"

    # The known input the service checks before it reports ready: stored losslessly, and the model gets it right.
    import json

    from bentoml import models

    from modelyard.training.export import INFO_FILE, WARMUP_FILE, _model_store

    folder = Path(models.get(result.model_tag, _model_store=_model_store(tmp_path / "store")).path)
    warmup = json.loads((folder / INFO_FILE).read_text())["warmup"]
    assert warmup["file"] == WARMUP_FILE
    pixels = read_rgb(folder / WARMUP_FILE)
    with torch.no_grad():
        answer = loaded.module(preprocess(pixels).unsqueeze(0)).argmax(dim=1).item()
    assert result.class_names[answer] == warmup["className"]
