"""Typed dataclass configs, strict YAML loading and ``--set key=value`` overrides.

Every unknown key is an error that names the key, the closest valid key and all valid keys, so a
typo in a preset never silently falls back to a default. Every numeric field with an obvious domain
carries it (``field(metadata=...)``), checked when the config is built, so ``train.epochs=0`` or
``data.batch_size=0`` fails naming the key; any field named ``eps`` (configs and method params) is
an L∞ radius in [0,1] pixel units, so ``eps=8`` fails suggesting ``8/255``.
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


def ranged(default: Any, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field whose value (or each item of a list; None always allowed) must be in range."""
    bounds = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt).items() if v is not None}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"range": bounds})
    return field(default=default, metadata={"range": bounds})


_OPS = {"ge": ("≥", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
        "le": ("≤", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


def check_range(where: str, value: Any, bounds: dict[str, float]) -> None:
    """Raise :class:`ConfigError` naming ``where`` if ``value`` (or an item of it) is out of ``bounds``."""
    items = value if isinstance(value, list) else [value]
    for i, v in enumerate(items):
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        key = f"{where}[{i}]" if isinstance(value, list) else where
        for op, bound in bounds.items():
            sym, ok = _OPS[op]
            if not ok(v, bound):
                want = " and ".join(f"{_OPS[o][0]} {b:g}" for o, b in bounds.items())
                raise ConfigError(f"{key} must be {want}, got {v:g}")


def check_radius(where: str, value: Any) -> None:
    """An L∞ radius (``eps``) is in [0,1] pixel units: 8 means 8/255."""
    items = value if isinstance(value, list) else [value]
    for i, v in enumerate(items):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 <= v <= 1:
            key = f"{where}[{i}]" if isinstance(value, list) else where
            hint = f"; write {v:g}/255 (≈ {v / 255:.4f})" if 1 < v <= 255 else ""
            raise ConfigError(f"{key} = {v:g} is outside [0, 1]: ε is in pixel units of images in "
                              f"[0, 1]{hint}")


@dataclass
class DataConfig:
    name: str = "digits"
    root: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"  # None / "": no validation
    test_split: str | None = "test"
    val_fraction: float | None = ranged(None, gt=0, lt=1)  # flat folder only: seeded held-out share
    allow_empty_classes: bool = False  # folder: keep an empty class folder as a class (else an error)
    train_subset: int | None = ranged(None, ge=1)  # class-balanced subset of N training images
    shots: int | None = ranged(None, ge=1)  # K images per class (few-shot), seeded
    subset_seed: int = 0
    batch_size: int = ranged(64, ge=1)
    eval_batch_size: int = ranged(256, ge=1)
    num_workers: int | None = ranged(None, ge=0)  # None: the cores available (capped) for file datasets, 0 in memory
    pin_memory: bool | None = None  # None: on when the device is CUDA
    train_augment: str | None = None  # None | timm (create_transform, ImageNet presets) | hflip (detection)
    decode: str = "pil"  # pil | torchvision (batched decode_jpeg on the device; robustune.data.loading)
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
    lr: float = ranged(1e-3, gt=0)
    momentum: float = ranged(0.9, ge=0, lt=1)
    weight_decay: float = ranged(0.05, ge=0)
    nesterov: bool = False
    schedule: str = "cosine"  # cosine | constant | onecycle
    warmup_epochs: float = ranged(0.0, ge=0)
    warmup_lr: float | None = ranged(None, gt=0)  # constant LR during warm-up (FAP style); None = linear ramp
    min_lr: float = ranged(0.0, ge=0)
    grad_clip: float | None = ranged(None, gt=0)


@dataclass
class TrainConfig:
    epochs: int = ranged(10, ge=1)
    seed: int = ranged(0, ge=0)
    device: str = "auto"
    log_every: int = ranged(10, ge=1)
    keep_checkpoints: int = ranged(2, ge=0)  # 0 = keep all
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (= bf16 on a GPU with bf16); robustune.precision
    channels_last: bool = False
    compile: bool = False
    eval_every: int = ranged(1, ge=0)  # validation accuracy every N epochs (0 = never)
    max_steps: int | None = ranged(None, ge=1)  # stop after N optimizer steps (smoke tests); the schedule stays the full run's
    checkpoint_every: int | str | None = None  # step checkpoints too: every N steps (int ≥ 1) or a duration ("15m")
    stop_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])  # finish the step, save, exit 75
    report_to: list[str] = field(default_factory=list)  # trackers: tensorboard, wandb (robustune.tracking)


@dataclass
class EvalConfig:
    suites: list[str] = field(default_factory=lambda: ["clean", "pgd"])
    eps: list[float] = field(default_factory=lambda: [8 / 255])
    pgd_steps: int = ranged(10, ge=1)
    pgd_alpha: float | None = ranged(None, gt=0)  # None: 2.5 * eps / steps
    pgd_restarts: int = ranged(1, ge=1)
    n_examples: int | None = ranged(None, ge=1)
    split: str | None = None  # None: the run's data.test_split
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto: forward-only suites under autocast (robustune.precision)


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
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    kwargs = {}
    for key, value in data.items():
        full = f"{where}.{key}" if where else str(key)
        if key not in names:
            msg = unknown_choice_message("config key", key, names)
            msg = msg.replace(f"{key!r}", f"{full!r}", 1)
            raise ConfigError(msg.replace("Valid choices", f"Valid keys{' of ' + where if where else ''}"))
        kwargs[key] = _coerce(value, hints[key], full)
        check_range(full, kwargs[key], fields[key].metadata.get("range", {}))
        if key == "eps" or key.endswith("_eps"):
            check_radius(full, kwargs[key])
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
    """The YAML of a config. ``train.report_to`` is left out when empty: a run without trackers
    writes the config.yaml (and the cache keys hashed from it) of a robustune without them."""
    data = to_dict(cfg)
    if isinstance(data.get("train"), dict) and not data["train"].get("report_to"):
        data["train"].pop("report_to", None)
    return yaml.safe_dump(data, sort_keys=False)
