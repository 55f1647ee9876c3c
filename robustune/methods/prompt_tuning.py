"""Prompt-tuning methods for CLIP on the generic engine (spec ``erapt.md`` §2, §5).

The engine's model for these methods is a zero-shot :class:`~robustune.clip.zeroshot.CLIPClassifier`
(``model.name: clip:<arch>``); each method wraps it with its prompt learner into a
:class:`~robustune.clip.prompted.PromptedCLIP`, whose prompt tensors are the only trainable and the
only saved parameters. Adversarial examples come from the project's PGD against the current
prompted model (eval mode, so the class text features are a constant inside the attack).

* ``zeroshot``: no training; evaluation of the frozen model (see :func:`robustune.runs.zeroshot.write_zeroshot_run`).
* ``coop``: CE on clean images (Zhou et al., IJCV 2022).
* ``apt``: CoOp context, CE on PGD AEs (APT-style; Li et al., CVPR 2024).
* ``adv_vp``: pad prompter, CE on PGD AEs (AdvVP; Mao et al., ICLR 2023).
* ``adv_vlp``: independent 2 + 2 deep prompts, CE on PGD AEs.
* ``adv_maple``: FAP's prompts, CE on PGD AEs.
* ``fap``: FAP's prompts and loss (Zhou et al., NeurIPS 2024), :func:`robustune.losses.fap.fap_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from robustune.attacks import PGD
from robustune.clip.prompted import PromptedCLIP, trainable_is_prompt_only
from robustune.clip.prompts import create_prompt_learner
from robustune.clip.zeroshot import CLIPClassifier
from robustune.errors import WeightsUnavailableError
from robustune.losses.fap import fap_loss
from robustune.methods.base import Method, register_method


@dataclass
class AttackParams:
    """PGD used to make training AEs (FAP's: L∞, ε = α = 1/255, 2 steps, random start)."""

    eps: float = 1 / 255
    alpha: float = 1 / 255
    steps: int = 2
    attack_loss: str = "ce"


def prompt_mismatches(own: dict[str, torch.Tensor], file: dict[str, torch.Tensor]) -> list[str]:
    """What differs between the method's prompt tensors and a file's: shapes first, then keys."""
    out = [f"{k}: file {tuple(file[k].shape)} vs method {tuple(v.shape)}"
           for k, v in own.items() if k in file and file[k].shape != v.shape]
    missing, extra = sorted(set(own) - set(file)), sorted(set(file) - set(own))
    if missing:
        out.append(f"{len(missing)} tensor(s) missing from the file, e.g. {missing[0]}")
    if extra:
        out.append(f"{len(extra)} tensor(s) the method does not have, e.g. {extra[0]}")
    return out


class PromptMethod(Method):
    """Base of the prompt methods: builds the learner, asserts prompt-only training, saves prompts."""

    learner: str = "coop"
    learner_fields: tuple[str, ...] = ()

    def __init__(self, model: CLIPClassifier, params: Any, num_classes: int) -> None:
        if not isinstance(model, CLIPClassifier):
            raise TypeError(f"method needs a CLIP model (model.name: clip:<arch>), got {type(model).__name__}")
        learner = create_prompt_learner(self.learner, model.clip, model.tokenizer, model.classnames,
                                        **self.learner_kwargs(params, model))
        super().__init__(PromptedCLIP(model, learner), params, num_classes)
        if not trainable_is_prompt_only(self.model):
            raise RuntimeError("only prompt parameters may be trainable")
        if isinstance(params, AttackParams):
            self.attack = PGD(self.model, eps=params.eps, steps=params.steps, alpha=params.alpha,
                              loss=params.attack_loss)

    @classmethod
    def learner_kwargs(cls, params: Any, model: CLIPClassifier) -> dict[str, Any]:
        """Learner arguments from ``params``; a ``template`` of None means the model's template."""
        kwargs = {k: getattr(params, k) for k in cls.learner_fields}
        if kwargs.get("template", "") is None:
            kwargs["template"] = model.templates[0]
        return kwargs

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return self.model.learner.state_dict()

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.learner.load_state_dict(state)

    def export_state(self) -> dict[str, torch.Tensor]:
        return self.model.learner.state_dict()

    def load_export(self, path) -> None:
        from robustune.models.weights import read_state_dict

        state = read_state_dict(path)
        own = self.model.learner.state_dict()
        problems = prompt_mismatches(own, state)
        if problems:
            raise WeightsUnavailableError(
                f"{str(path)!r} does not hold the prompts of this method ({type(self).__name__}): "
                f"{'; '.join(problems[:3])}. Check method.name and its params (n_ctx, depth, ...)")
        self.model.learner.load_state_dict(state)

    def adversarial(self, images: torch.Tensor, labels: torch.Tensor, ctx) -> torch.Tensor:
        return self.attack(images, labels, generator=ctx.generator)


def _ce_step(method: PromptMethod, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    logits = method.model(images)
    return {"loss": F.cross_entropy(logits, labels), "logits": logits, "logs": {}}


class AdversarialCE(PromptMethod):
    """CE on PGD AEs made against the current prompts (the adversarial baselines of spec §5)."""

    def training_step(self, images, labels, ctx):
        return _ce_step(self, self.adversarial(images, labels, ctx), labels)


@dataclass
class CoOpParams:
    n_ctx: int = 4
    ctx_init: str = "a photo of a"  # a phrase (its token count overrides n_ctx), "random" or "template"
    template: str = "{}."  # class token at the end


@register_method("coop")
class CoOp(PromptMethod):
    """CoOp: learned text context, CE on clean images."""

    Params = CoOpParams
    learner = "coop"
    learner_fields = ("n_ctx", "ctx_init", "template")

    def training_step(self, images, labels, ctx):
        return _ce_step(self, images, labels)


@dataclass
class APTParams(CoOpParams, AttackParams):
    pass


@register_method("apt")
class APT(AdversarialCE, CoOp):
    """APT-style: CoOp's context trained with CE on PGD AEs."""

    Params = APTParams


@dataclass
class AdvVPParams(AttackParams):
    pad_size: int | None = None  # pixels; None: 30/224 of the input size (30 at 224 px, Bahng et al.)
    init_std: float = 1.0
    template: str | None = None  # zero-shot head template; None: the model's


@register_method("adv_vp")
class AdvVP(AdversarialCE):
    """AdvVP: a visual pad prompt, CE on PGD AEs."""

    Params = AdvVPParams
    learner = "pad"
    learner_fields = ("pad_size", "init_std", "template")

    @classmethod
    def learner_kwargs(cls, params, model):
        size = model.input_size[-1]
        kwargs = {**super().learner_kwargs(params, model), "image_size": size}
        if kwargs["pad_size"] is None:
            kwargs["pad_size"] = max(1, round(size * 30 / 224))
        return kwargs


@dataclass
class AdvVLPParams(AttackParams):
    n_ctx: int = 2
    n_ctx_vision: int = 2
    depth_text: int = 9
    depth_vision: int = 9
    depth: int | None = None  # if set, both depths (the name FAP's presets use; shared by protocols)
    ctx_init: str = "template"
    template: str | None = None  # None: the dataset's template


@register_method("adv_vlp")
class AdvVLP(AdversarialCE):
    """AdvVLP: independent deep text and vision prompts, CE on PGD AEs."""

    Params = AdvVLPParams
    learner = "ivlp"
    learner_fields = ("n_ctx", "n_ctx_vision", "depth_text", "depth_vision", "ctx_init", "template")

    @classmethod
    def learner_kwargs(cls, params, model):
        kwargs = super().learner_kwargs(params, model)
        if params.depth is not None:
            kwargs["depth_text"] = kwargs["depth_vision"] = params.depth
        return kwargs


@dataclass
class MaPLeParams(AttackParams):
    n_ctx: int = 2
    depth: int = 9
    ctx_init: str = "template"
    template: str | None = None  # None: the dataset's template


@register_method("adv_maple")
class AdvMaPLe(AdversarialCE):
    """AdvMaPLe: FAP's deep multimodal prompts, CE on PGD AEs."""

    Params = MaPLeParams
    learner = "maple"
    learner_fields = ("n_ctx", "depth", "ctx_init", "template")


@dataclass
class FAPParams(MaPLeParams):
    attack_loss: str = "kl"
    lam: float = 1.5


@register_method("fap")
class FAP(AdvMaPLe):
    """FAP: KL-PGD AEs against the current prompts, loss :func:`fap_loss`."""

    Params = FAPParams

    def training_step(self, images, labels, ctx):
        adv = self.adversarial(images, labels, ctx)
        logits, feats = self.model.logits_and_features(torch.cat([images, adv]))  # one text forward
        n = images.shape[0]
        parts = fap_loss(logits[:n], logits[n:], feats[:n], feats[n:], labels, self.params.lam)
        return {"loss": parts.loss, "logits": logits[:n],
                "logs": {"natural_ce": parts.natural.detach(), "adv_term": parts.adversarial.detach()}}


@register_method("zeroshot")
class ZeroShot(Method):
    """Zero-shot CLIP: nothing to train. Its run folder comes from :func:`robustune.runs.zeroshot.write_zeroshot_run`."""

    def training_step(self, images, labels, ctx):
        raise RuntimeError("zeroshot has nothing to train: use `robustune zeroshot CONFIG` to create "
                           "its run folder, then `robustune eval` it")

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return {}

    def export_state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_export(self, path) -> None:
        """Nothing to load: the zero-shot model is fully given by its config."""


__all__ = ["AttackParams", "CoOp", "FAP", "FAPParams", "PromptMethod", "ZeroShot"]
