"""The ``adversarial`` suite: robust accuracy per attack and ε, per point, with sanity checks.

``robustune eval RUN --suite adversarial --attacks pgd100,cw,autoattack --eps 1/255,4/255``
gives one cell per (attack, ε): robust accuracy (a point counts only if it is also correct when
clean) with a Wilson 95 % interval, per-point outcomes in ``per_sample/``. The suite always adds
one ε = 0 cell (first attack) so the "ε = 0 reproduces clean accuracy" check runs every time.

Attack names (``--attacks``):

* ``pgdK`` / ``pgdK-LOSS``: PGD-K (Madry et al. 2018), random start, step ``2.5ε/K`` unless
  ``EvalConfig.pgd_alpha`` or ``--option pgd_alpha=1/255`` is set, ``cfg.pgd_restarts`` restarts;
  LOSS in ce (default), cw, dlr, kl. ``pgd`` alone uses ``--steps``.
* ``cwK`` / ``cw``: PGD-K on the Carlini-Wagner margin loss (Carlini & Wagner 2017).
* ``fgsm``; the AutoAttack components with their standard settings: ``apgd-ce``, ``apgd-dlr``,
  ``apgd-t``, ``fab``, ``fab-t``, ``square``; ``autoattack`` (standard) and ``autoattack-rand``
  (Croce & Hein 2020), resumable from ``state/<cell>.json``.

Suite options (``--option key=value``): ``norm`` (Linf | L2), ``pgd_alpha``, ``sanity_eps0``
(default true), ``attack_overrides`` (name → keyword arguments; tests and benchmarks only, the
cell records them and ``standard: false``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from robustune.attacks import ATTACK_LOSSES, Attack, create_attack
from robustune.attacks.autoattack import AutoAttack, component_settings
from robustune.attacks.external import import_torchattacks
from robustune.config import EvalConfig, parse_number
from robustune.eval.autoattack_run import autoattack_outcomes
from robustune.eval.results import Cell
from robustune.eval.robust import attack_outcomes
from robustune.eval.suites import EvalContext, eps_label, register_suite
from robustune.registry import UnknownNameError, unknown_choice_message

# Registered attacks usable by name with their standard settings.
NAMED_ATTACKS = ("fgsm", "apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square",
                 "autoattack", "autoattack-rand")
PGD_PATTERN = re.compile(r"^(pgd|cw)(\d*)(?:-([a-z]+))?$")


@dataclass(frozen=True)
class AttackSpec:
    """One entry of ``--attacks``: the name as written and how to build it."""

    name: str
    family: str  # "pgd" (any loss; cw = pgd with the cw loss) or a registered attack name
    steps: int | None = None
    loss: str | None = None

    @property
    def is_autoattack(self) -> bool:
        return self.family in ("autoattack", "autoattack-rand")


def parse_attack(text: str, default_steps: int = 10) -> AttackSpec:
    """``"pgd100"`` → PGD-100/CE, ``"cw"`` → PGD/CW-margin, ``"apgd-t"`` → APGD-T, etc."""
    name = text.strip().lower()
    if name in NAMED_ATTACKS:
        return AttackSpec(name=name, family=name)
    m = PGD_PATTERN.match(name)
    if m:
        kind, steps, loss = m.groups()
        loss = loss or ("cw" if kind == "cw" else "ce")
        if kind == "cw" and loss != "cw":
            raise ValueError(f"attack {text!r}: cw is PGD with the cw loss; write pgd{steps}-{loss}")
        if loss not in ATTACK_LOSSES:
            raise UnknownNameError(unknown_choice_message("PGD loss", loss, ATTACK_LOSSES.list()))
        k = int(steps) if steps else default_steps
        if k < 1:
            raise ValueError(f"attack {text!r}: PGD needs at least one step")
        return AttackSpec(name=name, family="pgd", steps=k, loss=loss)
    raise UnknownNameError(unknown_choice_message(
        "attack", text, [*NAMED_ATTACKS, "pgdK (e.g. pgd100)", "pgdK-LOSS (e.g. pgd20-dlr)", "cwK"]))


def attack_key(spec: AttackSpec, eps: float, norm: str = "Linf") -> str:
    return f"adversarial/{spec.name}/{norm}/eps={eps_label(eps) if eps else 0}"


def pgd_step_size(eps: float, steps: int, cfg: EvalConfig, options: dict[str, Any]) -> float:
    """``--option pgd_alpha``, else ``cfg.pgd_alpha``, else Madry's ``2.5 ε / K``."""
    alpha = options.get("pgd_alpha", cfg.pgd_alpha)
    if alpha is None:
        return 2.5 * eps / max(steps, 1)
    alpha = parse_number(alpha)
    if not isinstance(alpha, (int, float)):
        raise ValueError(f"pgd_alpha must be a number such as 1/255, got {alpha!r}")
    return float(alpha)


