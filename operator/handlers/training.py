"""TrainingJob handlers: parse once, build, apply, write status. The thinking is in builders.training,
training_status and promotion; this module only wires them to kopf and the API.

- create / update (spec) / resume: reconcile the children (ConfigMap, Job, headless Service) and the status;
- every TrainingJob event (the trainer's progress patches too) and every event of a training Job whose TrainingJob
  has been synced once: refresh the status from the Job, and promote once the job has succeeded and its model is
  known.

Status writes of one TrainingJob are serialised by a lock and always start from a fresh read, so the Job watcher and
the spec handler never undo each other's conditions. An event that brings nothing the last sync has not seen (the
echo of our own status write, kopf's annotation patches, the Job we have just created) is not synced again: under a
burst those made most of the API calls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
import yaml
from pydantic import ValidationError

from modelyard.api import GROUP, VERSION, TrainingJob, TrainingJobSpec
from modelyard.api.training_job import TrainingJobConditionType, TrainingJobPhase
from modelyard.operator import naming, promotion, rbac, training_status
from modelyard.operator.apply import UNREAD, NameTakenError, apply
from modelyard.operator.builders.training import (
    CONFIG_MAP_MUTABLE_PATHS,
    JOB_MUTABLE_PATHS,
    build_trainer_children,
    cluster_problems,
    read_spec_yaml,
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


@dataclass(frozen=True)
class Synced:
    """What the last successful status sync of a TrainingJob started from, or left behind."""

    digest: bytes  # of the TrainingJob's spec and status
    job_version: str | None  # resourceVersion of the Job it read


_synced: dict[tuple[str, str], Synced] = {}


def _digest(body: Mapping[str, Any]) -> bytes:
    """Identifies what a status sync reads of a TrainingJob; metadata (kopf's annotations, resourceVersion) is left
    out, so that an annotation patch does not call for another sync."""
    state = json.dumps([body.get("spec"), body.get("status")], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(state.encode(), digest_size=16).digest()


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
    obj = event["object"]
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    if event["type"] == "DELETED":
        METRICS.set_trainingjob_phase(namespace, name, None)
        _synced.pop((namespace, name), None)
        return
    if not obj.get("status"):
        return  # new (or never reconciled): the create or resume handler writes the first status
    synced = _synced.get((namespace, name))
    if synced is not None and synced.digest == _digest(obj):
        return  # nothing the last sync has not seen; a change of the Job comes with its own event
    sync_status(from_memo(memo), namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=naming.managed_selector(naming.Component.TRAINER))
def batch_job_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = body.metadata.labels.get(naming.LABEL_TRAINING_JOB)
    namespace = body.metadata.namespace
    if not owner or not namespace:
        return
    synced = _synced.get((namespace, owner))
    if synced is None:
        # Never synced: the create or resume handler that made (or found) this Job syncs next, or the TrainingJob's
        # own event does. Syncing here too raced the create handler: whichever came second wrote the status again.
        return
    if synced.job_version == body.metadata.get("resourceVersion"):
        return  # the status was synced from exactly this Job (the one just created, for one)
    sync_status(from_memo(memo), namespace, owner)


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
    config_map = context.kube.get(CONFIG_MAP, namespace, naming.spec_config_map_name(name))
    review = training_status.review_spec_change(_applied_spec(tj, config_map), tj.spec.to_wire())
    effective = tj.model_copy(update={"spec": TrainingJobSpec.model_validate(review.effective)})
    children = build_trainer_children(effective, context.settings)
    if context.settings.manage_trainer_rbac and not tj.spec.resources.service_account_name:
        for obj in rbac.trainer_rbac_objects(namespace, context.settings):
            apply(context.kube, obj, owner=None, component=naming.Component.TRAINER)
    # Without its spec ConfigMap (the first child made) a TrainingJob is new: its other children are created without
    # reading them first; should one exist after all, apply reads it on the 409.
    unread_or_new = None if config_map is None else UNREAD
    trainer = naming.Component.TRAINER
    try:
        apply(
            context.kube,
            children.config_map,
            owner=body,
            component=trainer,
            mutable_paths=CONFIG_MAP_MUTABLE_PATHS,
            existing=config_map,
        )
        if children.service is not None:
            apply(context.kube, children.service, owner=body, component=trainer, existing=unread_or_new)
        apply(
            context.kube,
            children.job,
            owner=body,
            component=trainer,
            mutable_paths=JOB_MUTABLE_PATHS,
            existing=unread_or_new,
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


def _applied_spec(tj: TrainingJob, config_map: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The spec the existing Job was built from (its ConfigMap), if there is one."""
    if config_map is None:
        return None
    try:
        text = (config_map.get("data") or {})[naming.SPEC_FILE_NAME]
        return TrainingJobSpec.model_validate(read_spec_yaml(text)).to_wire()
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
        job: dict[str, Any] | None = None
        # Invalid specs are reported by the reconcile handler (Failed, InvalidSpec); only `first` is written for them.
        if tj is not None and not problems:
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
        written = _write(context, body, combined, status)
        job_version = job["metadata"].get("resourceVersion") if job is not None else None
        _synced[(namespace, name)] = Synced(_digest(written), job_version)


def _write(
    context: OperatorContext, body: dict[str, Any], change: StatusChange, status: Mapping[str, Any]
) -> dict[str, Any]:
    """Write the change, if any; the TrainingJob as the server holds it afterwards."""
    written = write(context.kube, TRAINING_JOB, body, change) if change else body
    if status.get("phase"):
        METRICS.set_trainingjob_phase(body["metadata"]["namespace"], body["metadata"]["name"], status["phase"])
    return written


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
