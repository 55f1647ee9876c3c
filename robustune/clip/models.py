"""``create_clip(name, weights)``: any open_clip architecture, weights from the hub or a local file.

Weights: ``None`` (random init, fine for timing), an open_clip pretrained tag (``"openai"``,
``"laion2b_s34b_b79k"`` …) fetched from the hub when online, or a local ``.safetensors`` /
``.pt`` / ``.bin`` file loaded with ``weights_only=True``. Offline without the file, the
:class:`~robustune.models.WeightsUnavailableError` says what to download and where to put it.
The project's tiny CLIP (``robustune-tiny-clip``) also accepts ``weights="digits"`` or
``weights="digits_pairs"``: the project's own contrastive pre-training on that built-in dataset,
cached (see :mod:`robustune.clip.tiny`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from robustune.errors import WeightsUnavailableError
from robustune.models.weights import hub_cache_only_when_offline, is_file_ref

log = logging.getLogger(__name__)

CLIP_PREFIX = "clip:"


@dataclass
class CLIPBundle:
    """An open_clip model with what a classifier needs to know about it."""

    model: nn.Module
    tokenizer: Callable
    name: str
    weights: str | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    interpolation: str = "bicubic"


def is_clip_name(name: str) -> bool:
    """``clip:<open_clip architecture>`` names a CLIP model in configs (``clip:ViT-B-32``)."""
    return name.startswith(CLIP_PREFIX)


def strip_clip_prefix(name: str) -> str:
    return name[len(CLIP_PREFIX):] if is_clip_name(name) else name


def list_clip_models(pattern: str = "*") -> list[str]:
    """open_clip architectures (including the project's tiny one)."""
    import fnmatch

    import open_clip

    from robustune.clip.tiny import register_tiny_clip

    register_tiny_clip()
    return [m for m in open_clip.list_models() if fnmatch.fnmatch(m, pattern)]


def _offline_message(name: str, tag: str, exc: Exception) -> str:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    hf = ""
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    if cfg.get("hf_hub"):
        hf = f" (Hugging Face repo 'hf-hub:{cfg['hf_hub'].rstrip('/')}')"
    return (
        f"could not get CLIP weights {name!r} / {tag!r}{hf}: {exc.__class__.__name__}: {exc}. "
        "Offline? Download open_clip_model.safetensors (or open_clip_pytorch_model.bin) on a machine "
        f"with internet and pass its path, e.g. model.weights=/path/to/{name}-{tag}.safetensors "
        f"(or warm the Hugging Face cache, HF_HOME). Known tags for {name}: {', '.join(tags) or 'none'}"
    )


def _load_file(model: nn.Module, name: str, path: str) -> None:
    import open_clip

    if not Path(path).is_file():
        raise WeightsUnavailableError(f"CLIP weights file {path!r} does not exist")
    try:
        open_clip.load_checkpoint(model, path, strict=True, weights_only=True)
    except Exception as exc:  # pickled code, wrong architecture, not a checkpoint
        raise WeightsUnavailableError(
            f"{path!r} could not be loaded into {name!r} ({exc.__class__.__name__}: {exc}). Only "
            "weights_only checkpoints of the same architecture are loaded; check model.name."
        ) from exc


@contextlib.contextmanager
def _quiet(level: int):
    previous = logging.root.manager.disable
    logging.disable(max(previous, level))
    try:
        yield
    finally:
        logging.disable(previous)


def create_clip(name: str, weights: str | None = None, **kwargs: Any) -> CLIPBundle:
    """Build an open_clip model (frozen, eval mode) and its tokenizer.

    Args:
        name: an open_clip architecture (``ViT-B-32``, ``ViT-B-16``, ``robustune-tiny-clip``),
            with or without the ``clip:`` prefix of configs.
        weights: ``None`` (random init), a pretrained tag, a local file, or ``"digits"`` /
            ``"digits_pairs"`` for the tiny CLIP pre-trained on that dataset by
            :func:`robustune.clip.tiny.pretrain_tiny_clip`.
        **kwargs: passed to ``open_clip.create_model`` (e.g. ``force_image_size``).
    """
    import open_clip

    from robustune.clip.tiny import PRETRAIN_RECIPES, TINY_CLIP, register_tiny_clip, tiny_clip_weights

    register_tiny_clip()
    arch = strip_clip_prefix(name)
    if arch not in open_clip.list_models():
        from robustune.registry import unknown_choice_message

        raise ValueError(unknown_choice_message("CLIP architecture", arch, open_clip.list_models()))
    from robustune.models.factory import keyword_error, unexpected_keyword
    from robustune.models.weights import check_weights_word

    check_weights_word(weights)
    if arch == TINY_CLIP and weights in PRETRAIN_RECIPES:
        weights = str(tiny_clip_weights(dataset=weights))
    tag = weights if weights is not None and not is_file_ref(weights) else None
    if tag is not None and not open_clip.get_pretrained_cfg(arch, tag):
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise WeightsUnavailableError(
            f"unknown pretrained tag {tag!r} for {arch!r}; valid tags: {', '.join(tags) or 'none'} "
            "(or a local weights file)"
        )
    try:
        # open_clip logs every step of model creation on the root logger (and warns "initialized
        # randomly" before we load a file): keep that out of the user's log.
        with _quiet(logging.WARNING if weights is not None and tag is None else logging.INFO), \
                (hub_cache_only_when_offline() if tag is not None else contextlib.nullcontext()):
            model = open_clip.create_model(arch, pretrained=tag, **kwargs)
    except Exception as exc:
        key = unexpected_keyword(exc, kwargs)
        if key is not None:
            named = inspect.signature(open_clip.create_model).parameters
            valid = [n for n, p in named.items() if p.kind is p.KEYWORD_ONLY or
                     (p.kind is p.POSITIONAL_OR_KEYWORD and n not in ("model_name", "pretrained"))]
            raise keyword_error(f"clip:{arch}", key, ["templates", *valid]) from exc
        if tag is None:
            raise
        raise WeightsUnavailableError(_offline_message(arch, tag, exc)) from exc
    if weights is not None and tag is None:
        _load_file(model, arch, weights)
        log.info("loaded CLIP weights for %s from %s", arch, weights)
    model.eval().requires_grad_(False)
    pp = open_clip.get_model_preprocess_cfg(model)
    size = pp.get("size", 224)
    with _quiet(logging.INFO):
        tokenizer = open_clip.get_tokenizer(arch)
    return CLIPBundle(
        model=model, tokenizer=tokenizer, name=arch, weights=weights,
        mean=tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(pp.get("std", open_clip.OPENAI_DATASET_STD)),
        image_size=int(size[-1] if isinstance(size, (tuple, list)) else size),
        interpolation=str(pp.get("interpolation", "bicubic")),
    )
