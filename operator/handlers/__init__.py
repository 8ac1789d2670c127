"""kopf handlers, one module per kind. Importing this package registers them all with kopf."""

from modelyard.operator.handlers import serving, training

__all__ = ["serving", "training"]
