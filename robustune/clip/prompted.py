"""A prompted CLIP classifier: a frozen :class:`CLIPClassifier` plus a :class:`PromptLearner`.

Same interface as the zero-shot classifier ([0,1] input, ``num_classes``, ``input_size``,
``features``), so attacks, metrics and the engine treat it like any classifier. Only the learner's
parameters are trainable.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robustune.clip.prompts import PromptLearner, prompted
from robustune.clip.zeroshot import CLIPClassifier, clip_logits


def encode_text_prompted(clip: nn.Module, tokens: torch.Tensor, learner: PromptLearner) -> torch.Tensor:
    """Unit text features of the learner's class prompts (text-side prompts spliced in)."""
    p = learner.prompts()
    text_only = type(p)(text_first=p.text_first, text_deep=p.text_deep)
    with prompted(clip, text_only):
        return F.normalize(clip.encode_text(tokens), dim=-1)


class PromptedCLIP(nn.Module):
    """``logits = exp(s) · cos(f_img(prompt(x)), f_txt(prompt, class))`` over [0,1] images.

    In eval mode (attacks, evaluation) the class text features are a constant of the current
    prompts: computed once without gradients and cached until a prompt tensor changes (its
    ``_version``) or the classes change. In train mode they are recomputed with gradients.
    """

    def __init__(self, base: CLIPClassifier, learner: PromptLearner) -> None:
        super().__init__()
        self.base = base
        self.learner = learner
        self.input_size = base.input_size
        self.crop_pct = base.crop_pct
        self.interpolation = base.interpolation
        self.name = base.name
        self._text_cache: tuple[tuple, torch.Tensor] | None = None
        base.requires_grad_(False)

    @property
    def clip(self) -> nn.Module:
        return self.base.clip

    @property
    def num_classes(self) -> int:
        return self.learner.num_classes

    @property
    def classnames(self) -> list[str]:
        return self.learner.classnames

    @property
    def std(self) -> torch.Tensor:
        return self.base.std

    def set_classes(self, classnames: Sequence[str]) -> None:
        """Evaluate on other classes (base-to-new): prompts are class-agnostic."""
        self.learner.set_classnames(classnames)
        self.base.set_classes(classnames)
        self._text_cache = None

    def _cache_key(self) -> tuple:
        tensors = [*self.learner.parameters(), self.learner.tokens]
        return tuple((id(t), t._version, t.device) for t in tensors)

    def text_features(self) -> torch.Tensor:
        if not self.learner.has_text_prompts:
            return self.base.text_features()
        if self.training:
            return encode_text_prompted(self.clip, self.learner.tokens, self.learner)
        key = self._cache_key()
        if self._text_cache is None or self._text_cache[0] != key:
            with torch.no_grad():
                self._text_cache = (key, encode_text_prompted(self.clip, self.learner.tokens, self.learner))
        return self._text_cache[1]

    def head_weights(self) -> torch.Tensor:
        return self.text_features()

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Image features (unnormalised) of [0,1] images with the vision-side prompts."""
        z = self.learner.pixel(self.base.normalizer(x))
        p = self.learner.prompts()
        vision_only = type(p)(vision_first=p.vision_first, vision_deep=p.vision_deep)
        with prompted(self.clip, vision_only):
            return self.clip.encode_image(z)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_image(x)

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encode_image(x)
        return clip_logits(self.clip, feats, self.text_features()), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_features(x)[0]

    def train(self, mode: bool = True) -> "PromptedCLIP":
        super().train(mode)
        self.base.eval()  # frozen CLIP: no dropout / patch dropout, ever
        return self


def trainable_is_prompt_only(model: PromptedCLIP) -> bool:
    """True iff exactly the learner's parameters require gradients."""
    prompt_ids = {id(p) for p in model.learner.parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    return trainable == prompt_ids
