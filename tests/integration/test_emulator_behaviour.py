"""More of what an operator relies on: status subresource, garbage collection, finalizers, patch types, field
validation, Events and server-side printing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kmock
import kubernetes
import pytest

from tests.conftest import REPO, KubernetesApi
from tests.support.clients import CustomObjects, configmap, minimal_training_job
from tests.support.emulator import api_client

pytestmark = pytest.mark.integration

TRAINING_JOB = minimal_training_job(labels={"team": "vision"})


def test_status_subresource_is_kept_apart(k8s_api: KubernetesApi) -> None:
    jobs = CustomObjects(k8s_api.client, "trainingjobs")
    created = jobs.create("default", {**TRAINING_JOB, "status": {"phase": "Succeeded"}})
    assert "status" not in created, "create ignores status"
    jobs.patch_status("default", "tj", {"status": {"phase": "Running"}, "spec": {"suspend": True}})
    after_status = jobs.get("default", "tj")
    assert after_status["status"]["phase"] == "Running"
    assert after_status["spec"]["suspend"] is False, "a status write changes only status"
    jobs.patch("default", "tj", {"status": {"phase": "Failed"}, "spec": {"suspend": True}})
    after_main = jobs.get("default", "tj")
    assert after_main["status"]["phase"] == "Running", "the main resource ignores status"
    assert after_main["spec"]["suspend"] is True


def test_deletion_cascades_to_dependents_and_orphan_keeps_them(k8s_api: KubernetesApi) -> None:
    jobs = CustomObjects(k8s_api.client, "trainingjobs")
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    for name in ("tj", "kept"):
        owner = jobs.create("default", {**TRAINING_JOB, "metadata": {"name": name}})
        reference = {
            "apiVersion": "modelyard.dev/v1alpha1",
            "kind": "TrainingJob",
            "name": name,
            "uid": owner["metadata"]["uid"],
        }
        child = configmap(f"{name}-child")
        child["metadata"]["ownerReferences"] = [reference]
        core.create_namespaced_config_map("default", child)
        grandchild = configmap(f"{name}-grandchild")
        made = core.read_namespaced_config_map(f"{name}-child", "default")
        grandchild["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": made.metadata.name, "uid": made.metadata.uid}
        ]
        core.create_namespaced_config_map("default", grandchild)

    jobs.delete("default", "tj")
    jobs.delete("default", "kept", propagation_policy="Orphan")
    remaining = {
        cm.metadata.name: cm.metadata.owner_references for cm in core.list_namespaced_config_map("default").items
    }
    assert set(remaining) == {"kept-child", "kept-grandchild"}
    assert remaining["kept-child"] is None, "orphaning removes the owner reference"


def test_finalizers_hold_deletion_until_removed(k8s_api: KubernetesApi) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    body = configmap("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_config_map("default", body)
    core.delete_namespaced_config_map("held", "default")
    marked = core.read_namespaced_config_map("held", "default")
    assert marked.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(kubernetes.client.ApiException) as gone:
        core.read_namespaced_config_map("held", "default")
    assert gone.value.status == 404


def test_strategic_merge_for_builtins_merges_lists_by_key_and_is_refused_for_custom_resources(
    k8s_api: KubernetesApi,
) -> None:
    apps = kubernetes.client.AppsV1Api(k8s_api.client)
    containers = [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": containers}},
    }}  # fmt: skip
    made = apps.create_namespaced_deployment("default", deployment)
    assert made.spec.replicas == 1  # server default
    patched = apps.patch_namespaced_deployment(
        "d", "default", {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}}
    )
    assert [(c.name, c.image) for c in patched.spec.template.spec.containers] == [("a", "a:1"), ("b", "b:2")]
    with k8s_api.http() as raw:
        refused = raw.patch(
            "/apis/modelyard.dev/v1alpha1/namespaces/default/trainingjobs/x",
            content=b"{}", headers={"Content-Type": "application/strategic-merge-patch+json"},
        )  # fmt: skip
    assert refused.status_code == 415


def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(k8s_api: KubernetesApi) -> None:
    body = {**TRAINING_JOB, "spec": {**TRAINING_JOB["spec"], "typo": 1}}
    path = "/apis/modelyard.dev/v1alpha1/namespaces/default/trainingjobs"
    with k8s_api.http() as raw:
        strict = raw.post(path, params={"fieldValidation": "Strict"}, json=body)
        assert strict.status_code == 400
        assert 'unknown field "spec.typo"' in strict.json()["message"]
        warned = raw.post(path, json=body)
        assert warned.status_code == 201
        assert "spec.typo" in warned.headers["Warning"]
        assert "typo" not in warned.json()["spec"]
        listed = raw.get(path)
        assert "Warning" not in listed.headers, "a warning does not leak into later responses"


def test_events_core_and_events_k8s_io_are_accepted_and_listable(k8s_api: KubernetesApi) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    events = kubernetes.client.EventsV1Api(k8s_api.client)
    involved = {"kind": "TrainingJob", "name": "tj", "namespace": "default", "apiVersion": "modelyard.dev/v1alpha1"}
    core.create_namespaced_event(
        "default",
        {"metadata": {"name": "e1"}, "involvedObject": involved, "reason": "Created", "message": "m", "type": "Normal"},
    )
    events.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e2"},
            "regarding": involved,
            "reason": "Promoted",
            "action": "Promote",
            "type": "Normal",
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "modelyard",
            "reportingInstance": "op",
        },
    )
    assert [e.reason for e in core.list_namespaced_event("default", field_selector="involvedObject.name=tj").items] == [
        "Created"
    ]
    assert [e.reason for e in events.list_namespaced_event("default").items] == ["Promoted"]


def test_table_printing_uses_the_crd_printer_columns(k8s_api: KubernetesApi) -> None:
    jobs = CustomObjects(k8s_api.client, "trainingjobs")
    jobs.create("default", TRAINING_JOB)
    jobs.patch_status("default", "tj", {"status": {"phase": "Running", "progress": {"epoch": 3, "totalEpochs": 10}}})
    with k8s_api.http() as raw:
        response = raw.get(
            "/apis/modelyard.dev/v1alpha1/namespaces/default/trainingjobs",
            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
        )
    table = response.json()
    assert response.headers["Content-Type"].startswith("application/json;as=Table")
    columns = [column["name"] for column in table["columnDefinitions"]]
    assert columns[:4] == ["Name", "Phase", "Epoch", "Of"]
    cells = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    assert (cells["Name"], cells["Phase"], cells["Epoch"], cells["Of"]) == ("tj", "Running", 3, 10)
    assert cells["Age"].endswith("s")


def test_delete_collection_by_label(k8s_api: KubernetesApi) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    for name, app in [("a", "x"), ("b", "y"), ("c", "x")]:
        core.create_namespaced_config_map("default", configmap(name, {"app": app}))
    core.delete_collection_namespaced_config_map("default", label_selector="app=x")
    assert [cm.metadata.name for cm in core.list_namespaced_config_map("default").items] == ["b"]


def test_watch_on_one_named_object(k8s_api: KubernetesApi) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    listed = core.list_namespaced_config_map("default")
    for name in ("mine", "other"):
        core.create_namespaced_config_map("default", configmap(name))
    with k8s_api.http() as raw:
        response = raw.get(
            "/api/v1/namespaces/default/configmaps/mine",
            params={"watch": "true", "resourceVersion": listed.metadata.resource_version, "timeoutSeconds": "1"},
        )
    events = [json.loads(line) for line in response.text.splitlines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "mine")]


@pytest.mark.slow
def test_the_emulator_runs_as_a_process_for_use_by_hand(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    command = [
        sys.executable,
        "-m",
        "tests.support.emulator",
        "--kubeconfig",
        str(kubeconfig),
        "--crds",
        "manifests/crds",
    ]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        try:
            assert process.stdout is not None
            first_line = process.stdout.readline()
            assert first_line.startswith("serving http://127.0.0.1:"), first_line
            client = api_client(kubeconfig)
            crds = kubernetes.client.ApiextensionsV1Api(client).list_custom_resource_definition().items
            names = sorted(crd.metadata.name for crd in crds)
            assert names == ["modeldeployments.modelyard.dev", "trainingjobs.modelyard.dev"]
            client.close()  # type: ignore[no-untyped-call]
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0


def test_kmock_reactions_inject_faults_ahead_of_the_emulator(k8s_api: KubernetesApi) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    configmaps = kmock.resource("", "v1", "configmaps")
    k8s_api.emulator[kmock.action.CREATE, configmaps][:1] << 503  # the next create only
    k8s_api.emulator[kmock.action.LIST, configmaps, kmock.namespace("broken")] << 500
    with pytest.raises(kubernetes.client.ApiException) as unavailable:
        core.create_namespaced_config_map("default", configmap("first"))
    assert unavailable.value.status == 503
    core.create_namespaced_config_map("default", configmap("second"))
    assert [cm.metadata.name for cm in core.list_namespaced_config_map("default").items] == ["second"]
    with pytest.raises(kubernetes.client.ApiException) as failing:
        core.list_namespaced_config_map("broken")
    assert failing.value.status == 500
