"""Typed dataclass configs, strict YAML loading and ``--set key=value`` overrides.

Every unknown key is an error that names the key, the closest valid key and all valid keys, so a
typo in a preset never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from robustune.registry import unknown_choice_message

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key is invalid; the message says which and how to fix it."""


@dataclass
class DataConfig:
    name: str = "digits"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    train_subset: int | None = None  # class-balanced subset of N training images
    shots: int | None = None  # K images per class (few-shot), seeded
    subset_seed: int = 0
    batch_size: int = 64
    eval_batch_size: int = 256
    num_workers: int = 0
    pin_memory: bool = False
    download: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific keyword arguments


@dataclass
class ModelConfig:
    name: str = "vit_tiny32"
    weights: str | None = None  # None: random init; a timm tag ("augreg_in1k"), "hub", or a file
    init_from: str | None = None  # a robustune run folder or checkpoint to start fine-tuning from
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    name: str = "erm"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "adamw"  # sgd | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    nesterov: bool = False
    schedule: str = "cosine"  # cosine | constant | onecycle
    warmup_epochs: float = 0.0
    warmup_lr: float | None = None  # constant LR during warm-up (FAP style); None = linear ramp
    min_lr: float = 0.0
    grad_clip: float | None = None


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    keep_checkpoints: int = 2
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; GPUs)
    channels_last: bool = False
    compile: bool = False
    eval_every: int = 1  # validation accuracy every N epochs (0 = never)
    max_steps: int | None = None  # stop after N optimizer steps (smoke tests); the schedule stays the full run's


@dataclass
class EvalConfig:
    suites: list[str] = field(default_factory=lambda: ["clean", "pgd"])
    eps: list[float] = field(default_factory=lambda: [8 / 255])
    pgd_steps: int = 10
    pgd_alpha: float | None = None  # None: 2.5 * eps / steps
    pgd_restarts: int = 1
    n_examples: int | None = None
    split: str = "test"
    seed: int = 0


@dataclass
class RunConfig:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def parse_number(value: Any) -> Any:
    """Accept fractions such as ``"8/255"`` wherever a float is expected."""
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip())) if "/" in value else float(value)
        except (ValueError, ZeroDivisionError):
            return value
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is list:
        (inner,) = typing.get_args(hint) or (Any,)
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(items)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is float:
        value = parse_number(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number (e.g. 0.01 or 8/255), got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys raise :class:`ConfigError`."""
    data = {} if data is None else data
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{where}.{key}" if where else str(key)
        if key not in names:
            msg = unknown_choice_message("config key", key, names)
            msg = msg.replace(f"{key!r}", f"{full!r}", 1)
            raise ConfigError(msg.replace("Valid choices", f"Valid keys{' of ' + where if where else ''}"))
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested mapping."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value (e.g. optim.lr=0.01)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML "
                              f"({getattr(exc, 'problem', None) or exc}); quote it or fix brackets") from exc
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML preset (or the defaults) and apply overrides into a :class:`RunConfig`."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} not found (presets live in configs/)")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}:{where}: YAML syntax error ({problem}); fix the file "
                              "(indentation, a missing ':' or an unclosed bracket/quote)") from exc
    data = apply_overrides(data, overrides)
    return from_dict(RunConfig, data)


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
