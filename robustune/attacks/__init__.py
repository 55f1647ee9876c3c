"""Attacks in pixel space over one base class; losses are pluggable callables."""

from robustune.attacks.base import Attack, eval_mode, lp_norm, project, random_start
from robustune.attacks.losses import ATTACK_LOSSES, get_attack_loss
from robustune.attacks.registry import ATTACKS, create_attack, list_attacks, register_attack
from robustune.attacks.pgd import FGSM, PGD, input_gradient  # noqa: E402

__all__ = [
    "ATTACKS", "ATTACK_LOSSES", "Attack", "FGSM", "PGD", "create_attack", "eval_mode",
    "get_attack_loss", "input_gradient", "list_attacks", "lp_norm", "project", "random_start",
    "register_attack",
]
