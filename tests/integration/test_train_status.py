"""A training run patches its own TrainingJob's status in the (emulated) API server: progress, metrics, the last
checkpoint and the model it saved, and nothing the operator owns."""

from __future__ import annotations

from pathlib import Path

import kubernetes
import pytest

from modelyard.api import GROUP, VERSION, TrainingJobStatus
from tests.conftest import KubernetesApi
from tests.integration.train_support import describe, digits, run_trainer, trainer_env, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_run_reports_progress_metrics_checkpoint_and_model_into_its_status(
    k8s_api: KubernetesApi, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dataset = digits(tmp_path_factory.getbasetemp())
    config = write_config(tmp_path / "job.yaml", dataset.train, tmp_path, training={"epochs": 2, "maxStepsPerEpoch": 3})
    objects = kubernetes.client.CustomObjectsApi(k8s_api.client)
    job = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": "digits-status", "namespace": "default"},
        "spec": {"data": {"path": str(dataset.train)}, "output": {"modelName": "digits"}},
    }
    objects.create_namespaced_custom_object(GROUP, VERSION, "default", "trainingjobs", job)
    # What the operator wrote before the pod started: the trainer must leave it alone.
    operator_status = {"status": {"phase": "Running", "jobName": "digits-status-train", "restarts": 1}}
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", "trainingjobs", "digits-status", operator_status
    )

    env = trainer_env(
        KUBECONFIG=str(k8s_api.kubeconfig),
        MODELYARD_STATUS_REPORTING="kubernetes",
        MODELYARD_TRAININGJOB_NAME="digits-status",
        MODELYARD_TRAININGJOB_NAMESPACE="default",
    )
    finished = run_trainer(config, env=env)
    assert finished.returncode == 0, describe(finished)
    assert not finished.of("warning"), finished.of("warning")  # no failed patch

    stored = objects.get_namespaced_custom_object(GROUP, VERSION, "default", "trainingjobs", "digits-status")
    status = TrainingJobStatus.model_validate(stored["status"])
    assert (status.phase, status.job_name, status.restarts) == ("Running", "digits-status-train", 1)
    assert status.progress is not None
    assert status.metrics is not None
    assert (status.progress.epoch, status.progress.total_epochs, status.progress.step) == (2, 2, 6)
    assert status.progress.percent == 100
    last_epoch = finished.of("epoch")[-1]
    assert status.metrics.val_accuracy == pytest.approx(last_epoch["valAccuracy"], abs=1e-6)
    assert status.metrics.val_loss == pytest.approx(last_epoch["valLoss"], abs=1e-6)
    assert status.metrics.best_epoch == last_epoch["bestEpoch"]
    assert status.last_checkpoint is not None
    assert status.last_checkpoint.epoch == 2
    assert status.last_checkpoint.uri == (tmp_path / "ckpt" / "digits-status" / "checkpoint-epoch-0002.pt").as_uri()
    assert status.model is not None
    assert (status.model.name, status.model.tag) == ("digits", finished.of("model_saved")[0]["tag"])
