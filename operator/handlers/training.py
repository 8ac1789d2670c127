"""TrainingJob handlers: parse once, build, apply, write status. The thinking is in builders.training,
training_status and promotion; this module only wires them to kopf and the API.

- create / update (spec) / resume: reconcile the children (ConfigMap, Job, headless Service) and the status;
- every TrainingJob event (the trainer's progress patches too) and every event of a training Job: refresh the status
  from the Job, and promote once the job has succeeded and its model is known.

Status writes of one TrainingJob are serialised by a lock and always start from a fresh read, so the Job watcher and
the spec handler never undo each other's conditions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import kopf
import yaml
from pydantic import ValidationError

from modelyard.api import GROUP, VERSION, TrainingJob, TrainingJobSpec
from modelyard.api.training_job import TrainingJobConditionType, TrainingJobPhase
from modelyard.operator import naming, promotion, rbac, training_status
from modelyard.operator.apply import NameTakenError, apply
from modelyard.operator.builders.training import (
    CONFIG_MAP_MUTABLE_PATHS,
    JOB_MUTABLE_PATHS,
    build_trainer_children,
    cluster_problems,
)
from modelyard.operator.context import OperatorContext, from_memo
from modelyard.operator.kube import CONFIG_MAP, JOB, MODEL_DEPLOYMENT, TRAINING_JOB
from modelyard.operator.metrics import METRICS
from modelyard.operator.status import ConditionUpdate, EventSpec, StatusChange, update_conditions, write

log = logging.getLogger(__name__)
KIND = "TrainingJob"
PLURAL = "trainingjobs"

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def _field_errors(error: ValidationError) -> list[str]:
    return [f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in error.errors()]


def parse(body: Mapping[str, Any]) -> tuple[TrainingJob | None, list[str]]:
    """The TrainingJob, or the problems that stop it from running (each naming its field)."""
    try:
        spec = TrainingJobSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        return None, _field_errors(error)
    tj = TrainingJob.model_validate({**body, "spec": spec.to_wire()})
    return tj, [str(p) for p in cluster_problems(tj)]


# --- kopf entry points -------------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_trainingjob(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with METRICS.reconciling(KIND):
        reconcile(from_memo(memo), dict(body))


@kopf.on.event(GROUP, VERSION, PLURAL)
def trainingjob_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    metadata = event["object"]["metadata"]
    if event["type"] == "DELETED":
        METRICS.set_trainingjob_phase(metadata["namespace"], metadata["name"], None)
        return
    sync_status(from_memo(memo), metadata["namespace"], metadata["name"])


@kopf.on.event("batch", "v1", "jobs", labels=naming.managed_selector(naming.Component.TRAINER))
def batch_job_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = body.metadata.labels.get(naming.LABEL_TRAINING_JOB)
    if owner and body.metadata.namespace:
        sync_status(from_memo(memo), body.metadata.namespace, owner)


# --- reconcile ---------------------------------------------------------------------------------------------------


def reconcile(context: OperatorContext, body: dict[str, Any]) -> None:
    """Make the children match the spec, then the status match the children."""
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    tj, problems = parse(body)
    if tj is None or problems:
        _fail_invalid(context, namespace, name, problems)
    assert tj is not None
    status = body.get("status") or {}
    finished = status.get("phase") in training_status.TERMINAL_PHASES
    if finished and not training_status.failed_for_invalid_spec(status):
        return  # a finished job is never started again: a new TrainingJob trains again
    review = training_status.review_spec_change(_applied_spec(context, tj), tj.spec.to_wire())
    effective = tj.model_copy(update={"spec": TrainingJobSpec.model_validate(review.effective)})
    children = build_trainer_children(effective, context.settings)
    if context.settings.manage_trainer_rbac and not tj.spec.resources.service_account_name:
        for obj in rbac.trainer_rbac_objects(namespace, context.settings):
            apply(context.kube, obj, owner=None, component=naming.Component.TRAINER)
    try:
        apply(
            context.kube,
            children.config_map,
            owner=body,
            component=naming.Component.TRAINER,
            mutable_paths=CONFIG_MAP_MUTABLE_PATHS,
        )
        if children.service is not None:
            apply(context.kube, children.service, owner=body, component=naming.Component.TRAINER)
        apply(
            context.kube, children.job, owner=body, component=naming.Component.TRAINER, mutable_paths=JOB_MUTABLE_PATHS
        )
    except NameTakenError as error:
        _fail_invalid(context, namespace, name, [f"metadata.name: {error}"])
    generation = metadata.get("generation")
    sync_status(
        context,
        namespace,
        name,
        first=lambda current: training_status.spec_review_change(current, review, generation=generation),
    )


def _applied_spec(context: OperatorContext, tj: TrainingJob) -> dict[str, Any] | None:
    """The spec the existing Job was built from (its ConfigMap), if there is one."""
    config_map = context.kube.get(CONFIG_MAP, tj.metadata.namespace, naming.spec_config_map_name(tj.metadata.name))
    if config_map is None:
        return None
    try:
        text = (config_map.get("data") or {})[naming.SPEC_FILE_NAME]
        return TrainingJobSpec.model_validate(yaml.safe_load(text)).to_wire()
    except (KeyError, yaml.YAMLError, ValidationError) as error:
        log.warning(
            "ConfigMap of %s/%s does not hold a readable spec (%s); judging the spec as new",
            tj.metadata.namespace,
            tj.metadata.name,
            error,
        )
        return None


def _fail_invalid(context: OperatorContext, namespace: str, name: str, problems: list[str]) -> None:
    """Failed with InvalidSpec naming the fields, an Event, and no retry until the spec changes."""
    with _lock(namespace, name):
        current = context.kube.get(TRAINING_JOB, namespace, name)
        if current is not None:
            generation = current["metadata"].get("generation")
            change = training_status.invalid_spec_change(current.get("status") or {}, problems, generation=generation)
            write(context.kube, TRAINING_JOB, current, change)
            METRICS.set_trainingjob_phase(namespace, name, TrainingJobPhase.FAILED.value)
    raise kopf.PermanentError("invalid spec: " + "; ".join(problems))


# --- status ------------------------------------------------------------------------------------------------------


def sync_status(
    context: OperatorContext,
    namespace: str,
    name: str,
    *,
    first: Callable[[dict[str, Any]], StatusChange] | None = None,
) -> None:
    """Bring the status in line with the Job (after `first`, if given), promote if due, write once."""
    with _lock(namespace, name):
        body = context.kube.get(TRAINING_JOB, namespace, name)
        if body is None:
            return
        tj, problems = parse(body)
        status: dict[str, Any] = dict(body.get("status") or {})
        combined = StatusChange()

        def take(change: StatusChange) -> None:
            status.update(change.patch)
            combined.patch.update(change.patch)
            combined.events.extend(change.events)

        if first is not None:
            take(first(status))
        if tj is None or problems:  # the reconcile handler reports these (Failed, InvalidSpec)
            _write(context, body, combined, status)
            return
        job_name = naming.job_name(name)
        job = context.kube.get(JOB, namespace, job_name)
        if job is not None:
            take(
                training_status.lifecycle_change(
                    status,
                    job,
                    job_name=job_name,
                    backoff_limit=tj.spec.run_policy.backoff_limit,
                    generation=body["metadata"].get("generation"),
                )
            )
        if status.get("phase") == TrainingJobPhase.SUCCEEDED.value and tj.spec.promotion is not None:
            take(_promotion_change(context, tj, status))
        _write(context, body, combined, status)


def _write(context: OperatorContext, body: dict[str, Any], change: StatusChange, status: Mapping[str, Any]) -> None:
    if change:
        write(context.kube, TRAINING_JOB, body, change)
    if status.get("phase"):
        METRICS.set_trainingjob_phase(body["metadata"]["namespace"], body["metadata"]["name"], status["phase"])


def _promotion_change(context: OperatorContext, tj: TrainingJob, status: Mapping[str, Any]) -> StatusChange:
    """Promote once: after the Promoted condition is set (either way) nothing happens again."""
    conditions = list(status.get("conditions") or [])
    spec = tj.spec.promotion
    model = status.get("model") or {}
    if spec is None or training_status.condition_status(status, TrainingJobConditionType.PROMOTED) is not None:
        return StatusChange()
    if not model.get("tag"):
        return StatusChange()  # the trainer's last status patch is still on its way; its event brings us back
    namespace, name = tj.metadata.namespace or "default", tj.metadata.name
    target = context.kube.get(MODEL_DEPLOYMENT, namespace, spec.model_deployment)
    if target is None:
        decision = promotion.Decision(
            False, promotion.NOT_FOUND, f"ModelDeployment {spec.model_deployment} does not exist in {namespace}"
        )
    else:
        decision = promotion.decide(
            spec,
            status.get("metrics"),
            _current_metrics(context, namespace, target),
            promotion.current_tag(target),
            model["tag"],
        )
        if decision.promote:
            patch = promotion.modeldeployment_patch(name, model["tag"], target["metadata"].get("resourceVersion"))
            context.kube.patch(MODEL_DEPLOYMENT, namespace, spec.model_deployment, patch)
    METRICS.promotions.labels(namespace=namespace, outcome="promoted" if decision.promote else "rejected").inc()
    new, _ = update_conditions(
        conditions,
        [ConditionUpdate(TrainingJobConditionType.PROMOTED, decision.promote, decision.reason, decision.message)],
        generation=tj.metadata.generation,
    )
    event = EventSpec("Normal" if decision.promote else "Warning", decision.reason, decision.message)
    return StatusChange(patch={"conditions": new}, events=[event])


def _current_metrics(context: OperatorContext, namespace: str, target: Mapping[str, Any]) -> dict[str, Any] | None:
    """Metrics of the model the ModelDeployment serves now, from the TrainingJob that produced it."""
    tag = promotion.current_tag(target)
    for candidate in promotion.lineage_candidates(target):
        producer = context.kube.get(TRAINING_JOB, namespace, candidate)
        produced = ((producer or {}).get("status") or {}).get("model") or {}
        if producer is not None and (tag is None or produced.get("tag") == tag):
            return dict((producer.get("status") or {}).get("metrics") or {})
    return None
