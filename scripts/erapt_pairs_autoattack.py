"""AutoAttack (standard, L∞) at ε = 1/255 on a fixed subset of the base and new test images, for every
finished cell of scripts/erapt_pairs_results.sh (issue 20).

Usage: ``python scripts/erapt_pairs_autoattack.py OUT [--n 100] [--groups a,b,c,d,e,f]`` → for each cell
``<cell>/aa_{base,new}/`` (the ``adversarial`` suite's results, resumable), ``<cell>/autoattack.json`` (robust
accuracy on base and new, their HM, and n) and ``OUT/table/autoattack.json``, all cells' records by method and
seed (rebuilt from the cells' files, so parallel runs of this script do not overwrite each other). The subset is the evaluation's fixed
seeded subset (``EvalConfig.seed`` 0): the same images for every method and seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robustune.config import EvalConfig, load_config, parse_number
from robustune.fewshot.protocol import eval_only, fewshot_config
from robustune.fewshot.table import harmonic_mean
from robustune.files import write_json

GROUPS = {"a": ["zeroshot", "configs/clip_tiny_digits_pairs_fap.yaml"],
          "b": ["configs/clip_tiny_digits_pairs_fap_eqcompute.yaml"],
          "c": ["configs/clip_tiny_digits_pairs_erapt_fixed.yaml"], "d": ["configs/clip_tiny_digits_pairs_erapt.yaml"],
          "e": ["configs/clip_tiny_digits_pairs_erapt_noevo.yaml"], "f": ["configs/clip_tiny_digits_pairs_coop.yaml"]}
BASE = "configs/clip_tiny_digits_pairs_fap.yaml"
CELL_FILE = "autoattack.json"


def method_config(entry: str):
    """The training config of a method entry as the protocol builds it (zero-shot: the base config)."""
    cfg = load_config(BASE if entry == "zeroshot" else entry, ["train.epochs=2"])
    if entry == "zeroshot":
        from robustune.config import MethodConfig

        cfg.method = MethodConfig(name="zeroshot", params={})
    return cfg


def autoattack_cell(run_dir: Path, mcfg, seed: int, n: int, eps: float) -> dict:
    from robustune.runs.evaluate import evaluate_run

    ecfg = EvalConfig(suites=["adversarial"], eps=[eps], n_examples=n, split="test", seed=0)
    out = {}
    for side in ("base", "new"):
        cfg = eval_only(fewshot_config(mcfg, "digits_pairs", side, 16, seed, run_dir.name))
        results, _ = evaluate_run(run_dir, ecfg, run_dir / f"aa_{side}", cfg=cfg, split="test",
                                  options={"attacks": "autoattack", "sanity_eps0": False},
                                  check_weights_classes=False, dataset_info=cfg.data.options)
        cell = next(c for c in results.cells.values() if c.metric == "robust_accuracy")
        out[side] = {"robust": cell.value, "n": cell.n}
    out["hm"] = harmonic_mean(out["base"]["robust"], out["new"]["robust"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=100, help="test images per side (fixed seeded subset)")
    ap.add_argument("--eps", default="1/255")
    ap.add_argument("--groups", default=",".join(GROUPS))
    ap.add_argument("--seeds", default="1,2,3,4,5")
    args = ap.parse_args()
    eps = parse_number(args.eps)
    for group in args.groups.split(","):
        for entry in GROUPS[group]:
            mcfg = method_config(entry)
            for seed in map(int, args.seeds.split(",")):
                run_dir = args.out / group / "base2new" / "digits_pairs" / "16shot" / mcfg.method.name / f"seed{seed}"
                if not (run_dir / "cell.json").is_file() or (run_dir / CELL_FILE).is_file():
                    continue
                record = {**autoattack_cell(run_dir, mcfg, seed, args.n, eps), "eps": args.eps}
                write_json(run_dir / CELL_FILE, record)  # per cell: parallel runs never share a file
                print(group, mcfg.method.name, seed, record)
    write_json(args.out / "table" / "autoattack.json", collect(args.out))


def collect(out: Path) -> dict:
    """{"<group>/<method>": {seed: record}} from every cell's autoattack.json under ``out``."""
    table: dict = {}
    for path in sorted(out.glob(f"*/base2new/digits_pairs/16shot/*/seed*/{CELL_FILE}")):
        cell = path.parent
        key = f"{cell.parents[4].name}/{cell.parent.name}"
        table.setdefault(key, {})[cell.name.removeprefix("seed")] = json.loads(path.read_text())
    return table


if __name__ == "__main__":
    main()
