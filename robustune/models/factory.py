"""``create_classifier(name, num_classes, weights=...)``: project tiny models or any timm model.

Weights: ``None`` (random init), a timm pretrained tag (``"augreg_in1k"``) or ``"hub"`` (timm's
default tag) fetched from the hub when online, or a local ``.safetensors`` / ``.pth`` file, always
loaded with ``weights_only=True``. Offline without the file, :class:`WeightsUnavailableError` says
what to download and where to put it.
"""

from __future__ import annotations

import inspect
import logging
import re
from typing import Any, Callable

import torch
from torch import nn

from robustune.config import ConfigError
from robustune.errors import WeightsUnavailableError
from robustune.models import tiny as _tiny  # noqa: F401  (registers the project's tiny models)
from robustune.models.registry import MODELS
from robustune.models.weights import (
    check_weights_word,
    hub_cache_only_when_offline,
    is_file_ref,
    load_state_dict_file,
)
from robustune.models.wrapper import Classifier
from robustune.registry import unknown_choice_message

log = logging.getLogger(__name__)


def timm_backbone(name: str, num_classes: int, weights: str | None, **kwargs: Any) -> nn.Module:
    import timm

    base = name.split(".")[0]
    if not timm.is_model(base):
        choices = MODELS.list() + ["<any timm model, see timm.list_models()>"]
        raise ValueError(unknown_choice_message("model", name, choices))
    pretrained = weights is not None and not is_file_ref(weights)
    full = name if (not pretrained or weights == "hub" or "." in name) else f"{base}.{weights}"
    if not pretrained:
        return timm.create_model(full, pretrained=False, num_classes=num_classes, **kwargs)
    offline = None
    try:
        with hub_cache_only_when_offline() as offline:
            return timm.create_model(full, pretrained=True, num_classes=num_classes, **kwargs)
    except Exception as exc:
        if unexpected_keyword(exc, kwargs):
            raise
        hub_id = ""
        try:
            cfg = timm.models.get_pretrained_cfg(full.split(".", 1)[0] + ("." + full.split(".", 1)[1] if "." in full else ""))
            hub_id = getattr(cfg, "hf_hub_id", "") or ""
        except Exception:
            pass
        where = f" (Hugging Face repo 'hf-hub:{hub_id}')" if hub_id else ""
        why = f"not in the local cache and the hub is offline: {offline}" if offline else \
            f"{exc.__class__.__name__}: {exc}"
        raise WeightsUnavailableError(
            f"could not get pretrained weights {full!r}{where}: {why}. "
            "Offline? Download model.safetensors on a machine with internet and pass its path, "
            f"e.g. model.weights=/path/to/{base}.safetensors (or warm the Hugging Face cache, HF_HOME)."
        ) from exc


def unexpected_keyword(exc: Exception, kwargs: dict[str, Any]) -> str | None:
    """The user's keyword a builder rejected ("got an unexpected keyword argument 'x'"), if any."""
    match = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
    return match.group(1) if isinstance(exc, TypeError) and match and match.group(1) in kwargs else None


def keyword_error(model: str, key: str, valid: list[str]) -> ConfigError:
    """``model.kwargs.<key>`` is unknown: name the closest valid keyword and all of them."""
    msg = unknown_choice_message(f"keyword of model {model!r}", f"model.kwargs.{key}",
                                 [f"model.kwargs.{v}" for v in valid] or ["(none)"])
    return ConfigError(msg.replace("Valid choices", "Valid keywords"))


def _raise_for_keyword(exc: TypeError, kwargs: dict[str, Any], name: str,
                       build_plain: Callable[[], nn.Module]) -> None:
    key = unexpected_keyword(exc, kwargs)
    if key is None:
        return
    with torch.device("meta"):  # only for its class signature: no memory, no weights
        cls = type(build_plain())
    params = inspect.signature(cls.__init__).parameters.values()
    valid = [p.name for p in params if p.name not in ("self", "num_classes")
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    raise keyword_error(name, key, valid) from exc


def create_classifier(name: str, num_classes: int, weights: str | None = None,
                      **kwargs: Any) -> Classifier:
    """Build a [0,1]-input classifier.

    Args:
        name: a registered project model (``list_models()``) or any timm model name.
        num_classes: size of the classification head.
        weights: ``None`` for random init, a timm tag / ``"hub"`` to download, or a local file.
        **kwargs: passed to the model builder.
    """
    check_weights_word(weights)
    if name in MODELS:
        entry = MODELS.get(name)
        try:
            backbone = entry.fn(num_classes=num_classes, **kwargs)
        except TypeError as exc:
            _raise_for_keyword(exc, kwargs, name, lambda: entry.fn(num_classes=2))
            raise
        if weights is not None and not is_file_ref(weights):
            raise WeightsUnavailableError(
                f"{name!r} is a project model with no hub weights; pass a local file "
                "(model.weights=/path/model.safetensors) or model.init_from=<run folder>"
            )
        meta = dict(mean=entry.mean, std=entry.std, input_size=entry.input_size, **entry.extra)
    else:
        try:
            backbone = timm_backbone(name, num_classes, weights, **kwargs)
        except TypeError as exc:
            import timm

            _raise_for_keyword(exc, kwargs, name,
                               lambda: timm.create_model(name.split(".")[0], pretrained=False, num_classes=2))
            raise
        cfg = getattr(backbone, "pretrained_cfg", {}) or {}
        meta = dict(mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                    std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
                    input_size=tuple(cfg.get("input_size", (3, 224, 224))),
                    crop_pct=float(cfg.get("crop_pct", 0.875)),
                    interpolation=str(cfg.get("interpolation", "bicubic")))
        if kwargs.get("img_size"):  # model.kwargs.img_size resizes the model: the data follows it
            size = kwargs["img_size"]
            h, w = (size, size) if isinstance(size, int) else tuple(size)
            meta["input_size"] = (meta["input_size"][0], h, w)
    model = Classifier(backbone, num_classes=num_classes, name=name, **meta)
    if weights is not None and is_file_ref(weights):
        load_state_dict_file(model.backbone, weights)
        log.info("loaded weights for %s from %s", name, weights)
    return model
