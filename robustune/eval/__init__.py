"""Evaluation: suites of cells (clean, PGD, ...) written to one results.json per model."""

from robustune.eval.clean import accuracy, predict
from robustune.eval.results import Cell, EvalResults
from robustune.eval.robust import attack_outcomes, robust_accuracy
from robustune.eval.suites import (
    CHECKS,
    SUITES,
    EvalContext,
    evaluate,
    eps_label,
    fixed_subset,
    list_suites,
    pgd_key,
    register_suite,
)
from robustune.eval import ood_suites as _ood_suites  # noqa: F401,E402  (corruptions, imagenet-a/r/p)

__all__ = [
    "CHECKS", "Cell", "EvalContext", "EvalResults", "SUITES", "accuracy", "attack_outcomes",
    "eps_label", "evaluate", "fixed_subset", "list_suites", "pgd_key", "predict", "register_suite",
    "robust_accuracy",
]

# The adversarial suite and its sanity checks register themselves on SUITES / CHECKS.
from robustune.eval import adversarial, adversarial_checks  # noqa: E402,F401
from robustune.eval import detection, detection_suites  # noqa: E402,F401  (clean/corruptions@detection, rtts, exdark)
from robustune.eval import foggy_cityscapes  # noqa: E402,F401  (foggy_cityscapes)
