"""``create_classifier(name, num_classes, weights=...)``: project tiny models or any timm model.

Weights: ``None`` (random init), a timm pretrained tag (``"augreg_in1k"``) or ``"hub"`` (timm's
default tag) fetched from the hub when online, or a local ``.safetensors`` / ``.pth`` file, always
loaded with ``weights_only=True``. Offline without the file, :class:`WeightsUnavailableError` says
what to download and where to put it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from robustune.config import ConfigError
from robustune.errors import WeightsUnavailableError  # defined there (light), re-exported here
from robustune.models.wrapper import Classifier
from robustune.registry import Registry, unknown_choice_message

log = logging.getLogger(__name__)




@dataclass
class ModelEntry:
    fn: Callable[..., nn.Module]
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    input_size: tuple[int, int, int] = (3, 32, 32)
    extra: dict[str, Any] = field(default_factory=dict)


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, **meta: Any) -> Callable:
    """Register a project model builder ``fn(num_classes, **kwargs) -> nn.Module`` with its data config."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(name, ModelEntry(fn=fn, **meta))
        return fn

    return deco


def list_models(pattern: str = "*", include_timm: bool = False) -> list[str]:
    names = MODELS.list(pattern)
    if include_timm:
        import timm

        names += timm.list_models(pattern)
    return names


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "model.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` or a ``.pth``/``.pt``/``.bin`` file (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # truncated, zero-length, bad header, a pickle renamed .safetensors
            raise WeightsUnavailableError(
                f"{str(path)!r} is not a readable safetensors file ({exc.__class__.__name__}: {exc}): "
                "it is truncated or corrupted, or not safetensors at all. Restore it, or write it "
                "again (a run's model.safetensors: delete it and `robustune train CONFIG --out RUN "
                "--resume` re-exports it from the last checkpoint)"
            ) from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with code, or not a checkpoint at all
        raise WeightsUnavailableError(
            f"refusing to load {str(path)!r}: it is not a plain tensor checkpoint ({exc.__class__.__name__}). "
            "Only weights_only checkpoints are loaded; convert it to .safetensors from a trusted source."
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsUnavailableError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return obj


def load_state_dict_file(model: nn.Module, path: str | os.PathLike) -> None:
    """Load ``path`` into ``model`` strictly; a mismatch names the architecture/class-count problem."""
    state = read_state_dict(path)
    own = model.state_dict()
    if set(state) != set(own):
        state = _strip_prefixes(state)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or shape:
        parts = []
        if shape:
            k, got, want = shape[0]
            parts.append(f"{len(shape)} shape mismatch(es), e.g. {k}: file {got} vs model {want}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise WeightsUnavailableError(
            f"{str(path)!r} does not fit this model ({'; '.join(parts)}). It was saved for another "
            "architecture or class count: check model.name and the dataset's number of classes."
        )
    model.load_state_dict(state)


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached (one connection attempt), or None when it can.

    huggingface_hub retries a refused or timed-out connection with back-off (~20 "Retrying in 8s"
    lines over a minute); one quick attempt first lets an offline machine fail in seconds.
    """
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port} is unreachable ({exc.__class__.__name__}: {exc})"
    return None


@contextlib.contextmanager
def hub_cache_only_when_offline() -> Iterator[str | None]:
    """Yield why the hub is unreachable (None when reachable); while unreachable, the hub runs in
    offline mode, so cached weights still load and missing ones fail at once (no retries)."""
    from huggingface_hub import constants

    reason = hub_unreachable_reason()
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or reason is not None
    try:
        yield reason
    finally:
        constants.HF_HUB_OFFLINE = saved


def _timm_backbone(name: str, num_classes: int, weights: str | None, **kwargs: Any) -> nn.Module:
    import timm

    base = name.split(".")[0]
    if not timm.is_model(base):
        choices = MODELS.list() + ["<any timm model, see timm.list_models()>"]
        raise ValueError(unknown_choice_message("model", name, choices))
    pretrained = weights is not None and not _is_file_ref(weights)
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


NO_WEIGHTS_WORDS = ("none", "null", "random", "scratch", "")


def check_weights_word(weights: str | None) -> None:
    """``model.weights: none`` (a string) is a tag lookup doomed to fail: say how to get random init."""
    if isinstance(weights, str) and weights.strip().lower() in NO_WEIGHTS_WORDS:
        raise WeightsUnavailableError(
            f"model.weights={weights!r} is read as a weights tag; for random initialisation use "
            "`model.weights: null` in YAML (--set model.weights=null)"
        )


def _is_file_ref(weights: str) -> bool:
    return weights.endswith((".safetensors", ".pth", ".pt", ".bin")) or os.sep in weights


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
        if weights is not None and not _is_file_ref(weights):
            raise WeightsUnavailableError(
                f"{name!r} is a project model with no hub weights; pass a local file "
                "(model.weights=/path/model.safetensors) or model.init_from=<run folder>"
            )
        meta = dict(mean=entry.mean, std=entry.std, input_size=entry.input_size, **entry.extra)
    else:
        try:
            backbone = _timm_backbone(name, num_classes, weights, **kwargs)
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
    if weights is not None and _is_file_ref(weights):
        load_state_dict_file(model.backbone, weights)
        log.info("loaded weights for %s from %s", name, weights)
    return model


# Register the project's tiny models.
from robustune.models import tiny as _tiny  # noqa: E402,F401
