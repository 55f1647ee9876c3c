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
from robustune.methods import gfn as _gfn  # noqa: F401,E402
from robustune.methods import prompt_tuning as _prompt_tuning  # noqa: F401,E402  (coop, apt, adv_*, fap, zeroshot)
from robustune.methods import erapt as _erapt  # noqa: F401,E402  (ER-APT on top of fap)
from robustune.methods import detection as _detection  # noqa: F401,E402  (det_finetune, det_adv, gfn_det)

__all__ = ["METHODS", "Method", "SetupContext", "StepContext", "create_method", "list_methods",
           "register_method"]
