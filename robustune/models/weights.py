"""Weights files and the hub: read a state dict (``weights_only=True``), load it strictly into a
model, and keep an offline machine from retrying the hub for a minute."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from robustune.errors import WeightsUnavailableError


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


NO_WEIGHTS_WORDS = ("none", "null", "random", "scratch", "")


def check_weights_word(weights: str | None) -> None:
    """``model.weights: none`` (a string) is a tag lookup doomed to fail: say how to get random init."""
    if isinstance(weights, str) and weights.strip().lower() in NO_WEIGHTS_WORDS:
        raise WeightsUnavailableError(
            f"model.weights={weights!r} is read as a weights tag; for random initialisation use "
            "`model.weights: null` in YAML (--set model.weights=null)"
        )


def is_file_ref(weights: str) -> bool:
    return weights.endswith((".safetensors", ".pth", ".pt", ".bin")) or os.sep in weights
