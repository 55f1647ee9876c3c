"""Cross-dataset protocol: train few-shot on one dataset, evaluate on the source and on targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from robustune.config import load_config
from robustune.fewshot import ProtocolConfig, run_protocol

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fewshot_digits_erm.yaml"


def test_cross_dataset_trains_once_and_evaluates_every_target(tmp_path: Path):
    tree = tmp_path / "target"
    for c in range(10):  # a 10-class image folder, so the classifier's head fits both datasets
        for i in range(2):
            for split in ("train", "test"):
                (tree / split / f"class{c}").mkdir(parents=True, exist_ok=True)
                pixels = np.full((8, 8, 3), 20 * c + i, dtype=np.uint8)
                Image.fromarray(pixels).save(tree / split / f"class{c}" / f"{i}.png")
    cfg = load_config(CONFIG, [f"data.root={tree}", "data.batch_size=10", "train.eval_every=0"])
    proto = ProtocolConfig(datasets=["digits", "folder"], seeds=[0], settings=["cross"], shots=[1],
                           pgd_steps=1, n_eval=10)
    (record,) = run_protocol(cfg, proto, tmp_path / "out")
    assert record["setting"] == "cross" and record["dataset"] == "digits"
    assert list(record["evals"]) == ["digits", "folder"]
    assert record["evals"]["folder"]["classes"] == [f"class{c}" for c in range(10)]
    assert record["evals"]["folder"]["n"] == 10 and record["evals"]["digits"]["n"] == 10
    run = tmp_path / "out" / "cross" / "digits" / "1shot" / "erm" / "seed0"
    assert (run / "eval_folder" / "results.json").is_file()
    assert not (tmp_path / "out" / "cross" / "folder").exists()  # targets are never trained on
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| digits | 1 | erm | 1 | folder |" in md and "average of targets" in md
