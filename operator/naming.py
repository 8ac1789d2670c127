"""Names, labels and annotations of everything the operator creates: the one place they are spelled.

Children of a TrainingJob or ModelDeployment carry the `app.kubernetes.io/*` recommended labels plus a
`modelyard.dev/*` label naming their owner, so that dashboards, selectors and the operator's own watches agree.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

from modelyard.api import GROUP

PART_OF = "modelyard"
MANAGED_BY = "modelyard"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_TRAINING_JOB = f"{GROUP}/training-job"
LABEL_MODEL_DEPLOYMENT = f"{GROUP}/model-deployment"
LABEL_REVISION = f"{GROUP}/revision"

# Lineage: the TrainingJob a ModelDeployment's model was promoted from.
ANNOTATION_PROMOTED_FROM = f"{GROUP}/promoted-from"
# A ModelDeployment's Deployment: the hash of the pod template it runs (its revision is under LABEL_REVISION).
ANNOTATION_TEMPLATE_HASH = f"{GROUP}/template-hash"
# kopf keeps its handler progress and last-handled spec in annotations under this prefix (never in status: the CRD
# schema prunes unknown status fields).
KOPF_ANNOTATION_PREFIX = GROUP
KOPF_DIFFBASE_KEY = "last-handled-configuration"
KOPF_FINALIZER = f"{GROUP}/kopf-finalizer"

# Where the trainer finds its configuration and volumes (mount paths inside the training container).
SPEC_MOUNT_DIR = "/etc/modelyard"
SPEC_FILE_NAME = "spec.yaml"
DATA_MOUNT_PATH = "/data"
STORE_MOUNT_PATH = "/store"
SHM_MOUNT_PATH = "/dev/shm"  # noqa: S108 (a mount point in the pod, memory-backed)
TMP_MOUNT_PATH = "/tmp"  # noqa: S108 (a mount point in the pod: an emptyDir, the root filesystem is read-only)
TRAINER_CONTAINER = "trainer"
RENDEZVOUS_PORT = 29500

# Annotation the Job controller puts on each pod of an Indexed Job.
JOB_COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

# An Indexed Job's pods are named `<job>-<index>` as hostnames (DNS labels, 63 characters), and the headless Service
# of a multi-node job is named after the job (an RFC 1035 label: it must start with a letter). Four characters are
# kept for `-<index>` (up to 256 nodes).
MAX_TRAININGJOB_NAME_LENGTH = 59
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class Component(enum.StrEnum):
    TRAINER = "trainer"
    SERVING = "serving"


def common_labels(component: Component, instance: str) -> dict[str, str]:
    """The recommended labels every child carries."""
    return {
        LABEL_NAME: f"modelyard-{component.value}",
        LABEL_INSTANCE: instance,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: PART_OF,
        LABEL_COMPONENT: component.value,
    }


def trainer_labels(trainingjob: str) -> dict[str, str]:
    """Labels of a TrainingJob's children (Job, pods, ConfigMap, headless Service)."""
    return {**common_labels(Component.TRAINER, trainingjob), LABEL_TRAINING_JOB: trainingjob}


def trainer_selector(trainingjob: str) -> dict[str, str]:
    """The smallest label set that selects one TrainingJob's training pods."""
    return {LABEL_COMPONENT: Component.TRAINER.value, LABEL_TRAINING_JOB: trainingjob}


def serving_labels(modeldeployment: str, revision: int | None = None) -> dict[str, str]:
    """Labels of a ModelDeployment's children; pods of a revision also carry its number."""
    labels = {**common_labels(Component.SERVING, modeldeployment), LABEL_MODEL_DEPLOYMENT: modeldeployment}
    if revision is not None:
        labels[LABEL_REVISION] = str(revision)
    return labels


def serving_selector(modeldeployment: str) -> dict[str, str]:
    """The smallest label set that selects one ModelDeployment's serving pods (every revision)."""
    return {LABEL_COMPONENT: Component.SERVING.value, LABEL_MODEL_DEPLOYMENT: modeldeployment}


def managed_selector(component: Component) -> dict[str, str]:
    """Labels the operator watches its children of one component by."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: component.value}


def is_managed_by_us(labels: Mapping[str, str], component: Component, instance: str) -> bool:
    """Whether an object's labels say the operator made it for that owner (adoption is allowed then)."""
    return (
        labels.get(LABEL_MANAGED_BY) == MANAGED_BY
        and labels.get(LABEL_COMPONENT) == component.value
        and labels.get(LABEL_INSTANCE) == instance
    )


# --- TrainingJob children ----------------------------------------------------------------------------------------


def job_name(trainingjob: str) -> str:
    """The batch/v1 Job that trains: named after the TrainingJob."""
    return trainingjob


def headless_service_name(trainingjob: str) -> str:
    """The headless Service that gives a multi-node job's pods DNS names."""
    return trainingjob


def spec_config_map_name(trainingjob: str) -> str:
    """The ConfigMap holding the spec the trainer reads (`spec.yaml`)."""
    return f"{trainingjob}-spec"


def rendezvous_host(trainingjob: str, namespace: str) -> str:
    """DNS name of pod 0 of a multi-node job, through its headless Service."""
    return f"{job_name(trainingjob)}-0.{headless_service_name(trainingjob)}.{namespace}.svc"


def checkpoint_dir(checkpoint_path: str, trainingjob: str, uid: str | None) -> str:
    """The job's own checkpoint folder. The uid keeps a re-created TrainingJob of the same name from resuming
    someone else's run; restarts and resumes of this one find their checkpoints again."""
    suffix = f"-{uid[:8]}" if uid else ""
    return f"{checkpoint_path.rstrip('/')}/{trainingjob}{suffix}"


# --- ModelDeployment children: each kind is named after the ModelDeployment ------------------------------------


def serving_deployment_name(modeldeployment: str) -> str:
    return modeldeployment


def serving_service_name(modeldeployment: str) -> str:
    return modeldeployment


def serving_hpa_name(modeldeployment: str) -> str:
    return modeldeployment


def serving_pdb_name(modeldeployment: str) -> str:
    return modeldeployment


# --- Trainer RBAC (per namespace) ---------------------------------------------------------------------------------

TRAINER_ROLE_NAME = "modelyard-trainer"
TRAINER_ROLE_BINDING_NAME = "modelyard-trainer"


# --- Owner references ---------------------------------------------------------------------------------------------


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A controller owner reference to `owner` (a whole object): deleting the owner deletes the child."""
    metadata = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
