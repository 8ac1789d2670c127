"""ModelDeployment handlers: one reconcile loop per ModelDeployment, woken by its changes and its Deployment's.

A kopf daemon per object runs `reconcile` (the blocking API calls in a worker thread) one at a time, so two
decisions about the same ModelDeployment never race. Each pass:

1. reads the ModelDeployment and resolves its model (a tag, or the model its TrainingJob produced);
2. `rollout.plan`: a new revision when the pod template changed, a manual rollbackTo handled once;
3. observes the current revision's Deployment and pods, runs the Prometheus analysis when asked, `rollout.settle`;
4. writes the status (and Events, and the rollback counter) BEFORE touching the children: a restart after the
   write finds the decision in status and applies it; a restart before it decides again, the same way;
5. applies the Deployment of the current revision, the Service, the HPA and the PDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from modelyard.api import GROUP, VERSION
from modelyard.api.common import utcnow
from modelyard.api.model_deployment import ModelDeployment, ModelDeploymentPhase, ModelDeploymentStatus
from modelyard.operator import analysis, naming, status
from modelyard.operator.apply import NameTakenError, apply
from modelyard.operator.builders.serving import (
    ServedRevision,
    as_revision,
    build_deployment,
    build_hpa,
    build_pdb,
    build_service,
    revision_template,
    service_url,
    template_hash,
)
from modelyard.operator.context import OperatorContext, from_memo
from modelyard.operator.kube import MODEL_DEPLOYMENT, TRAINING_JOB, Kind, Kube, register_kind
from modelyard.operator.metrics import METRICS
from modelyard.operator.observe import observe
from modelyard.operator.rollout import (
    AnalysisResult,
    Decision,
    DesiredRevision,
    current_revision,
    plan,
    set_phase,
    settle,
)

log = logging.getLogger(__name__)

DEPLOYMENT = register_kind(Kind("apps/v1", "Deployment", "deployments"))
HPA = register_kind(Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"))
PDB = register_kind(Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"))
POD = register_kind(Kind("v1", "Pod", "pods"))
KIND = "ModelDeployment"
# An API refusal or a bug is not fixed by retrying at once; the log says what happened each time.
UNEXPECTED_ERROR_RETRY_SECONDS = 10.0

# Wake-up calls for the per-object loops, keyed by (namespace, name); set by the event handlers below.
_wakeups: dict[tuple[str, str], asyncio.Event] = {}


class InvalidSpecError(Exception):
    """A spec that cannot work as it is; the message names the field."""


def _produced_tag(kube: Kube, namespace: str, trainingjob: str) -> tuple[dict[str, Any] | None, str | None]:
    """A TrainingJob (None if missing) and the full tag of the model it produced (None until it has one)."""
    job = kube.get(TRAINING_JOB, namespace, trainingjob)
    tag = (((job or {}).get("status") or {}).get("model") or {}).get("tag")
    return job, str(tag) if tag else None


def _resolve_model(kube: Kube, md: ModelDeployment) -> tuple[str, str | None]:
    """The full model tag to serve and the TrainingJob (same namespace) that produced it, or TemporaryError while
    that job has no model yet. Lineage is recorded only when the job's status names this very tag, so a hand-edited
    tag never inherits a stale promoted-from annotation."""
    ref = md.spec.model
    namespace = md.metadata.namespace or "default"
    if ref.full_tag is None:
        assert ref.from_training_job is not None  # the API model requires tag or fromTrainingJob
        job, tag = _produced_tag(kube, namespace, ref.from_training_job)
        if tag is None:
            phase = ((job or {}).get("status") or {}).get("phase") or ("not found" if job is None else "no phase yet")
            raise kopf.TemporaryError(
                f"spec.model.fromTrainingJob: TrainingJob {ref.from_training_job} has no model yet ({phase})", delay=10
            )
        if tag.partition(":")[0] != ref.name:
            raise InvalidSpecError(
                f"spec.model.name is {ref.name!r} but TrainingJob {ref.from_training_job} produced {tag!r}"
            )
        return tag, ref.from_training_job
    candidates = [md.metadata.annotations.get(naming.ANNOTATION_PROMOTED_FROM), ref.from_training_job]
    for trainingjob in dict.fromkeys(c for c in candidates if c):
        if _produced_tag(kube, namespace, trainingjob)[1] == ref.full_tag:
            return ref.full_tag, trainingjob
    return ref.full_tag, None


def _check(md: ModelDeployment) -> None:
    if md.spec.autoscaling.enabled and md.spec.replicas.min == 0:
        raise InvalidSpecError("spec.replicas.min is 0: an HPA cannot scale to zero; set autoscaling.enabled: false")


def _analyse(md: ModelDeployment, decision: Decision, since: datetime | None, now: datetime) -> AnalysisResult:
    spec = md.spec.rollout.analysis
    current = current_revision(decision.status)
    assert spec is not None
    assert current is not None
    matcher = analysis.selector(
        {
            "namespace": md.metadata.namespace or "default",
            analysis.prometheus_label(naming.LABEL_MODEL_DEPLOYMENT): md.metadata.name,
            analysis.prometheus_label(naming.LABEL_REVISION): str(current.revision),
        }
    )
    # The Deployment controller stamps when the rollout completed; without it the revision's creation is the start.
    return analysis.analyse(spec, matcher, since or current.created_at, now)


def _write_status(
    kube: Kube, body: dict[str, Any], new: ModelDeploymentStatus, events: list[status.EventSpec]
) -> dict[str, Any]:
    """Patch status when it changed and post the Events; the rest of status (none today) is left alone."""
    old = (body.get("status") or {}).copy()
    wire = new.to_wire()
    patch = {key: value for key, value in wire.items() if old.get(key) != value}
    return status.write(kube, MODEL_DEPLOYMENT, body, status.StatusChange(patch=patch, events=events))


def _record_failure(kube: Kube, body: dict[str, Any], message: str, reason: str, now: datetime) -> None:
    """A spec that cannot work: phase Failed, Degraded naming the field, a Warning Event; nothing else changes."""
    try:
        current = ModelDeploymentStatus.model_validate(body.get("status") or {})
    except ValidationError:
        current = ModelDeploymentStatus()
    generation = body.get("metadata", {}).get("generation")
    new = current.model_copy(deep=True)
    new.observed_generation = generation
    set_phase(new, ModelDeploymentPhase.FAILED, generation, now, reason, message)
    if new.to_wire() != current.to_wire():
        _write_status(kube, body, new, [status.EventSpec("Warning", reason, message)])


def _record_waiting(kube: Kube, body: dict[str, Any], md: ModelDeployment, message: str, now: datetime) -> None:
    if md.status.current_revision is not None:
        return  # serving a model already: waiting for the next one changes nothing that runs
    new = md.status.model_copy(deep=True)
    set_phase(new, ModelDeploymentPhase.PENDING, md.metadata.generation, now, "WaitingForModel", message)
    if new.to_wire() != md.status.to_wire():
        _write_status(kube, body, new, [])


def _apply_children(context: OperatorContext, body: dict[str, Any], md: ModelDeployment) -> None:
    current = current_revision(md.status)
    assert current is not None
    kube, settings = context.kube, context.settings
    component = naming.Component.SERVING
    as_run, served = as_revision(md, current)
    apply(kube, build_deployment(as_run, served, settings), owner=body, component=component)
    apply(kube, build_service(md), owner=body, component=component)
    apply(kube, build_pdb(md), owner=body, component=component)
    hpa = build_hpa(md)
    if hpa is not None:
        apply(kube, hpa, owner=body, component=component)
    else:
        existing = kube.get(HPA, md.metadata.namespace, naming.serving_hpa_name(md.metadata.name))
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        if existing is not None and naming.is_managed_by_us(labels, component, md.metadata.name):
            kube.delete(HPA, md.metadata.namespace, naming.serving_hpa_name(md.metadata.name))


def _export_gauges(md: ModelDeployment) -> None:
    labels = {"namespace": md.metadata.namespace or "default", "modeldeployment": md.metadata.name}
    METRICS.md_replicas.labels(**labels).set(md.status.replicas)
    METRICS.md_ready_replicas.labels(**labels).set(md.status.ready_replicas)
    METRICS.md_min_replicas.labels(**labels).set(md.spec.replicas.min)
    METRICS.md_max_replicas.labels(**labels).set(md.spec.replicas.max)


def forget_gauges(namespace: str, name: str) -> None:
    """Drop a deleted ModelDeployment's series."""
    for gauge in (METRICS.md_replicas, METRICS.md_ready_replicas, METRICS.md_min_replicas, METRICS.md_max_replicas):
        with contextlib.suppress(KeyError):  # never exported
            gauge.remove(namespace, name)


