"""A real kopf process with a minimal handler, against the emulator started as a server (issue 2, "Done when")."""

from __future__ import annotations

import kubernetes
import pytest

from tests.conftest import KubernetesApi, RunOperator
from tests.support.clients import CustomObjects
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAINING_JOB = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "flowers"},
    "spec": {
        "data": {"path": "/data/flowers"},
        "output": {"modelName": "flowers"},
        "training": {"epochs": 3},
    },
}


def test_kopf_handler_creates_an_owned_child_and_patches_status(
    k8s_api: KubernetesApi, run_operator: RunOperator
) -> None:
    jobs = CustomObjects(k8s_api.client, "trainingjobs")
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    command = ["kopf", "run", "--standalone", "--namespace", "default", "tests/support/minimal_operator.py"]
    with run_operator(command, watching=["trainingjobs"]) as operator:
        created = jobs.create("default", TRAINING_JOB)

        child = eventually(lambda: core.read_namespaced_config_map("flowers-spec", "default"))
        status = eventually(lambda: jobs.get("default", "flowers").get("status", {}).get("phase"))
        assert status == "Pending", operator.logs
        events = eventually(
            lambda: core.list_namespaced_event("default", field_selector="involvedObject.name=flowers").items
        )
        assert any(event.reason == "Created" for event in events), operator.logs

    owner = child.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("TrainingJob", "flowers", created["metadata"]["uid"])
    assert owner.controller is True
    assert child.data == {"epochs": "3"}
    stored = jobs.get("default", "flowers")
    assert stored["status"]["conditions"][0]["type"] == "Created"
    assert stored["metadata"]["generation"] == 1, "status patches must not bump the generation"

    # Deleting the owner removes the child (background cascade by ownerReferences).
    jobs.delete("default", "flowers")
    with pytest.raises(kubernetes.client.ApiException) as gone:
        core.read_namespaced_config_map("flowers-spec", "default")
    assert gone.value.status == 404
