"""The kustomize base (manifests/base) is the chart rendered with its defaults, current, and renders with the real
kubectl into objects that pass strict Kubernetes validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.kube_tools import NAMESPACE, REPO_ROOT, helm_template_args, run, tool

pytestmark = pytest.mark.integration

BASE = REPO_ROOT / "manifests" / "base"
RENDER_FLAGS = ["--include-crds", "--skip-tests"]


def test_base_is_the_charts_current_rendering() -> None:
    fresh = run(helm_template_args(extra=RENDER_FLAGS)).stdout
    command = " ".join(["helm", *helm_template_args(extra=RENDER_FLAGS)[1:]]).replace(str(REPO_ROOT) + "/", "")
    assert (BASE / "modelyard.yaml").read_text() == fresh, (
        f"manifests/base is stale: run {command} > manifests/base/modelyard.yaml"
    )
    assert command in (BASE / "kustomization.yaml").read_text(), "the kustomization must name the command that makes it"


def test_kustomize_renders_valid_objects(tmp_path: Path) -> None:
    text = run([tool("kubectl"), "kustomize", str(BASE)]).stdout
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("CustomResourceDefinition", "trainingjobs.modelyard.dev"),
        ("CustomResourceDefinition", "modeldeployments.modelyard.dev"),
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("ClusterRole", "modelyard-operator"),
        ("ClusterRoleBinding", "modelyard-operator"),
        ("ServiceAccount", "modelyard"),
        ("Deployment", "modelyard-operator"),
        ("Service", "modelyard-metrics"),
        ("Namespace", NAMESPACE),
    } <= kinds
    assert not any(o["kind"] == "Pod" for o in objects), "the helm test pod has no place in the base"
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize", obj["metadata"]["name"]
        if obj["kind"] in {"Deployment", "Service", "ServiceAccount", "NetworkPolicy"}:
            assert obj["metadata"]["namespace"] == NAMESPACE
    rendered = tmp_path / "base.yaml"
    rendered.write_text(text)
    done = run([tool("kubernetes-validate"), "--strict", str(rendered)], check=False)
    assert done.returncode == 0, done.stdout
    assert "WARN" not in done.stdout, done.stdout