def reconcile(context: OperatorContext, namespace: str, name: str, now: datetime | None = None) -> float | None:
    """One pass over one ModelDeployment; the seconds until it should be looked at again (None: it is gone)."""
    kube, settings = context.kube, context.settings
    now = now or utcnow()
    body = kube.get(MODEL_DEPLOYMENT, namespace, name)
    if body is None or body.get("metadata", {}).get("deletionTimestamp"):
        return None
    try:
        md = ModelDeployment.model_validate(body)
    except ValidationError as error:
        _record_failure(kube, body, f"invalid spec: {error}".replace("\n", "; "), "InvalidSpec", now)
        return settings.serving_resync_seconds
    try:
        _check(md)
        tag, lineage = _resolve_model(kube, md)
    except InvalidSpecError as error:
        _record_failure(kube, body, str(error), "InvalidSpec", now)
        return settings.serving_resync_seconds
    except kopf.TemporaryError as error:
        _record_waiting(kube, body, md, str(error), now)
        raise

    image = md.spec.image or settings.serving_image
    unnumbered = ServedRevision(None, tag, image)
    desired = DesiredRevision(
        tag, image, template_hash(md, unnumbered, settings), revision_template(md.spec), training_job=lineage
    )
    generation = md.metadata.generation
    first = plan(md.spec, md.status, desired, now)
    current = current_revision(first.status)
    assert current is not None  # plan always leaves a current revision
    deployment = kube.get(DEPLOYMENT, namespace, naming.serving_deployment_name(name))
    pods = kube.list_objects(POD, namespace, naming.serving_labels(name, current.revision))
    seen = observe(deployment, pods, naming.LABEL_REVISION, current.revision)
    second = settle(md.spec, first.status, seen, None, generation, now)
    if second.needs_analysis:
        verdict = _analyse(md, first, seen.available_since, now)
        second = settle(md.spec, first.status, seen, verdict, generation, now)
    new = second.status
    new.url = service_url(md)

    events = [status.EventSpec(e.type, e.reason, e.message) for e in [*first.events, *second.events]]
    body = _write_status(kube, body, new, events)
    for reason in filter(None, (first.rollback_reason, second.rollback_reason)):
        METRICS.rollbacks.labels(namespace=namespace, modeldeployment=name, reason=reason).inc()
    md.status = new
    _export_gauges(md)
    try:
        _apply_children(context, body, md)
    except NameTakenError as error:
        # Someone else's object holds a child's name: say so on the ModelDeployment, touch nothing of theirs.
        _record_failure(kube, body, str(error), "ChildNameTaken", now)
        return settings.serving_resync_seconds
    settled = new.phase in (ModelDeploymentPhase.READY, ModelDeploymentPhase.ROLLED_BACK, ModelDeploymentPhase.FAILED)
    return settings.serving_resync_seconds if settled else settings.serving_poll_seconds


