"""Parsing of the evaluation options that several commands share (``--eps``, ``--option``, ...)."""

from __future__ import annotations

from robustune.config import ConfigError, EvalConfig, check_radius, parse_number


def parse_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_eps_list(text: str) -> list[float]:
    values = [parse_number(t) for t in parse_list(text)]
    bad = [v for v in values if not isinstance(v, (int, float))]
    if bad:
        raise ConfigError(f"--eps values must be numbers or fractions like 8/255, got {bad[0]!r}")
    for v in values:
        check_radius("--eps", v)
    return [float(v) for v in values]


def parse_options(items: list[str]) -> dict[str, object]:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--option {item!r} must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def eval_config(suite: str, eps: str, steps: int, n_examples: int | None, split: str | None,
                seed: int) -> EvalConfig:
    """The evaluation settings of ``robustune eval``'s options."""
    return EvalConfig(suites=parse_list(suite), eps=parse_eps_list(eps), pgd_steps=steps,
                      n_examples=n_examples, split=split, seed=seed)
