"""``robustune eval`` as a library call on a run folder."""

from __future__ import annotations

from pathlib import Path

from robustune.config import ConfigError, check_radius, load_config, parse_number


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


def run_eval(run: Path, suite: str, eps: str, steps: int, attacks: str, n_examples, split: str | None,
             out: Path | None, options: list[str], seed: int, device: str | None = None,
             precision: str | None = None):
    """Evaluate run folder ``run`` on ``device`` (default: the run's ``train.device``; auto = CUDA if present)
    and ``split`` (default: the run's ``data.test_split``) under ``precision`` (default: the run's
    ``eval.precision``), loading batches as the run's ``data`` section says."""
    from robustune.config import EvalConfig
    from robustune.data.loading import LoaderOptions
    from robustune.eval import evaluate
    from robustune.eval.model_loading import load_run_model
    from robustune.utils import resolve_device

    cfg_path = Path(run) / "config.yaml"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run} is not a run folder (no config.yaml); train one with `robustune train`")
    cfg = load_config(cfg_path)
    ecfg = EvalConfig(suites=parse_list(suite), eps=parse_eps_list(eps), pgd_steps=steps,
                      n_examples=n_examples, split=split or cfg.data.test_split, seed=seed,
                      precision=precision or cfg.eval.precision)
    model, dataset, classes, info = load_run_model(cfg, Path(run), ecfg.split)
    opts = parse_options(options)
    if attacks:
        opts["attacks"] = parse_list(attacks)
    return evaluate(model, dataset, ecfg, out or Path(run) / "eval", classes=classes,
                    model_info=info["model"], dataset_info=info["dataset"],
                    device=resolve_device(device or cfg.train.device, "--device" if device else "train.device"),
                    batch_size=cfg.data.eval_batch_size, options=opts,
                    loader=LoaderOptions.from_config(cfg.data))
