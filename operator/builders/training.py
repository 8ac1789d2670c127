"""A TrainingJob's children, built purely from the TrainingJob and the operator's Settings.

- a ConfigMap with the spec the trainer reads (`/etc/modelyard/spec.yaml`);
- a batch/v1 Job running `modelyard train`: one pod, or for numNodes > 1 an Indexed Job with one pod per node, whose
  pods find pod 0 through a headless Service (the trainer starts torchrun itself, with nnodes, nproc_per_node =
  gpusPerNode, node_rank = NODE_RANK and MASTER_ADDR = pod 0's DNS name, all set here);
- the headless Service (numNodes > 1 only).

Owner references are added by the apply layer. Golden files in tests/unit/golden/training pin the output down.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

import yaml

from modelyard.api import TrainingJob
from modelyard.operator import naming
from modelyard.operator.settings import Settings

# The Job fields that may change after creation (its pod template, selector and completions may not).
JOB_MUTABLE_PATHS = (
    "metadata.labels",
    "spec.suspend",
    "spec.backoffLimit",
    "spec.activeDeadlineSeconds",
    "spec.ttlSecondsAfterFinished",
)
# The ConfigMap holds the spec the Job was built from: it is written once and never changed (see handlers).
CONFIG_MAP_MUTABLE_PATHS = ("metadata.labels",)
TRAIN_COMMAND = ["modelyard", "train", "--config", f"{naming.SPEC_MOUNT_DIR}/{naming.SPEC_FILE_NAME}"]
# The trainer's exit codes for a bad config (2), a bad dataset (3) and a diverged loss (4): a retry cannot fix them, so
# the Job fails at once instead of burning its backoffLimit (modelyard.training.errors; a test keeps them equal).
UNRETRYABLE_EXIT_CODES = (2, 3, 4)


@dataclass(frozen=True)
class SpecProblem:
    """Something in a spec that passes the schema but cannot work in the cluster, and the field to blame."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class TrainerChildren:
    config_map: dict[str, Any]
    job: dict[str, Any]
    service: dict[str, Any] | None

    def in_creation_order(self) -> list[dict[str, Any]]:
        """The Job last: its pods need the ConfigMap and the Service's DNS names."""
        return [self.config_map, *([self.service] if self.service else []), self.job]


def _under(path: str, mount: str) -> bool:
    path = path.removeprefix("file://")
    return posixpath.normpath(path) == mount or posixpath.normpath(path).startswith(mount + "/")


def cluster_problems(tj: TrainingJob) -> list[SpecProblem]:
    """What the schema cannot see but the pods would trip over."""
    problems: list[SpecProblem] = []
    name = tj.metadata.name
    if len(name) > naming.MAX_TRAININGJOB_NAME_LENGTH or not naming.DNS_1035_LABEL.match(name):
        problems.append(
            SpecProblem(
                "metadata.name",
                f"{name!r} must be a lowercase RFC 1035 label (start with a letter) of at most "
                f"{naming.MAX_TRAININGJOB_NAME_LENGTH} characters: it names the Job, its pods' hostnames and the "
                "headless Service",
            )
        )
    spec = tj.spec
    for field, path in (
        ("output.storePath", spec.output.store_path),
        ("output.checkpointPath", spec.output.checkpoint_path),
    ):
        if not _under(path, naming.STORE_MOUNT_PATH):
            problems.append(
                SpecProblem(
                    f"spec.{field}",
                    f"{path!r} is outside {naming.STORE_MOUNT_PATH}, the only writable volume of the training pod "
                    "(where output.pvc is mounted)",
                )
            )
    if spec.data.pvc is not None:
        for field, data_path in (("data.path", spec.data.path), ("data.valPath", spec.data.val_path)):
            if data_path is not None and not _under(data_path, naming.DATA_MOUNT_PATH):
                problems.append(
                    SpecProblem(
                        f"spec.{field}",
                        f"{data_path!r} is outside {naming.DATA_MOUNT_PATH}, where data.pvc is mounted",
                    )
                )
    if spec.promotion is not None and spec.output.pvc is None:
        problems.append(
            SpecProblem(
                "spec.output.pvc",
                "promotion needs a model store that outlives the pod: set output.pvc to the volume the "
                f"ModelDeployment {spec.promotion.model_deployment!r} serves from",
            )
        )
    return problems


# libyaml's emitter and parser when PyYAML has them (its wheels do): the same text, about 3x (dump) and 9x (load)
# faster, which counts when a thousand TrainingJobs arrive at once or the operator resumes them all.
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def spec_yaml(tj: TrainingJob) -> str:
    """The spec as the trainer reads it: every default spelled out, so the run is reproducible from this file."""
    return yaml.dump(tj.spec.to_wire(), Dumper=SAFE_DUMPER, sort_keys=True)


def read_spec_yaml(text: str) -> Any:
    """The inverse of `spec_yaml` (the document, not yet validated)."""
    return yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - CSafeLoader or SafeLoader: safe either way


def build_config_map(tj: TrainingJob) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(tj, naming.spec_config_map_name(tj.metadata.name)),
        "data": {naming.SPEC_FILE_NAME: spec_yaml(tj)},
    }