def _reconcile_counted(context: OperatorContext, namespace: str, name: str) -> float | None:
    with METRICS.reconciling(KIND):
        return reconcile(context, namespace, name)


async def _pause(stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until `seconds` pass, the loop is stopped, or something about the object changed."""
    waiters = [asyncio.ensure_future(stopped.wait(seconds)), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


# The loop notices `stopped` within a pass; cancelling it mid-pass would only cut an API call short.
@kopf.daemon(GROUP, VERSION, "modeldeployments", cancellation_backoff=5, cancellation_timeout=30)
async def modeldeployment_loop(
    stopped: kopf.DaemonStopped, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    """Reconcile one ModelDeployment until it is deleted or the operator stops."""
    context = from_memo(memo)
    namespace = namespace or "default"
    key = (namespace, name)
    wake = _wakeups.setdefault(key, asyncio.Event())
    try:
        while not stopped:
            wake.clear()
            try:
                delay = await asyncio.to_thread(_reconcile_counted, context, namespace, name)
            except kopf.TemporaryError as error:
                log.info("ModelDeployment %s/%s: %s", namespace, name, error)
                delay = float(error.delay or context.settings.serving_poll_seconds)
            except Exception:
                log.exception("ModelDeployment %s/%s: reconciliation failed; retrying", namespace, name)
                delay = max(context.settings.serving_poll_seconds, UNEXPECTED_ERROR_RETRY_SECONDS)
            if delay is None:
                break
            await _pause(stopped, wake, delay)
    finally:
        _wakeups.pop(key, None)
        forget_gauges(namespace, name)


def _wake(namespace: str | None, name: str | None) -> None:
    event = _wakeups.get((namespace or "", name or ""))
    if event is not None:
        event.set()


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def modeldeployment_changed(namespace: str | None, name: str, **_: Any) -> None:
    """A spec edit (a new model, rollbackTo, scaling) is acted on at once, not at the next poll."""
    _wake(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=naming.managed_selector(naming.Component.SERVING))
async def deployment_changed(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    """Rollout progress (or its deadline passing) reaches the owning ModelDeployment's loop at once."""
    _wake(namespace, labels.get(naming.LABEL_MODEL_DEPLOYMENT))
