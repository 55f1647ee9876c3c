"""Attacks in pixel space over one base class; losses are pluggable callables."""

from robustune.attacks.base import Attack, eval_mode, lp_norm, project, random_start
from robustune.attacks.losses import ATTACK_LOSSES, get_attack_loss
from robustune.attacks.registry import ATTACKS, create_attack, list_attacks, register_attack
from robustune.attacks.pgd import FGSM, PGD, input_gradient  # noqa: E402
# AutoAttack components (torchattacks inner loops, imported lazily) and their composition.
from robustune.attacks.apgd import APGD  # noqa: E402
from robustune.attacks.apgd_t import APGDT  # noqa: E402
from robustune.attacks.fab import FAB  # noqa: E402
from robustune.attacks.square import Square  # noqa: E402
from robustune.attacks.autoattack import AutoAttack  # noqa: E402
from robustune.attacks.evolution import EvolutionRegion, RegionPopulation  # noqa: E402  (ER-APT)

__all__ = [
    "ATTACKS", "ATTACK_LOSSES", "Attack", "FGSM", "PGD", "create_attack", "eval_mode",
    "get_attack_loss", "input_gradient", "list_attacks", "lp_norm", "project", "random_start",
    "register_attack",
]
