"""The vocabulary Modelyard's dashboards are written in: panels, variables and selectors over grafana-foundation-sdk.

Label conventions the queries rely on (the chart's PodMonitors produce them in a cluster):
- trainer metrics carry `namespace` and `trainingjob` themselves;
- Bento service targets get `namespace` and, from the pod's labels, `modelyard_dev_model_deployment` and
  `modelyard_dev_revision` (the chart's PodMonitor podTargetLabels; the operator's rollout analysis reads the same), so
  BentoML's own metrics can be filtered per ModelDeployment; the model tag comes from joining on `instance` with
  `modelyard_model_info`;
- operator metrics carry their own `namespace`/`modeldeployment` labels (scraped with honorLabels).
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import dashboard as gm

DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
TRAINING = 'namespace=~"$namespace", trainingjob=~"$trainingjob"'
SERVING = 'namespace=~"$namespace", modelyard_dev_model_deployment=~"$modeldeployment"'
# BentoML also counts probe and metrics requests; the contract's inference endpoints are /predict and /predict_base64.
REQUESTS = f'{SERVING}, endpoint=~"/predict.*"'
# Attach each Bento pod's model tag to its series (one modelyard_model_info per pod) and keep the chosen tags.
WITH_TAG = (
    f"* on (instance) group_left (model_tag) "
    f'max by (instance, model_tag) (modelyard_model_info{{{SERVING}, model_tag=~"$model_tag"}})'
)
# Rare-event counters exist only once the event happened; `or on() vector(0)` shows 0 rather than "No data".
ZERO_IF_NONE = " or on() vector(0)"

Query = tuple[str, str]  # (PromQL, legend)
PanelBuilder = Builder[gm.Panel]


def _targets(queries: Sequence[Query]) -> list[Builder[Dataquery]]:
    return [
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + index)).range()
        for index, (expr, legend) in enumerate(queries)
    ]


def graph(title: str, description: str, unit: str, queries: Sequence[Query], *, width: int = 12) -> PanelBuilder:
    """A time series panel."""
    panel = timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    return panel.targets(_targets(queries)).span(width).height(8).fill_opacity(10).line_width(1)


def single(title: str, description: str, unit: str, queries: Sequence[Query], *, width: int = 4) -> PanelBuilder:
    """A stat panel showing the latest value."""
    panel = stat.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    return panel.targets(_targets(queries)).span(width).height(4)


def variable(name: str, label: str, query: str) -> gd.QueryVariable:
    """A multi-select template variable filled from a label's values, `All` matching everything."""
    return (
        gd.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": f"{name}-values", "qryType": 1})
        .refresh(gm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(gm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def base(title: str, uid: str, description: str, variables: Sequence[gd.QueryVariable]) -> gd.Dashboard:
    board = (
        gd.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["modelyard"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(gm.DashboardCursorSync.CROSSHAIR)
        .with_variable(gd.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    )
    for item in variables:
        board = board.with_variable(item)
    return board
