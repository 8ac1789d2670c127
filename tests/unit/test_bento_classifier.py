"""The service's Classifier preprocesses as the stored model was validated, and runs in the precision it resolves.

A model trained on the cpu pipeline gets exactly `eval_transform`; one trained on the gpu pipeline gets that
pipeline's own evaluation preprocessing (`eval_pixels`), which stays within a uint8 level of `eval_transform`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch

from modelyard.api.training_job import InputPipeline, Precision, TrainingJobSpec
from modelyard.bento.runtime import Classifier
from modelyard.training.data import read_rgb
from modelyard.training.export import load_from_store, save_to_store
from modelyard.training.gpu_pipeline import eval_pixels
from modelyard.training.model import build_model
from modelyard.training.transforms import eval_transform

pytestmark = [
    pytest.mark.unit,
    # Importing bentoml (to save the model) reaches pathspec's deprecated pattern class; not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*"),
]

CPU = torch.device("cpu")
PHOTOS = Path(sklearn.datasets.__file__).parent / "images"  # real photographs (JPEG) that scikit-learn ships
IMAGE_SIZE = 64


def _stored(home: Path, pipeline: InputPipeline) -> Classifier:
    spec = TrainingJobSpec.model_validate(
        {
            "model": {"backbone": "resnet18", "pretrained": False, "numClasses": 3, "hiddenDim": 16},
            "data": {"path": "/data/none", "imageSize": IMAGE_SIZE, "pipeline": pipeline.value},
            "output": {"modelName": f"photos-{pipeline.value}"},
        }
    )
    torch.manual_seed(0)
    tag = save_to_store(
        build_model(spec.model, load_pretrained=False),
        spec=spec,
        class_names=["a", "b", "c"],
        metrics={},
        dataset_digest="sha256:test",
        training_job=None,
        store=home,
    )
    return Classifier(load_from_store(tag, CPU, store=home), CPU)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    # Two sizes: the gpu path resizes each shape with its own sampling grid.
    china, flower = (read_rgb(PHOTOS / name) for name in ("china.jpg", "flower.jpg"))
    return [china, np.ascontiguousarray(flower[:300, :200])]


def test_a_cpu_pipeline_model_is_served_with_eval_transform(tmp_path: Path, photos: list[np.ndarray]) -> None:
    classifier = _stored(tmp_path, InputPipeline.CPU)
    assert classifier.info.pipeline is InputPipeline.CPU
    transform = eval_transform(IMAGE_SIZE, classifier.info.normalization)
    assert torch.equal(classifier.inputs(photos), torch.stack([transform(photo) for photo in photos]))


def test_a_gpu_pipeline_model_is_served_with_that_pipelines_eval_preprocessing(
    tmp_path: Path, photos: list[np.ndarray]
) -> None:
    classifier = _stored(tmp_path, InputPipeline.GPU)
    assert classifier.info.pipeline is InputPipeline.GPU
    served = classifier.inputs(photos)
    chw = [torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1))) for photo in photos]
    assert torch.equal(served, eval_pixels(chw, IMAGE_SIZE, classifier.info.normalization))
    # Within a uint8 level (in normalised units: 1/255 over the smallest std) of the cpu path.
    transform = eval_transform(IMAGE_SIZE, classifier.info.normalization)
    reference = torch.stack([transform(photo) for photo in photos])
    level = 1 / 255 / min(classifier.info.normalization.std)
    assert served.shape == reference.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert float((served - reference).abs().max()) <= 1.01 * level
    probabilities = classifier.probabilities(photos)
    assert probabilities.shape == (2, 3)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2))


def test_precision_resolves_as_the_trainers(tmp_path: Path, photos: list[np.ndarray]) -> None:
    fp32 = _stored(tmp_path, InputPipeline.CPU)
    assert (fp32.precision, fp32.dtype) == (Precision.FP32, None)  # auto on a CPU
    bf16 = Classifier(load_from_store(fp32.tag, CPU, store=tmp_path), CPU, Precision.BF16)
    assert (bf16.precision, bf16.dtype) == (Precision.BF16, torch.bfloat16)
    # The same model, two precisions: the answers are close, not equal (bf16 keeps 8 bits of mantissa).
    exact, reduced = fp32.probabilities(photos), bf16.probabilities(photos)
    assert not torch.equal(exact, reduced)
    assert torch.allclose(exact, reduced, atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_answer_as_the_eager_model(tmp_path: Path, photos: list[np.ndarray]) -> None:
    tag = _stored(tmp_path, InputPipeline.GPU).tag
    cuda = torch.device("cuda")
    eager = Classifier(load_from_store(tag, cuda, store=tmp_path), cuda)
    graphed = Classifier(load_from_store(tag, cuda, store=tmp_path), cuda, graph_batches=4)
    assert graphed.forward is not graphed._eager_forward
    # 1, 2 and 6 images: a bucket each, and 6 in two chunks (4 + 2) where eager runs one batch of 6. In bf16 another
    # batch size runs other kernels: the same image's probabilities from batches of 2 and of 4 or 6 differed by up to
    # 1.5e-3 on an H100 (2026-12-05), so the tolerance is a few bf16 steps, not float32's.
    for batch in (photos[:1], photos, photos * 3):
        assert torch.allclose(graphed.probabilities(batch), eager.probabilities(batch), atol=4e-3)
