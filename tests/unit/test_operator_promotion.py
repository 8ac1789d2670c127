"""Promotion decisions: threshold, mustBeatCurrent against the lineage's metrics, and the ModelDeployment patch."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.api.training_job import MetricName, PromotionSpec
from modelyard.operator import promotion

pytestmark = pytest.mark.unit


def spec(**fields: Any) -> PromotionSpec:
    return PromotionSpec.model_validate({"modelDeployment": "web", "threshold": 0.9, **fields})


def test_above_the_threshold_promotes_with_the_figures() -> None:
    decision = promotion.decide(spec(), {"valAccuracy": 0.91, "bestValAccuracy": 0.93}, None, "m:old", "m:new")
    assert decision.promote
    assert decision.reason == "Promoted"
    assert "valAccuracy 0.9300" in decision.message  # the best epoch's figure: that model was saved
    assert "threshold 0.9000" in decision.message


def test_below_the_threshold_is_rejected_with_the_figures() -> None:
    decision = promotion.decide(spec(), {"valAccuracy": 0.85}, None, "m:old", "m:new")
    assert not decision.promote
    assert decision.reason == "PromotionRejected"
    assert decision.message == "valAccuracy 0.8500 does not pass the threshold: at least 0.9000"


def test_loss_is_better_when_lower() -> None:
    loss = spec(metric="valLoss", threshold=0.5)
    assert promotion.decide(loss, {"valLoss": 0.4}, None, None, "m:new").promote
    rejected = promotion.decide(loss, {"valLoss": 0.6}, None, None, "m:new")
    assert not rejected.promote
    assert "at most 0.5000" in rejected.message


def test_no_metric_reported_is_rejected() -> None:
    decision = promotion.decide(spec(), {}, None, None, "m:new")
    assert (decision.promote, decision.reason) == (False, "PromotionRejected")
    assert "no valAccuracy" in decision.message


@pytest.mark.parametrize(
    ("current", "promote"),
    [({"bestValAccuracy": 0.95}, False), ({"bestValAccuracy": 0.93}, False), ({"bestValAccuracy": 0.92}, True)],
)
def test_must_beat_current_compares_with_the_serving_model(current: dict[str, float], promote: bool) -> None:
    decision = promotion.decide(spec(mustBeatCurrent=True), {"bestValAccuracy": 0.93}, current, "m:old", "m:new")
    assert decision.promote is promote
    assert "m:old" in decision.message


def test_must_beat_current_without_known_figures_lets_the_threshold_decide() -> None:
    decision = promotion.decide(spec(mustBeatCurrent=True), {"bestValAccuracy": 0.95}, None, "m:manual", "m:new")
    assert decision.promote
    assert "m:manual has no recorded valAccuracy, so the threshold decides" in decision.message
    below = promotion.decide(spec(mustBeatCurrent=True), {"bestValAccuracy": 0.85}, None, "m:manual", "m:new")
    assert not below.promote


def test_lineage_prefers_the_promotion_annotation_then_the_spec_then_revisions() -> None:
    md = {
        "metadata": {"annotations": {"modelyard.dev/promoted-from": "run-3"}},
        "spec": {"model": {"name": "m", "tag": "v3", "fromTrainingJob": "run-2"}},
        "status": {
            "revisions": [{"modelTag": "m:v3", "trainingJob": "run-1"}, {"modelTag": "m:v2", "trainingJob": "x"}]
        },
    }
    assert promotion.current_tag(md) == "m:v3"
    assert promotion.lineage_candidates(md) == ["run-3", "run-2", "run-1"]
    assert promotion.lineage_candidates({"spec": {"model": {"name": "m", "fromTrainingJob": "t"}}}) == ["t"]


def test_the_patch_points_at_the_new_tag_records_lineage_and_guards_against_races() -> None:
    patch = promotion.modeldeployment_patch("run-4", "flowers:20260301-abc", "42")
    assert patch == {
        "metadata": {"annotations": {"modelyard.dev/promoted-from": "run-4"}, "resourceVersion": "42"},
        "spec": {"model": {"name": "flowers", "tag": "20260301-abc", "fromTrainingJob": "run-4"}},
    }


def test_metric_value_reads_the_right_figure() -> None:
    assert promotion.metric_value({"valAccuracy": 0.5}, MetricName.VAL_ACCURACY) == 0.5
    assert promotion.metric_value({"valAccuracy": 0.5, "bestValAccuracy": 0.6}, MetricName.VAL_ACCURACY) == 0.6
    assert promotion.metric_value({"valLoss": 1.5}, MetricName.VAL_LOSS) == 1.5
    assert promotion.metric_value(None, MetricName.VAL_LOSS) is None