def build_attack(spec: AttackSpec, model: nn.Module, eps: float, cfg: EvalConfig,
                 options: dict[str, Any]) -> tuple[Attack, dict[str, Any]]:
    """The attack of ``spec`` at ``eps`` and its threat model as data."""
    norm = options.get("norm", "Linf")
    overrides = dict(options.get("attack_overrides") or {})
    if spec.family != "pgd" and spec.family != "fgsm":
        try:
            import_torchattacks()
        except ImportError as exc:  # a user-facing error, not a traceback
            raise ValueError(str(exc)) from exc
    threat: dict[str, Any] = {"attack": spec.name, "norm": norm, "eps": eps, "eps_label": eps_label(eps)}
    if spec.family == "pgd":
        alpha = pgd_step_size(eps, spec.steps, cfg, options)
        attack = create_attack("pgd", model, eps=eps, norm=norm, steps=spec.steps, alpha=alpha,
                               restarts=cfg.pgd_restarts, loss=spec.loss, seed=cfg.seed)
        threat.update(family="pgd", steps=spec.steps, step_size=alpha, restarts=cfg.pgd_restarts,
                      random_start=True, loss=spec.loss)
    elif spec.is_autoattack:
        names = component_settings(_version(spec))
        used = {k: v for k, v in overrides.items() if k in names}
        attack = create_attack(spec.family, model, eps=eps, norm=norm, seed=cfg.seed, overrides=used)
        threat.update(family="autoattack", **attack.describe())
    else:
        used = {spec.family: overrides[spec.family]} if spec.family in overrides else {}
        attack = create_attack(spec.family, model, eps=eps, norm=norm, seed=cfg.seed,
                               **used.get(spec.family, {}))
        threat.update(family=spec.family, settings={k: v for k, v in vars(attack).items()
                                                    if isinstance(v, (int, float, str, bool))
                                                    and k not in ("eps", "norm")})
    if spec.family != "pgd":
        threat["standard"] = not used
        if used:
            threat["overrides"] = used
    return attack, threat


def _version(spec: AttackSpec) -> str:
    return "rand" if spec.family == "autoattack-rand" else "standard"


def _autoattack_cell(ctx: EvalContext, key: str, attack: AutoAttack, threat: dict[str, Any]) -> Cell:
    out = autoattack_outcomes(ctx.model, ctx.dataset, attack, ctx.batch_size, ctx.device,
                              seed=ctx.cfg.seed, state_path=ctx.state_path(key))
    ctx.save_per_sample(key, correct=out.robust, clean=out.clean, fooled_by=out.fooled_by)
    return Cell.from_outcomes(key, "adversarial", "robust_accuracy", out.robust, threat_model=threat,
                              clean_accuracy=out.clean.double().mean().item(),
                              components=out.components)


def _attack_cell(ctx: EvalContext, key: str, attack: Attack, threat: dict[str, Any]) -> Cell:
    clean, robust = attack_outcomes(ctx.model, ctx.dataset, attack, ctx.batch_size, ctx.device,
                                    desc=key, seed=ctx.cfg.seed, state_path=ctx.state_path(key),
                                    loader=ctx.loader, precision=ctx.precision)
    ctx.save_per_sample(key, correct=robust, clean=clean)
    return Cell.from_outcomes(key, "adversarial", "robust_accuracy", robust, threat_model=threat,
                              clean_accuracy=clean.double().mean().item())


def suite_attacks(ctx: EvalContext) -> list[AttackSpec]:
    names = ctx.options.get("attacks") or ["pgd"]
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    return [parse_attack(n, ctx.cfg.pgd_steps) for n in names]


@register_suite("adversarial")
def adversarial_suite(ctx: EvalContext):
    """Cells ``adversarial/<attack>/<norm>/eps=<ε>`` for every attack × ε (plus one ε = 0 cell)."""
    specs = suite_attacks(ctx)
    norm = ctx.options.get("norm", "Linf")
    grid = [(spec, float(eps)) for spec in specs for eps in ctx.cfg.eps]
    if ctx.options.get("sanity_eps0", True) and not any(e == 0 for _, e in grid):
        grid.insert(0, (specs[0], 0.0))
    for spec, eps in grid:
        key = attack_key(spec, eps, norm)

        def compute(spec: AttackSpec = spec, eps: float = eps, key: str = key) -> Cell:
            attack, threat = build_attack(spec, ctx.model, eps, ctx.cfg, ctx.options)
            if isinstance(attack, AutoAttack):
                return _autoattack_cell(ctx, key, attack, threat)
            return _attack_cell(ctx, key, attack, threat)

        yield key, compute


adversarial_suite.number_options = ("norm", "pgd_alpha", "attack_overrides")
