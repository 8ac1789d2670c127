"""What every handler needs, kept in kopf's memo: the settings and the API client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.operator.kube import Kube
from modelyard.operator.settings import Settings


@dataclass(frozen=True)
class OperatorContext:
    settings: Settings
    kube: Kube


MEMO_KEY = "modelyard"


def from_memo(memo: Any) -> OperatorContext:
    """The context the startup handler put into kopf's memo."""
    context = memo.get(MEMO_KEY) if isinstance(memo, dict) else None
    if not isinstance(context, OperatorContext):
        raise RuntimeError("the operator context is missing: the startup handler did not run")
    return context
