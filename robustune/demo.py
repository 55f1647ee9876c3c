"""``robustune demo``: the whole pipeline on the built-in digits, resumable, in a few minutes.

1. Pre-train ``vit_tiny32`` with ERM (cached in ``cache_dir()/demo``: reruns reuse it).
2. Fine-tune it with ``pgd_at`` and with GFN and its baselines (``adv_untargeted``, ``nbr``, ``gfn``).
3. Generate digits-C once (15 corruptions × severities 1, 3, 5; cached).
4. Evaluate every model: clean accuracy, PGD-10 L∞ accuracy over a range of ε, and corruption
   accuracy with CE / mCE normalised by the ERM model.
5. CLIP: the tiny CLIP (pre-trained by the project on digits, cached) zero-shot, FAP, ER-APT and
   its two ablations, base-to-new on digits (16 shots on classes 0-4), natural and PGD accuracy.
6. Analyses (error-rank histograms, similarity heatmaps, intensity histograms) and the report:
   ``report.html`` (self-contained), ``report.md`` + PNGs, ``report.json``.

Every stage is skipped when its output exists, so an interrupted demo resumes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from robustune.config import EvalConfig, RunConfig, dump_config, load_config
from robustune.utils import cache_dir, resolve_device

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEMO_EPS = [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255]
DEMO_METHODS = ["pgd_at", "adv_untargeted", "nbr", "gfn"]
DEMO_SEVERITIES = [1, 3, 5]
CLIP_METHODS = ["zeroshot", "clip_tiny_digits_fap", "clip_tiny_digits_erapt",
                "clip_tiny_digits_erapt_noevo", "clip_tiny_digits_erapt_fixed"]


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


def ensure_digits_c(quick: bool) -> Path:
    """digits-C (test split), generated once into the cache."""
    from robustune.corruptions.generate import ensure_corrupted_dataset

    corruptions = ["gaussian_noise", "motion_blur", "contrast"] if quick else "common"
    severities = [3] if quick else DEMO_SEVERITIES
    tag = "quick" if quick else "s" + "".join(map(str, severities))
    return ensure_corrupted_dataset("digits", cache_dir() / f"digits-c-{tag}", corruptions, severities,
                                    workers=2)


def evaluate_run(run_dir: Path, out: Path, quick: bool, corruption_root: Path | None = None,
                 reference: Path | None = None):
    from robustune.eval import evaluate
    from robustune.eval.model_loading import load_run_model

    cfg = load_config(run_dir / "config.yaml")
    model, dataset, classes, info = load_run_model(cfg, run_dir, "test")
    suites = ["clean", "pgd"] + (["corruptions"] if corruption_root else [])
    ecfg = EvalConfig(suites=suites, eps=DEMO_EPS[::2] if quick else DEMO_EPS,
                      pgd_steps=3 if quick else 10)
    options = {"corruption_root": str(corruption_root)} if corruption_root else {}
    if reference is not None:
        options["reference_results"] = str(reference)
    return evaluate(model, dataset, ecfg, out, classes=classes, model_info=info["model"],
                    dataset_info=info["dataset"], device=resolve_device(cfg.train.device),
                    batch_size=cfg.data.eval_batch_size,
                    options=options)


def run_demo(out: str | Path = "runs/demo", quick: bool = False,
             methods: list[str] | None = None, clip: bool = True) -> Path:
    """Run the demo into ``out``; returns the path of ``report.md``."""
    from robustune.methods import METHODS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {"erm": ensure_pretrained(quick)}
    for method in methods or DEMO_METHODS:
        if method not in METHODS:
            log.warning("method %s is not available in this build; skipped", method)
            continue
        runs[method] = finetune(method, runs["erm"], out, quick)
    corrupted = ensure_digits_c(quick)
    reference = out / "eval" / "erm" / "results.json"
    results = {name: evaluate_run(run, out / "eval" / name, quick, corrupted, reference)
               for name, run in runs.items()}
    analysis = run_analyses(runs, corrupted, out / "analysis")
    clip_table = run_clip_stage(out / "clip", quick) if clip else None
    return write_reports(results, out, runs, analysis, clip_table)


def run_clip_stage(out: Path, quick: bool) -> Path:
    """Base-to-new on digits with the tiny CLIP: zero-shot, FAP, ER-APT, w/o evolution, w/o weighting."""
    from robustune.fewshot.protocol import ProtocolConfig, run_protocol

    base = load_config(CONFIG_DIR / "clip_tiny_digits_fap.yaml")
    methods = [m if m == "zeroshot" else str(CONFIG_DIR / f"{m}.yaml") for m in CLIP_METHODS]
    protocol = ProtocolConfig(datasets=["digits"], seeds=[1], settings=["base2new"], shots=[16],
                              methods=methods[:3] if quick else methods, eps=[1 / 255, 4 / 255],
                              pgd_steps=3 if quick else 10, n_eval=60 if quick else None,
                              overrides=[f"train.epochs={1 if quick else 5}"])
    log.info("CLIP stage: tiny CLIP base-to-new (%s)", ", ".join(CLIP_METHODS))
    run_protocol(base, protocol, out)
    return out / "table.md"


def run_analyses(runs: dict[str, Path], corrupted: Path, out: Path) -> Path:
    """GFN Sec. 3.1 analyses of the starting model and the GFN model (mistakes ranked by ERM's similarity)."""
    from robustune.analysis.run import analyze_runs

    chosen = [runs[n] for n in ("erm", "gfn") if n in runs]
    analyze_runs(chosen, corrupted, out, severity=3, shared_similarity=True)
    return out


def write_reports(results, out: Path, runs: dict[str, Path], analysis: Path,
                  clip_table: Path | None = None) -> Path:
    from robustune.report import write_report
    from robustune.utils import write_json

    evals = [out / "eval" / name for name in results]
    extra = None
    if clip_table is not None and clip_table.exists():
        extra = ("CLIP: tiny CLIP, digits base-to-new (FAP, ER-APT and ablations)",
                 clip_table.read_text())
    write_report(evals, out / "report.html", title="robustune demo — digits", analysis_dirs=[analysis],
                 extra_markdown=extra)
    md = write_report(evals, out / "report.md", title="robustune demo — digits",
                      analysis_dirs=[analysis], extra_markdown=extra)
    write_json(out / "report.json", {"models": {k: v.to_dict() for k, v in results.items()},
                                     "runs": {k: str(v) for k, v in runs.items()}})
    return md
