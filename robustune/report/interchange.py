"""Results in the formats of the field's leaderboards and benchmarks.

- RobustBench model entries (``model_info/<dataset>/<threat_model>/<Name>.json``): one entry per
  threat model — ``Linf`` / ``L2`` (clean and AutoAttack accuracy at the entry's ε) and
  ``corruptions`` (clean and mean corruption accuracy). Values are percent strings as RobustBench
  writes them. A run evaluated with PGD but not AutoAttack gets **no** ``autoattack_acc``: its PGD
  accuracy goes to ``robustune.robust_acc`` with the attack named, never under AutoAttack's name.
- CLIP_benchmark results (``{"dataset", "model", "pretrained", "task", "metrics": {"acc1": ...}}``)
  for zero-shot and prompt-tuned CLIP evaluations; robust accuracies are added to ``metrics``
  under keys naming their attack (``acc1_pgd/Linf/eps=1/255/steps=100``).
- COCO results JSON for detection (``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``),
  written by the detection suites into ``coco_results/`` beside results.json, with the ground
  truth they refer to (robustune.eval.detection.save_coco_results).

Every file carries a ``robustune`` block with n, seeds and the protocol (our addition; readers of
the original formats ignore it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustune.eval.results import Cell, EvalResults
from robustune.report.model_card import protocol_text
from robustune.files import write_json


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _provenance(results: EvalResults, cells: list[Cell]) -> dict[str, Any]:
    return {"n": {c.key: c.n for c in cells}, "protocol": {c.key: protocol_text(c) for c in cells},
            "eval_seed": results.seed, "dataset": results.dataset,
            "robustune": results.environment.get("robustune")}


def robustbench_entries(results: EvalResults, run: dict[str, Any], config: dict[str, Any]) -> dict[str, dict]:
    """threat model → a RobustBench model entry (only the threat models the run was evaluated on)."""
    model = config.get("model", {}).get("name", "")
    base = {"link": "", "name": config.get("name", ""), "authors": "", "additional_data": False,
            "number_forward_passes": 1, "dataset": config.get("data", {}).get("name", ""), "venue": "",
            "architecture": model, "reported": "", "footnote": f"robustune {config.get('method', {}).get('name', '')}"}
    clean = results.cells.get("clean")
    out: dict[str, dict] = {}
    for key, cell in results.cells.items():
        t = cell.details.get("threat_model") or {}
        if cell.metric != "robust_accuracy" or t.get("norm") not in ("Linf", "L2") or clean is None:
            continue
        entry = out.setdefault(t["norm"], {**base, "eps": t.get("eps_label"), "clean_acc": _pct(clean.value),
                                           "robustune": {"robust_acc": {}, **_provenance(results, [clean])}})
        if entry["eps"] != t.get("eps_label"):
            continue  # one ε per entry, as in RobustBench: the first evaluated
        if key.startswith("adversarial/autoattack"):
            entry["autoattack_acc"] = _pct(cell.value)
        entry["robustune"]["robust_acc"][key] = {"value": _pct(cell.value), "attack": protocol_text(cell)}
        entry["robustune"]["n"][key] = cell.n
    mca = results.cells.get("corruptions/mean_corruption_accuracy")
    if mca is not None and clean is not None:
        out["corruptions"] = {**base, "eps": None, "clean_acc": _pct(clean.value), "corruptions_acc": _pct(mca.value),
                              "robustune": _provenance(results, [clean, mca])}
        mce = results.cells.get("corruptions/mCE")
        if mce is not None:
            out["corruptions"]["robustune"]["mCE"] = {"value": f"{mce.value:.2f}",
                                                      "normalizer": mce.details.get("normalizer")}
    return out


def clip_benchmark_result(results: EvalResults, config: dict[str, Any]) -> dict[str, Any]:
    """A CLIP_benchmark-style result of one CLIP evaluation (zero-shot or prompt-tuned)."""
    model = str(config.get("model", {}).get("name", "")).removeprefix("clip:")
    method = config.get("method", {}).get("name", "")
    metrics = {}
    cells = []
    for key, cell in results.cells.items():
        if cell.metric not in ("top1_accuracy", "robust_accuracy"):
            continue
        metrics["acc1" if key == "clean" else f"acc1_{key}"] = cell.value
        cells.append(cell)
    return {"dataset": results.dataset.get("name"), "model": model,
            "pretrained": config.get("model", {}).get("weights"),
            "task": "zeroshot_classification" if method == "zeroshot" else "prompt_tuned_classification",
            "metrics": metrics, "language": "en",
            "robustune": {"method": method, "split": results.dataset.get("split"), **_provenance(results, cells)}}


def write_interchange(results: EvalResults, run: dict[str, Any], config: dict[str, Any], out: Path) -> list[Path]:
    """robustbench_<threat>.json (classifiers) or clip_benchmark.json (CLIP runs) into ``out``."""
    out = Path(out)
    if str(config.get("model", {}).get("name", "")).startswith("clip:"):
        path = out / "clip_benchmark.json"
        write_json(path, clip_benchmark_result(results, config))
        return [path]
    written = []
    for threat, entry in robustbench_entries(results, run, config).items():
        written.append(out / f"robustbench_{threat}.json")
        write_json(written[-1], entry)
    return written

