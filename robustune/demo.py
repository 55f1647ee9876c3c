"""``robustune demo``: the whole pipeline on the built-in digits, resumable, in a few minutes.

1. Pre-train ``vit_tiny32`` with ERM (cached in ``cache_dir()/demo``: reruns reuse it).
2. Fine-tune it with each demo method (``pgd_at``; GFN and its baselines when registered).
3. Evaluate every model: clean accuracy and PGD-10 L∞ accuracy over a range of ε.
4. Write ``report.md`` + ``report.json`` with a table and the accuracy-vs-ε plot.

Every stage is skipped when its output exists, so an interrupted demo resumes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from robustune.config import EvalConfig, RunConfig, dump_config, load_config
from robustune.utils import cache_dir

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEMO_EPS = [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255]
DEMO_METHODS = ["pgd_at", "adv_untargeted", "nbr", "gfn"]


def demo_config(name: str, overrides: list[str] | None = None) -> RunConfig:
    path = CONFIG_DIR / f"{name}_digits.yaml"
    if not path.exists():
        raise FileNotFoundError(f"demo preset {path} is missing (run the demo from a source checkout)")
    return load_config(path, overrides)


def _quick(quick: bool, epochs: int) -> list[str]:
    return [f"train.epochs={epochs}"] if quick else []


def ensure_pretrained(quick: bool = False) -> Path:
    """The cached ERM model (trained on first use; resumed if a previous run was interrupted)."""
    from robustune.engine import train

    cfg = demo_config("erm", _quick(quick, 3))
    digest = hashlib.sha256(dump_config(cfg).encode()).hexdigest()[:10]
    run_dir = cache_dir() / "demo" / f"erm_digits-{digest}"
    if (run_dir / "model.safetensors").exists():
        log.info("using the cached ERM model %s", run_dir)
        return run_dir
    log.info("pre-training vit_tiny32 with ERM on digits (cached in %s)", run_dir)
    train(cfg, run_dir, resume=True)
    return run_dir


def finetune(method: str, init_from: Path, out: Path, quick: bool) -> Path:
    from robustune.engine import train

    run_dir = out / method
    if (run_dir / "model.safetensors").exists():
        log.info("%s: already trained (%s)", method, run_dir)
        return run_dir
    cfg = demo_config(method, [f"model.init_from={init_from}", *_quick(quick, 1)])
    log.info("fine-tuning with %s", method)
    train(cfg, run_dir, resume=True)
    return run_dir


def evaluate_run(run_dir: Path, out: Path, quick: bool):
    from robustune.eval import evaluate
    from robustune.eval.model_loading import load_run_model

    cfg = load_config(run_dir / "config.yaml")
    model, dataset, classes, info = load_run_model(cfg, run_dir, "test")
    ecfg = EvalConfig(suites=["clean", "pgd"], eps=DEMO_EPS[::2] if quick else DEMO_EPS,
                      pgd_steps=3 if quick else 10)
    return evaluate(model, dataset, ecfg, out, classes=classes, model_info=info["model"],
                    dataset_info=info["dataset"], batch_size=cfg.data.eval_batch_size)


def run_demo(out: str | Path = "runs/demo", quick: bool = False,
             methods: list[str] | None = None) -> Path:
    """Run the demo into ``out``; returns the path of ``report.md``."""
    from robustune.methods import METHODS
    from robustune.report.demo import write_demo_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {"erm": ensure_pretrained(quick)}
    for method in methods or DEMO_METHODS:
        if method not in METHODS:
            log.warning("method %s is not available in this build; skipped", method)
            continue
        runs[method] = finetune(method, runs["erm"], out, quick)
    results = {name: evaluate_run(run, out / "eval" / name, quick) for name, run in runs.items()}
    return write_demo_report(results, out, runs)
