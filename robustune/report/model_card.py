"""The README.md model card of an exported run: Hub metadata, every number with its full protocol.

The card's YAML front matter is what the Hugging Face Hub reads (``library_name``, ``license``,
``tags``, ``datasets``, ``pipeline_tag``); the results table gives each evaluated cell with its
suite, threat model (norm, ε, steps, step size, restarts), n, the evaluation seed and subset, the
training seed and the precision, and the method's paper. Nothing is recomputed: the numbers are
the run's ``results.json``.
"""

from __future__ import annotations

from typing import Any

from robustune.eval.results import Cell, EvalResults

# The papers of the methods robustune trains (the GFN and ER-APT rows are the two papers it implements).
METHOD_PAPERS = {
    "erm": "empirical risk minimisation (standard fine-tuning)",
    "gfn": "Yang et al., *Gain from Neighbors: Boosting Model Robustness in the Wild via Adversarial "
           "Perturbations Toward Neighboring Classes* (GFN)",
    "nbr": "GFN's neighbour-perturbation baseline without the distance-weighted loss (Yang et al., GFN Table 3)",
    "adv_untargeted": "GFN's untargeted single-step baseline (Yang et al., GFN Table 3)",
    "pgd_at": "Madry et al., *Towards Deep Learning Models Resistant to Adversarial Attacks*, ICLR 2018",
    "trades": "Zhang et al., *Theoretically Principled Trade-off between Robustness and Accuracy*, ICML 2019",
    "erapt": "*Evolution-based Region Adversarial Prompt Learning for Robustness Enhancement in "
             "Vision-Language Models* (ER-APT)",
    "fap": "Zhou et al., *Few-Shot Adversarial Prompt Learning on Vision-Language Models* (FAP), NeurIPS 2024",
}
PERCENT = ("mCE", "relative_mCE", "CE", "unnormalized_mCE", "unnormalized_CE")


def _value(cell: Cell) -> str:
    """Percent metrics as stored, fractions ×100 with a % sign, anything else as is."""
    if cell.metric in PERCENT:
        return f"{cell.value:.2f}"
    if cell.metric.endswith("accuracy") or cell.metric in ("mAP", "mPC", "rPC"):
        return f"{100 * cell.value:.2f} %"
    return f"{cell.value:.4g}"


def protocol_text(cell: Cell) -> str:
    """A cell's threat model (norm, ε, steps, restarts, step size, loss) or corruption, in words."""
    t = cell.details.get("threat_model") or {}
    if t:
        parts = [f"{t.get('norm', '?')} ε = {t.get('eps_label', t.get('eps'))}"]
        for key, label in (("steps", "steps"), ("restarts", "restarts")):
            if t.get(key) is not None:
                parts.append(f"{t[key]} {label}")
        if t.get("step_size") is not None:
            parts.append(f"step {t['step_size'] * 255:.3g}/255")
        if t.get("attacks"):
            parts.append("+".join(map(str, t["attacks"])))
        if t.get("loss"):
            parts.append(f"{t['loss']} loss")
        return ", ".join(parts)
    if "corruption" in cell.details:
        return f"{cell.details['corruption']}, severity {cell.details.get('severity')}"
    if cell.details.get("normalizer"):
        return f"normalised by {cell.details['normalizer']}"
    return "—"


def results_table(results: EvalResults, train_seed: int | None, precision: str) -> list[str]:
    """Markdown rows: metric, value, suite, protocol, n, seeds, precision."""
    ds = results.dataset
    subset = f"seeded subset of {ds.get('n_images')}" if ds.get("subset_seed") is not None else "all images"
    seeds = f"eval {results.seed}, train {train_seed if train_seed is not None else '?'}"
    lines = ["| cell | metric | value | suite | protocol | n | seeds | precision |",
             "|---|---|---|---|---|---|---|---|"]
    for key, cell in results.cells.items():
        lines.append(f"| `{key}` | {cell.metric} | {_value(cell)} | {cell.suite} | {protocol_text(cell)} | "
                     f"{cell.n if cell.n is not None else '—'} | {seeds} | {precision} |")
    lines.append("")
    lines.append(f"Evaluated on {ds.get('name')} split `{ds.get('split')}` ({subset}), fp32, with robustune "
                 f"{results.environment.get('robustune', '?')}; each accuracy's 95 % Wilson interval and "
                 "per-image outcomes are in `results.json` beside this card.")
    return lines


def model_card(*, title: str, run: dict[str, Any], config: dict[str, Any], results: EvalResults | None,
               license: str, tags: list[str], library: str = "timm", how_to_load: str = "") -> str:
    """The README.md text (Hub front matter, description, results with protocols, provenance)."""
    method = config.get("method", {}).get("name", "?")
    dataset = config.get("data", {}).get("name", "?")
    front = ["---", f"library_name: {library}", f"license: {license}", "tags:",
             *[f"- {t}" for t in tags], "pipeline_tag: image-classification", "datasets:", f"- {dataset}", "---", ""]
    body = [f"# {title}", "",
            f"A `{config.get('model', {}).get('name')}` model trained with **{method}** by "
            f"robustune on `{dataset}`.", "",
            f"- Method: {METHOD_PAPERS.get(method, method)}.",
            f"- Method parameters: `{config.get('method', {}).get('params', {})}`; training seed "
            f"{run.get('seed')}, {run.get('steps', '?')} steps, precision {config.get('train', {}).get('precision', 'fp32')}.",
            f"- Robustune {run.get('robustune', '?')}, commit {run.get('git_commit') or '?'}.", ""]
    if run.get("compute"):
        c = run["compute"]
        body += [f"- Training cost (measured): {c.get('forward_passes_per_step')} forward + "
                 f"{c.get('backward_passes_per_step')} backward passes per step, "
                 f"{c.get('seconds_per_step')} s per step on {run.get('hardware', {}).get('cuda') or 'CPU'}.", ""]
    if how_to_load:
        body += ["## How to load", "", "```python", how_to_load, "```", ""]
    body += ["## Results", ""]
    if results is None:
        body += ["Not evaluated yet (`robustune eval RUN`, then export again).", ""]
    else:
        body += results_table(results, run.get("seed"), "fp32") + [""]
    body += ["Inputs are RGB images resized and centre-cropped as `config.json`'s `pretrained_cfg` says, "
             "then normalised with its mean and std (timm's data config).", ""]
    return "\n".join(front + body)
