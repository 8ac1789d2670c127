"""The Serving dashboard: one ModelDeployment's traffic, latency, errors, batching, replicas and predictions."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gd

from dashboards.panels import RATE, REQUESTS, SERVING, WITH_TAG, ZERO_IF_NONE, Query, base, graph, single, variable


def _errors(code: str) -> str:
    """Share of inference requests answered with `code` (a regex), 0 when there are requests but none of those."""
    total = f"sum by (model_tag) (rate(bentoml_service_request_total{{{REQUESTS}}}[{RATE}]) {WITH_TAG})"
    matching = (
        f'sum by (model_tag) (rate(bentoml_service_request_total{{{REQUESTS}, http_response_code=~"{code}"}}[{RATE}]) '
        f"{WITH_TAG})"
    )
    return f"({matching} or 0 * {total}) / {total}"


def _latency(quantile: float) -> Query:
    expr = (
        f"histogram_quantile({quantile}, sum by (le, model_tag) "
        f"(rate(bentoml_service_request_duration_seconds_bucket{{{REQUESTS}}}[{RATE}]) {WITH_TAG}))"
    )
    return expr, f"{{{{model_tag}}}} p{round(quantile * 100)}"


def serving() -> gd.Dashboard:
    operator_view = 'namespace=~"$namespace", modeldeployment=~"$modeldeployment"'
    board = base(
        "Modelyard / Serving",
        "modelyard-serving",
        "Per ModelDeployment and model tag: traffic, latency, errors, batching, replicas, predictions, rollbacks.",
        [
            variable("namespace", "Namespace", "label_values(modelyard_model_info, namespace)"),
            variable(
                "modeldeployment",
                "ModelDeployment",
                'label_values(modelyard_model_info{namespace=~"$namespace"}, modelyard_dev_model_deployment)',
            ),
            variable("model_tag", "Model tag", f"label_values(modelyard_model_info{{{SERVING}}}, model_tag)"),
        ],
    )
    batches = f"sum by (le) (rate(modelyard_batch_size_bucket{{{SERVING}}}[{RATE}]))"
    requests = f"sum by (model_tag) (rate(bentoml_service_request_total{{{REQUESTS}}}[{RATE}]) {WITH_TAG})"
    return (
        board.with_row(gd.Row("Traffic"))
        .with_panel(
            graph("Requests per second", "Inference requests per model tag.", "reqps", [(requests, "{{model_tag}}")])
        )
        .with_panel(
            graph(
                "Latency",
                "p50, p95 and p99 of inference request duration, per model tag.",
                "s",
                [_latency(0.5), _latency(0.95), _latency(0.99)],
            )
        )
        .with_panel(
            graph(
                "Error rate",
                "Share of inference requests answered 5xx (server errors) and 4xx (rejected input).",
                "percentunit",
                [(_errors("5.."), "{{model_tag}} 5xx"), (_errors("4.."), "{{model_tag}} 4xx")],
            )
        )
        .with_panel(
            graph(
                "Rejected inputs",
                "Inputs refused before inference, by reason (undecodable image, too large, too many).",
                "reqps",
                [
                    (
                        f"sum by (reason) (rate(modelyard_rejected_inputs_total{{{SERVING}}}[{RATE}]))",
                        "{{reason}}",
                    )
                ],
            )
        )
        .with_row(gd.Row("Batching and replicas"))
        .with_panel(
            graph(
                "Batch size",
                "Images per model call after adaptive batching: median, p95 and mean.",
                "none",
                [
                    (f"histogram_quantile(0.5, {batches})", "p50"),
                    (f"histogram_quantile(0.95, {batches})", "p95"),
                    (
                        f"sum(rate(modelyard_batch_size_sum{{{SERVING}}}[{RATE}])) / "
                        f"sum(rate(modelyard_batch_size_count{{{SERVING}}}[{RATE}]))",
                        "mean",
                    ),
                ],
            )
        )
        .with_panel(
            graph(
                "Replicas and autoscaling bounds",
                "Replicas and ready replicas against the HorizontalPodAutoscaler's min and max.",
                "none",
                [
                    (
                        f"sum by (modeldeployment) (modelyard_modeldeployment_replicas{{{operator_view}}})",
                        "{{modeldeployment}} replicas",
                    ),
                    (
                        f"sum by (modeldeployment) (modelyard_modeldeployment_ready_replicas{{{operator_view}}})",
                        "{{modeldeployment}} ready",
                    ),
                    (
                        f"max by (modeldeployment) (modelyard_modeldeployment_min_replicas{{{operator_view}}})",
                        "{{modeldeployment}} min",
                    ),
                    (
                        f"max by (modeldeployment) (modelyard_modeldeployment_max_replicas{{{operator_view}}})",
                        "{{modeldeployment}} max",
                    ),
                ],
            )
        )
        .with_panel(
            single(
                "Ready pods",
                "Bento service pods whose model is loaded and that answer /readyz.",
                "none",
                [(f"sum(modelyard_ready{{{SERVING}}})", "ready")],
            )
        )
        .with_panel(
            single(
                "Rollbacks",
                "Automatic rollbacks since the operator started, by reason.",
                "none",
                [
                    (
                        f"sum by (modeldeployment, reason) "
                        f"(modelyard_rollbacks_total{{{operator_view}}}){ZERO_IF_NONE}",
                        "{{modeldeployment}} {{reason}}",
                    )
                ],
                width=8,
            )
        )
        .with_row(gd.Row("Predictions"))
        .with_panel(
            graph(
                "Predictions by class",
                "Predicted classes per second: a shift here is a shift in the input data or the model.",
                "ops",
                [
                    (
                        f"sum by (class_name) "
                        f'(rate(modelyard_predictions_total{{{SERVING}, model_tag=~"$model_tag"}}[{RATE}]))',
                        "{{class_name}}",
                    )
                ],
                width=24,
            )
        )
    )
