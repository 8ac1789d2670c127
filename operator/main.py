"""The operator process: kopf settings, start-up, and `run()` behind `modelyard operator`.

Also loadable as `kopf run -m modelyard.operator.main` (scope and peering then come from kopf's own options).
Importing this module registers every handler; it never imports torch, training or bento.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import kopf

from modelyard.operator import handlers, naming
from modelyard.operator.apply import apply
from modelyard.operator.context import MEMO_KEY, OperatorContext
from modelyard.operator.kube import ApiError, Kube
from modelyard.operator.metrics import serve
from modelyard.operator.peering import peering_objects
from modelyard.operator.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["configure_kopf", "handlers", "run"]

# Waiting less than kopf's default minute before retrying a handler that hit an unexpected error.
HANDLER_RETRY_SECONDS = 10
# How long kopf waits for its own annotation patch to come back on the watch before it trusts an older event. kopf's
# 5 s is shorter than the watch lags behind under a burst of a thousand TrainingJobs: kopf then took the echo of our
# status write (older than its patch) for a new object and ran the create handler a second time, doubling the work.
CONSISTENCY_TIMEOUT_SECONDS = 60
MAX_PRIORITY = 2**31 - 1


def configure_kopf(kopf_settings: kopf.OperatorSettings) -> None:
    """Where kopf keeps its state (annotations under modelyard.dev, never status: the CRD schema prunes unknown
    status fields) and how loudly it reports."""
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=naming.KOPF_ANNOTATION_PREFIX)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.KOPF_ANNOTATION_PREFIX, key=naming.KOPF_DIFFBASE_KEY
    )
    kopf_settings.persistence.finalizer = naming.KOPF_FINALIZER
    # Our own Events tell the story; kopf adds only its warnings and errors.
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.posting.reporting_component = "modelyard-operator"
    kopf_settings.execution.default_backoff = HANDLER_RETRY_SECONDS
    kopf_settings.persistence.consistency_timeout = CONSISTENCY_TIMEOUT_SECONDS
    kopf_settings.networking.request_timeout = 60
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build the context, start the metrics endpoint, make sure the peering object exists."""
    configure_kopf(settings)
    ours = memo.get("settings")
    if not isinstance(ours, Settings):
        ours = Settings()
    kube = Kube.from_environment()
    memo[MEMO_KEY] = OperatorContext(settings=ours, kube=kube)
    serve(ours.metrics_port, ours.bind_address)
    namespaces = [] if settings.peering.clusterwide else list(ours.namespaces)
    if settings.peering.standalone or not (settings.peering.clusterwide or namespaces):
        # Standalone, or namespaced through `kopf run --namespace` without MODELYARD_NAMESPACES: nothing to create
        # here (the chart creates the KopfPeering objects of the namespaces it watches).
        return
    for peering in peering_objects(settings.peering.name, namespaces):
        try:
            apply(kube, peering, owner=None, component=naming.Component.TRAINER, mutable_paths=())
        except ApiError as error:
            # Without the CRD kopf itself refuses to start in peering mode; say why here too.
            log.warning("could not create the peering object %s: %s", settings.peering.name, error)


def run(settings: Settings, *, verbose: bool = False) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM)."""
    kopf.configure(verbose=verbose, log_prefix=True)
    liveness = f"http://{settings.bind_address}:{settings.health_port}/healthz" if settings.health_port else None
    kopf.run(
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        standalone=settings.standalone,
        peering_name=None if settings.standalone else settings.peering_name,
        # Equal priorities make kopf pause every replica; random ones leave exactly one acting.
        priority=settings.priority if settings.priority is not None else random.randint(1, MAX_PRIORITY),  # noqa: S311
        liveness_endpoint=liveness,
        memo=kopf.Memo(settings=settings),
    )


def command(namespaces: list[str], *, all_namespaces: bool, standalone: bool | None, verbose: bool) -> None:
    """`modelyard operator`: the environment's settings, overridden by the command line."""
    overrides: dict[str, Any] = {}
    if all_namespaces:
        overrides["namespaces"] = []
    elif namespaces:
        overrides["namespaces"] = namespaces
    if standalone is not None:
        overrides["standalone"] = standalone
    run(Settings(**overrides), verbose=verbose)
