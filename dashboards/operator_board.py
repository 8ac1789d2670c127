"""The Operator dashboard: reconciliations, errors, latency, TrainingJobs by phase, promotions and rollbacks."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gd

from dashboards.panels import RATE, ZERO_IF_NONE, base, graph, single, variable


def operator() -> gd.Dashboard:
    scoped = 'namespace=~"$namespace"'
    board = base(
        "Modelyard / Operator",
        "modelyard-operator",
        "The operator: reconciliations and errors, reconcile latency, TrainingJobs by phase, promotions, rollbacks.",
        [
            variable("namespace", "Namespace", "label_values(modelyard_trainingjobs, namespace)"),
            variable(
                "modeldeployment",
                "ModelDeployment",
                'label_values(modelyard_modeldeployment_replicas{namespace=~"$namespace"}, modeldeployment)',
            ),
        ],
    )
    reconciles = "modelyard_operator_reconciliations_total"
    return (
        board.with_row(gd.Row("Reconciliation"))
        .with_panel(
            graph(
                "Reconciliations",
                "Handler runs per second by kind and outcome.",
                "ops",
                [(f"sum by (kind, outcome) (rate({reconciles}[{RATE}]))", "{{kind}} {{outcome}}")],
            )
        )
        .with_panel(
            graph(
                "Reconcile errors",
                "Handler runs that did not succeed, and Kubernetes API calls that failed, per second.",
                "ops",
                [
                    (
                        f'sum by (kind) (rate({reconciles}{{outcome!="success"}}[{RATE}])){ZERO_IF_NONE}',
                        "{{kind}} reconcile",
                    ),
                    (
                        f"sum by (verb, kind) (rate(modelyard_operator_api_errors_total[{RATE}])){ZERO_IF_NONE}",
                        "{{verb}} {{kind}} API",
                    ),
                ],
            )
        )
        .with_panel(
            graph(
                "Reconcile latency",
                "p50, p95 and p99 of handler duration by kind.",
                "s",
                [
                    (
                        f"histogram_quantile({q}, sum by (le, kind) "
                        f"(rate(modelyard_operator_reconcile_duration_seconds_bucket[{RATE}])))",
                        f"{{{{kind}}}} p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
            )
        )
        .with_row(gd.Row("Resources"))
        .with_panel(
            graph(
                "TrainingJobs by phase",
                "TrainingJobs in each phase.",
                "none",
                [(f"sum by (phase) (modelyard_trainingjobs{{{scoped}}})", "{{phase}}")],
            )
        )
        .with_panel(
            single(
                "Promotions",
                "Models promoted to a ModelDeployment (or refused) since the operator started, by outcome.",
                "none",
                [(f"sum by (outcome) (modelyard_promotions_total{{{scoped}}}){ZERO_IF_NONE}", "{{outcome}}")],
                width=6,
            )
        )
        .with_panel(
            single(
                "Rollbacks",
                "Automatic rollbacks since the operator started, by ModelDeployment.",
                "none",
                [
                    (
                        f"sum by (modeldeployment) "
                        f'(modelyard_rollbacks_total{{{scoped}, modeldeployment=~"$modeldeployment"}}){ZERO_IF_NONE}',
                        "{{modeldeployment}}",
                    )
                ],
                width=6,
            )
        )
    )
