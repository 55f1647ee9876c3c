"""What a few-shot table adds after its cells (ours): AutoAttack on a fixed subset, per-seed paired
differences between methods, and the range of ER-APT's dynamic loss weights.

- :func:`autoattack_subset`: AutoAttack (standard, L∞) on the first ``n`` images of each evaluated
  side's fixed seeded subset (``EvalConfig.seed`` 0: the same images for every method and seed),
  for the finished cells of the chosen seeds → ``<cell>/aa_<side>/`` (resumable) and
  ``<cell>/autoattack.json`` (robust accuracy per side, their harmonic mean for base-to-new, n).
- :func:`paired_table`: per-seed differences of the harmonic mean (base-to-new) between methods
  trained on the same seed (same shots, same test images), from
  :func:`robustune.report.compare.compare_seeds` — the seed-to-seed noise of a comparison is the
  std of the paired difference, not the two rows' stds.
- :func:`weights_table`: min–max of ``w_nat`` / ``w_adv`` over every logged step of every seed
  (``weights.jsonl``), each run's own range of ``w_adv``, and the number of collapses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from robustune.files import read_json, write_json

AA_FILE = "autoattack.json"


def autoattack_subset(cells: Iterable[Any], n: int, eps: float, seeds: Iterable[int]) -> list[dict]:
    """AutoAttack on ``n`` images per evaluated side of each finished cell of ``seeds`` (skipped if done)."""
    from robustune.config import EvalConfig
    from robustune.fewshot.table import harmonic_mean
    from robustune.runs.evaluate import evaluate_run

    seeds, records = set(seeds), []
    for cell in cells:
        if cell.seed not in seeds or not (cell.run_dir / "cell.json").is_file():
            continue
        path = cell.run_dir / AA_FILE
        if path.is_file():
            records.append(read_json(path))
            continue
        ecfg = EvalConfig(suites=["adversarial"], eps=[eps], n_examples=n, split="test", seed=0)
        record: dict[str, Any] = {"method": cell.method, "seed": cell.seed, "eps": eps}
        for side, cfg in cell.evals.items():
            results, _ = evaluate_run(cell.run_dir, ecfg, cell.run_dir / f"aa_{side}", cfg=cfg, split="test",
                                      options={"attacks": "autoattack", "sanity_eps0": False},
                                      check_weights_classes=False, dataset_info=cfg.data.options)
            robust = next(c for c in results.cells.values() if c.metric == "robust_accuracy")
            record[side] = {"robust": robust.value, "n": robust.n}
        if {"base", "new"} <= set(record):
            record["hm"] = harmonic_mean(record["base"]["robust"], record["new"]["robust"])
        write_json(path, record)
        records.append(record)
    return records


def autoattack_markdown(records: list[dict]) -> str:
    if not records:
        return ""
    sides = [s for s in ("base", "new", "all") if any(s in r for r in records)]
    lines = ["| method | seed | n per side | " + " | ".join(f"AA {s}" for s in sides)
             + (" | AA HM |" if "base" in sides else " |"), "|---|---|---|" + "---|" * (len(sides) + ("base" in sides))]
    for r in sorted(records, key=lambda r: (r["method"], r["seed"])):
        cells = [f"{100 * r[s]['robust']:.1f}" if s in r else "–" for s in sides]
        if "base" in sides:
            cells.append(f"{100 * r['hm']:.1f}" if "hm" in r else "–")
        lines.append(f"| {r['method']} | {r['seed']} | {r[sides[0]]['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_table(folders: dict[str, Path], pairs: Iterable[tuple[str, str]],
                 metrics: dict[str, str]) -> str:
    """Rows ``A − B`` for each pair of method labels (``folders``: label → its seed folders' parent),
    one column per ``metrics`` entry (column title → cell key, e.g. ``HM:clean``), in points."""
    from robustune.report.compare import compare_seeds

    lines = ["| comparison (A − B, points) | seeds | " + " | ".join(metrics) + " |",
             "|---|---|" + "---|" * len(metrics)]
    for a, b in pairs:
        if a not in folders or b not in folders:
            continue
        try:
            by_key = {s.key: s for s in compare_seeds(folders[a], folders[b])}
        except (ValueError, FileNotFoundError):
            continue  # a method with no finished seed yet
        cells = [by_key.get(key) for key in metrics.values()]
        if None in cells:
            continue
        seeds = sorted(cells[0].differences)
        lines.append(f"| {a} − {b} | {','.join(map(str, seeds))} | " + " | ".join(
            f"{100 * c.mean:+.1f} ± {100 * c.std:.1f} ({c.a_better}/{len(c.differences)} > 0)" for c in cells) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def weights_table(folders: dict[str, Path]) -> str:
    """Range of the logged loss weights per method label (only methods that log them)."""
    import statistics

    lines = ["| method | runs | w_nat min–max | w_adv min–max | w_adv range per run (mean) | collapses |",
             "|---|---|---|---|---|---|"]
    for label, folder in folders.items():
        runs = []
        for path in sorted(folder.glob("seed*/weights.jsonl")):
            rows = {}
            for line in path.read_text().splitlines():
                row = json.loads(line)
                rows[row["step"]] = row  # after a resume the last line of a step wins
            if rows:
                runs.append(list(rows.values()))
        if not runs:
            continue
        nat = [r["w_nat"] for run in runs for r in run]
        adv = [r["w_adv"] for run in runs for r in run]
        spread = statistics.fmean(max(r["w_adv"] for r in run) - min(r["w_adv"] for r in run) for run in runs)
        collapses = sum(int(run[-1].get("collapses", 0)) for run in runs)
        lines.append(f"| {label} | {len(runs)} | {min(nat):.2f}–{max(nat):.2f} | {min(adv):.2f}–{max(adv):.2f} | "
                     f"{spread:.2f} | {collapses} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""
