"""Training methods registered by name on the generic engine."""

from robustune.methods.base import (
    METHODS,
    Method,
    SetupContext,
    StepContext,
    create_method,
    list_methods,
    register_method,
)
from robustune.methods import erm as _erm  # noqa: F401,E402

__all__ = ["METHODS", "Method", "SetupContext", "StepContext", "create_method", "list_methods",
           "register_method"]