def build_headless_service(tj: TrainingJob) -> dict[str, Any]:
    """Gives pod i the DNS name `<job>-i.<service>`; ready or not, so pod 0 is found while it waits for the rest."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(tj, naming.headless_service_name(tj.metadata.name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": naming.trainer_selector(tj.metadata.name),
            "ports": [{"name": "rendezvous", "port": naming.RENDEZVOUS_PORT, "targetPort": naming.RENDEZVOUS_PORT}],
        },
    }


def _metadata(tj: TrainingJob, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": tj.metadata.namespace, "labels": naming.trainer_labels(tj.metadata.name)}


def _environment(tj: TrainingJob, settings: Settings) -> list[dict[str, Any]]:
    name, spec = tj.metadata.name, tj.spec
    env: list[dict[str, Any]] = [
        {"name": "MODELYARD_TRAININGJOB_NAME", "value": name},
        {"name": "MODELYARD_TRAININGJOB_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {
            "name": "MODELYARD_CHECKPOINT_DIR",
            "value": naming.checkpoint_dir(spec.output.checkpoint_path, name, tj.metadata.uid),
        },
        {"name": "BENTOML_HOME", "value": spec.output.store_path},
        {"name": "MODELYARD_METRICS_PORT", "value": str(settings.trainer_metrics_port)},
        {"name": "MODELYARD_STATUS_REPORTING", "value": "kubernetes"},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
        {"name": "NO_ALBUMENTATIONS_UPDATE", "value": "1"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if spec.resources.num_nodes > 1:
        env += [
            {
                "name": "NODE_RANK",
                "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.annotations['{naming.JOB_COMPLETION_INDEX_ANNOTATION}']"}
                },
            },
            {"name": "MASTER_ADDR", "value": naming.rendezvous_host(name, tj.metadata.namespace or "default")},
            {"name": "MASTER_PORT", "value": str(naming.RENDEZVOUS_PORT)},
        ]
    return env


def _volumes(tj: TrainingJob) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spec = tj.spec
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": naming.spec_config_map_name(tj.metadata.name)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "spec", "mountPath": naming.SPEC_MOUNT_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": naming.SHM_MOUNT_PATH},
        {"name": "tmp", "mountPath": naming.TMP_MOUNT_PATH},
    ]
    if spec.data.pvc is not None:
        volumes.append(
            {"name": "data", "persistentVolumeClaim": {"claimName": spec.data.pvc.claim_name, "readOnly": True}}
        )
        mounts.append(_mount("data", naming.DATA_MOUNT_PATH, spec.data.pvc.sub_path, read_only=True))
    if spec.output.pvc is not None:
        volumes.append({"name": "store", "persistentVolumeClaim": {"claimName": spec.output.pvc.claim_name}})
        mounts.append(_mount("store", naming.STORE_MOUNT_PATH, spec.output.pvc.sub_path, read_only=False))
    else:
        # Without a volume the model lives as long as the pod; the root filesystem stays read-only regardless.
        volumes.append({"name": "store", "emptyDir": {}})
        mounts.append(_mount("store", naming.STORE_MOUNT_PATH, "", read_only=False))
    return volumes, mounts


def _mount(name: str, path: str, sub_path: str, *, read_only: bool) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": name, "mountPath": path, "readOnly": read_only}
    if sub_path:
        mount["subPath"] = sub_path
    return mount


def _container(tj: TrainingJob, settings: Settings) -> dict[str, Any]:
    resources = tj.spec.resources
    amounts: dict[str, Any] = {"cpu": resources.cpu, "memory": resources.memory}
    limits = dict(amounts)
    if resources.gpus_per_node:
        limits["nvidia.com/gpu"] = str(resources.gpus_per_node)
    _, mounts = _volumes(tj)
    container: dict[str, Any] = {
        "name": naming.TRAINER_CONTAINER,
        "image": resources.image or settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(TRAIN_COMMAND),
        "env": _environment(tj, settings),
        # Requests equal limits: Guaranteed QoS, so a training pod is the last to be evicted.
        "resources": {"requests": amounts, "limits": limits},
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    ports = []
    if settings.trainer_metrics_port:
        ports.append({"name": "metrics", "containerPort": settings.trainer_metrics_port})
    if resources.num_nodes > 1:
        ports.append({"name": "rendezvous", "containerPort": naming.RENDEZVOUS_PORT})
    if ports:
        container["ports"] = ports
    return container


def build_job(tj: TrainingJob, settings: Settings) -> dict[str, Any]:
    name, spec = tj.metadata.name, tj.spec
    resources, policy = spec.resources, spec.run_policy
    volumes, _ = _volumes(tj)
    uid = settings.trainer_run_as_user
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": resources.service_account_name or settings.trainer_service_account,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.trainer_termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(tj, settings)],
        "volumes": volumes,
    }
    if resources.node_selector:
        pod_spec["nodeSelector"] = dict(sorted(resources.node_selector.items()))
    if resources.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in resources.tolerations]
    if resources.priority_class_name:
        pod_spec["priorityClassName"] = resources.priority_class_name
    job_spec: dict[str, Any] = {
        "backoffLimit": policy.backoff_limit,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": naming.TRAINER_CONTAINER,
                        "operator": "In",
                        "values": list(UNRETRYABLE_EXIT_CODES),
                    },
                },
                # A preempted or drained pod is not the trainer's failure: retry without counting it (it resumes).
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "suspend": spec.suspend,
        "completions": resources.num_nodes,
        "parallelism": resources.num_nodes,
        "template": {"metadata": {"labels": naming.trainer_labels(name)}, "spec": pod_spec},
    }
    if resources.num_nodes > 1:
        job_spec["completionMode"] = "Indexed"
        pod_spec["subdomain"] = naming.headless_service_name(name)
    if policy.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = policy.active_deadline_seconds
    if policy.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = policy.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(tj, naming.job_name(name)),
        "spec": job_spec,
    }


def build_trainer_children(tj: TrainingJob, settings: Settings) -> TrainerChildren:
    """Everything one TrainingJob runs on."""
    return TrainerChildren(
        config_map=build_config_map(tj),
        job=build_job(tj, settings),
        service=build_headless_service(tj) if tj.spec.resources.num_nodes > 1 else None,
    )
