"""Prompt learners that plug into open_clip's transformers without copying them.

A learner owns only prompt tensors and says, per forward, which tokens to splice where
(:class:`Prompts`). :func:`prompted` installs forward hooks on the frozen CLIP for the duration of
one forward: on the token embedding (layer-1 text context at positions 1..n), before text/vision
residual blocks (deep prompts replace the previous layer's prompt tokens), on the vision
``ln_pre`` (layer-1 vision prompts appended after the patch tokens, as MaPLe) and after the
vision transformer (prompt tokens dropped before pooling). open_clip's own code runs unchanged.

Learners (registry :data:`PROMPT_LEARNERS`):

* ``coop``: CoOp text context (Zhou et al., IJCV 2022), class token at the end.
* ``ivlp``: independent vision-language deep prompts (AdvVLP baseline; MaPLe's IVLP, Khattak et al.
  CVPR 2023), 2 + 2 tokens, depth 9 on both sides.
* ``maple``: FAP's deep multimodal prompts (Zhou et al., NeurIPS 2024; spec ``erapt.md`` §1).
* ``pad``: visual pad prompter (AdvVP baseline; Bahng et al. 2022), pixels only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from robustune.clip.templates import fill
from robustune.registry import Registry


@dataclass
class Prompts:
    """Tokens to splice into one forward. Deep dicts map a 0-based residual-block index (≥ 1) to
    the (n, width) prompts that replace the previous prompt tokens before that block."""

    text_first: torch.Tensor | None = None
    text_deep: dict[int, torch.Tensor] = field(default_factory=dict)
    vision_first: torch.Tensor | None = None
    vision_deep: dict[int, torch.Tensor] = field(default_factory=dict)


def _text_tower(clip: nn.Module) -> nn.Module:
    return clip.text if hasattr(clip, "text") else clip


def _splice(x: torch.Tensor, p: torch.Tensor, start: int, batch_first: bool = True) -> torch.Tensor:
    """Replace tokens ``start .. start+n`` (``start < 0``: the last n) of ``x`` by ``p`` (n, D)."""
    if not batch_first:
        return _splice(x.transpose(0, 1), p, start).transpose(0, 1)
    n = p.shape[0]
    start = x.shape[1] - n if start < 0 else start
    tokens = p.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
    return torch.cat([x[:, :start], tokens, x[:, start + n:]], dim=1)


def _hooks(clip: nn.Module, prompts: Prompts) -> list[tuple[nn.Module, str, Callable]]:
    text = _text_tower(clip)
    out: list[tuple[nn.Module, str, Callable]] = []
    if prompts.text_first is not None:
        p = prompts.text_first
        out.append((text.token_embedding, "fwd", lambda m, a, y, p=p: _splice(y, p, 1)))
    tbf = getattr(text.transformer, "batch_first", True)
    for i, p in prompts.text_deep.items():
        out.append((text.transformer.resblocks[i], "pre",
                    lambda m, a, p=p: (_splice(a[0], p, 1, tbf), *a[1:])))
    vis = clip.visual
    if prompts.vision_first is not None:
        if not hasattr(vis, "ln_pre"):
            raise TypeError(f"vision prompts need an open_clip VisionTransformer, not {type(vis).__name__}")
        p = prompts.vision_first
        n = p.shape[0]
        out.append((vis.ln_pre, "pre", lambda m, a, p=p: (torch.cat(
            [a[0], p.to(a[0].dtype).unsqueeze(0).expand(a[0].shape[0], -1, -1)], 1),)))
        vbf = getattr(vis.transformer, "batch_first", True)
        for i, q in prompts.vision_deep.items():
            out.append((vis.transformer.resblocks[i], "pre",
                        lambda m, a, q=q: (_splice(a[0], q, -1, vbf), *a[1:])))
        out.append((vis.transformer, "fwd", lambda m, a, y, n=n: y[:, :-n]))
    return out


@contextlib.contextmanager
def prompted(clip: nn.Module, prompts: Prompts) -> Iterator[nn.Module]:
    """Within the block, ``clip.encode_text`` / ``clip.encode_image`` use ``prompts``."""
    handles = []
    try:
        for module, kind, fn in _hooks(clip, prompts):
            reg = module.register_forward_hook if kind == "fwd" else module.register_forward_pre_hook
            handles.append(reg(fn))
        yield clip
    finally:
        for h in handles:
            h.remove()


def _n_tokens(tokenizer: Callable, text: str) -> int:
    """BPE tokens of ``text`` (without start/end tokens)."""
    ids = tokenizer([text])[0]
    return int(ids.argmax()) - 1  # the end token has the largest id


class PromptLearner(nn.Module):
    """Base class: prompt parameters, class prompt tokens, and :meth:`prompts` for one forward.

    Text context (``n_ctx`` > 0) occupies token positions 1..n_ctx of the filled class prompt
    ``template.format(classname)``, so the class name is always filled in (FAP's literal-'{}' bug
    is not copied). ``ctx_init``:

    * ``"template"``: start from the embeddings of the template's first n_ctx tokens (FAP/MaPLe;
      "a photo of a {}." with n_ctx=2 → "a photo" + "of a <class>."). Missing tokens (a template
      starting with its class name) are prepended placeholders initialised randomly.
    * ``"random"``: n_ctx placeholder tokens before the template, init N(0, 0.02²) (CoOp).
    * a phrase: the phrase is prepended to the template, n_ctx = its token count (CoOp's
      "a photo of a" with template "{}.").
    """

    text_width: int
    vision_width: int

    def __init__(self, clip: nn.Module, tokenizer: Callable, classnames: Sequence[str], template: str,
                 n_ctx: int = 0, ctx_init: str = "template") -> None:
        super().__init__()
        self.tokenizer = tokenizer
        text = _text_tower(clip)
        self.text_width = text.token_embedding.weight.shape[1]
        self.vision_width = getattr(getattr(clip.visual, "transformer", None), "width", 0)
        self.text_layers = len(text.transformer.resblocks)
        self.vision_layers = len(getattr(getattr(clip.visual, "transformer", None), "resblocks", []))
        if ctx_init not in ("template", "random"):
            template, n_ctx = f"{ctx_init} {template}", _n_tokens(tokenizer, ctx_init)
            deficit = 0
        else:
            have = _n_tokens(tokenizer, template.split("{}")[0].strip()) if ctx_init == "template" else 0
            deficit = max(0, n_ctx - have)
            template = "X " * deficit + template
        self.template, self.n_ctx = template, n_ctx
        self.register_buffer("tokens", torch.empty(0, dtype=torch.long), persistent=False)
        self.set_classnames(classnames)
        self.ctx_init_vectors = None
        if n_ctx:
            with torch.no_grad():
                init = text.token_embedding(self.tokens[:1].to(text.token_embedding.weight.device))[0]
            init = init[1:1 + n_ctx].detach().clone().float().cpu()
            init[:deficit] = torch.randn(deficit, self.text_width) * 0.02
            self.ctx_init_vectors = init

    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Tokenise the class prompts for ``classnames`` (the context is class-agnostic)."""
        self.classnames = list(classnames)
        device = self.tokens.device
        self.tokens = self.tokenizer([fill(self.template, c) for c in self.classnames]).to(device)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    @property
    def has_text_prompts(self) -> bool:
        return self.n_ctx > 0

    def prompts(self) -> Prompts:
        return Prompts()

    def pixel(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel-space prompt on normalised images (identity except for the pad prompter)."""
        return z

    def _check_depth(self, depth: int, layers: int, side: str) -> None:
        if not 1 <= depth <= layers or (depth > 1 and self.n_ctx == 0 and side == "text"):
            raise ValueError(f"prompt depth {depth} does not fit the {layers}-layer {side} transformer "
                             f"(valid: 1..{layers}; deep text prompts need n_ctx > 0)")


def _normal(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * 0.02)


PROMPT_LEARNERS: Registry[type[PromptLearner]] = Registry("prompt learner")


@PROMPT_LEARNERS.register("coop")
class CoOpPrompts(PromptLearner):
    """CoOp: a learned text context shared by all classes, class token at the end (Zhou et al. 2022)."""

    def __init__(self, clip, tokenizer, classnames, template: str = "{}.", n_ctx: int = 4,
                 ctx_init: str = "a photo of a") -> None:
        super().__init__(clip, tokenizer, classnames, template, n_ctx, ctx_init)
        self.ctx = nn.Parameter(self.ctx_init_vectors if self.n_ctx else torch.empty(0, self.text_width))

    def prompts(self) -> Prompts:
        return Prompts(text_first=self.ctx if self.n_ctx else None)


@PROMPT_LEARNERS.register("ivlp")
class IVLPPrompts(PromptLearner):
    """Independent deep text and vision prompts (AdvVLP baseline, spec §5): text context at layer 1
    plus learned text prompts at layers 2..depth_text; learned vision prompts at layers
    1..depth_vision; no coupling between the two sides."""

    def __init__(self, clip, tokenizer, classnames, template: str = "a photo of a {}.", n_ctx: int = 2,
                 n_ctx_vision: int = 2, depth_text: int = 9, depth_vision: int = 9,
                 ctx_init: str = "template") -> None:
        super().__init__(clip, tokenizer, classnames, template, n_ctx, ctx_init)
        if n_ctx:
            self._check_depth(depth_text, self.text_layers, "text")
        if n_ctx_vision:
            self._check_depth(depth_vision, self.vision_layers, "vision")
        self.ctx = nn.Parameter(self.ctx_init_vectors if self.n_ctx else torch.empty(0, self.text_width))
        self.text_deep = nn.ParameterList(
            [_normal(self.n_ctx, self.text_width) for _ in range(depth_text - 1)] if self.n_ctx else [])
        self.vision_ctx = nn.ParameterList(
            [_normal(n_ctx_vision, self.vision_width) for _ in range(depth_vision)] if n_ctx_vision else [])

    def prompts(self) -> Prompts:
        vis = list(self.vision_ctx)
        return Prompts(text_first=self.ctx if self.n_ctx else None,
                       text_deep={i + 1: p for i, p in enumerate(self.text_deep)},
                       vision_first=vis[0] if vis else None,
                       vision_deep={i: p for i, p in enumerate(vis) if i > 0})


@PROMPT_LEARNERS.register("maple")
class MaPLePrompts(PromptLearner):
    """FAP's deep multimodal prompts (spec ``erapt.md`` §1).

    Layer 1: text context (n_ctx × text width, init from the template) and, on the vision side, its
    projection ``Linear(text → vision)``. Layers 2..depth: learned vision prompts (init N(0, 0.02²)),
    each projected to the text side by its own ``Linear(vision → text)``.
    """

    def __init__(self, clip, tokenizer, classnames, template: str = "a photo of a {}.", n_ctx: int = 2,
                 depth: int = 9, ctx_init: str = "template") -> None:
        super().__init__(clip, tokenizer, classnames, template, n_ctx, ctx_init)
        self.depth = depth if n_ctx else 0
        if n_ctx:
            self._check_depth(depth, min(self.text_layers, self.vision_layers), "text and vision")
        self.ctx = nn.Parameter(self.ctx_init_vectors if self.n_ctx else torch.empty(0, self.text_width))
        self.proj = nn.Linear(self.text_width, self.vision_width) if self.n_ctx else None
        self.vision_deep = nn.ParameterList([_normal(n_ctx, self.vision_width) for _ in range(self.depth - 1)])
        self.proj_deep = nn.ModuleList([nn.Linear(self.vision_width, self.text_width)
                                        for _ in range(self.depth - 1)])

    def prompts(self) -> Prompts:
        if not self.n_ctx:
            return Prompts()
        vision = {i + 1: p for i, p in enumerate(self.vision_deep)}
        text = {i: proj(vision[i]) for i, proj in zip(vision, self.proj_deep)}
        return Prompts(text_first=self.ctx, text_deep=text, vision_first=self.proj(self.ctx),
                       vision_deep=vision)


@PROMPT_LEARNERS.register("pad")
class PadPrompter(PromptLearner):
    """Visual prompting with a learned border of ``pad_size`` pixels added to the normalised image
    (Bahng et al. 2022, "Exploring Visual Prompts for Adapting Large-Scale Models"; AdvVP). Text
    side: the frozen zero-shot head."""

    def __init__(self, clip, tokenizer, classnames, template: str = "a photo of a {}.", pad_size: int = 30,
                 image_size: int = 224, init_std: float = 1.0) -> None:
        super().__init__(clip, tokenizer, classnames, template, 0, "template")
        if not 0 <= 2 * pad_size < image_size:
            raise ValueError(f"pad_size {pad_size} must be in [0, {(image_size - 1) // 2}] for {image_size} px")
        p, s = pad_size, image_size
        self.pad_size = p
        self.pad_up = nn.Parameter(torch.randn(1, 3, p, s) * init_std)
        self.pad_down = nn.Parameter(torch.randn(1, 3, p, s) * init_std)
        self.pad_left = nn.Parameter(torch.randn(1, 3, s - 2 * p, p) * init_std)
        self.pad_right = nn.Parameter(torch.randn(1, 3, s - 2 * p, p) * init_std)

    def pixel(self, z: torch.Tensor) -> torch.Tensor:
        if self.pad_size == 0:
            return z
        inner = torch.zeros(1, 3, z.shape[-2] - 2 * self.pad_size, z.shape[-1] - 2 * self.pad_size,
                            device=z.device, dtype=z.dtype)
        middle = torch.cat([self.pad_left, inner, self.pad_right], dim=3)
        return z + torch.cat([self.pad_up, middle, self.pad_down], dim=2)


def create_prompt_learner(name: str, clip: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                          **kwargs) -> PromptLearner:
    return PROMPT_LEARNERS.get(name)(clip, tokenizer, classnames, **kwargs)
