"""Promotion: when a TrainingJob succeeds and asks for it, its model replaces the one a ModelDeployment serves, if
the validation metric passes the threshold (and, with mustBeatCurrent, beats the current model's).

The current model's metric is read from the TrainingJob that produced it (lineage: the ModelDeployment's
`modelyard.dev/promoted-from` annotation, spec.model.fromTrainingJob, or its revision history), never from the model
store: the operator has no volume and no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.api.training_job import MetricName, PromotionSpec
from modelyard.operator import naming

PROMOTED = "Promoted"
REJECTED = "PromotionRejected"
NOT_FOUND = "ModelDeploymentNotFound"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    message: str


def metric_value(metrics: Mapping[str, Any] | None, metric: MetricName) -> float | None:
    """The figure a model is judged by: the best validation accuracy (the saved model is the best epoch's), or the
    last validation loss."""
    if not metrics:
        return None
    if metric is MetricName.VAL_ACCURACY:
        value = metrics.get("bestValAccuracy", metrics.get("valAccuracy"))
    else:
        value = metrics.get("valLoss")
    return float(value) if isinstance(value, int | float) else None


def _better(candidate: float, reference: float, metric: MetricName, *, strictly: bool) -> bool:
    if metric.higher_is_better:
        return candidate > reference if strictly else candidate >= reference
    return candidate < reference if strictly else candidate <= reference


def decide(
    promotion: PromotionSpec,
    candidate_metrics: Mapping[str, Any] | None,
    current_metrics: Mapping[str, Any] | None,
    current_tag: str | None,
    candidate_tag: str,
) -> Decision:
    """Whether to promote, with the figures in the message."""
    metric = promotion.metric
    value = metric_value(candidate_metrics, metric)
    if value is None:
        return Decision(False, REJECTED, f"the job reported no {metric.value}; nothing to compare")
    bound = "at least" if metric.higher_is_better else "at most"
    if not _better(value, promotion.threshold, metric, strictly=False):
        return Decision(
            False,
            REJECTED,
            f"{metric.value} {value:.4f} does not pass the threshold: {bound} {promotion.threshold:.4f}",
        )
    figures = f"{metric.value} {value:.4f} (threshold {promotion.threshold:.4f}"
    if promotion.must_beat_current and current_tag != candidate_tag:
        current = metric_value(current_metrics, metric)
        if current is None:
            # A model deployed by hand has no TrainingJob reporting its figures: the threshold alone decides, and
            # the message says so (otherwise such a deployment could never be promoted to automatically).
            figures += f"; the current model {current_tag} has no recorded {metric.value}, so the threshold decides"
        elif not _better(value, current, metric, strictly=True):
            return Decision(False, REJECTED, f"{figures}) does not beat the current model {current_tag}: {current:.4f}")
        else:
            figures += f", current model {current_tag}: {current:.4f}"
    return Decision(
        True, PROMOTED, f"{candidate_tag} promoted to ModelDeployment {promotion.model_deployment}: {figures})"
    )


def current_tag(modeldeployment: Mapping[str, Any]) -> str | None:
    """The full tag the ModelDeployment's spec asks for now."""
    model = (modeldeployment.get("spec") or {}).get("model") or {}
    if model.get("tag"):
        return f"{model.get('name')}:{model['tag']}"
    return None


def lineage_candidates(modeldeployment: Mapping[str, Any]) -> list[str]:
    """TrainingJobs that may have produced the model served now, most reliable first."""
    metadata = modeldeployment.get("metadata") or {}
    spec, status = modeldeployment.get("spec") or {}, modeldeployment.get("status") or {}
    names = [
        (metadata.get("annotations") or {}).get(naming.ANNOTATION_PROMOTED_FROM),
        (spec.get("model") or {}).get("fromTrainingJob"),
        *(
            r.get("trainingJob")
            for r in reversed(status.get("revisions") or [])
            if r.get("modelTag") == current_tag(modeldeployment)
        ),
    ]
    return list(dict.fromkeys(n for n in names if n))


def modeldeployment_patch(trainingjob: str, tag: str, resource_version: str | None) -> dict[str, Any]:
    """Point the ModelDeployment at the new model and record where it came from. The resourceVersion makes the
    patch fail (409, retried) if the ModelDeployment changed since it was compared."""
    name, _, version = tag.partition(":")
    metadata: dict[str, Any] = {"annotations": {naming.ANNOTATION_PROMOTED_FROM: trainingjob}}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {"metadata": metadata, "spec": {"model": {"name": name, "tag": version, "fromTrainingJob": trainingjob}}}
