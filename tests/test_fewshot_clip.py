"""The few-shot protocol with CLIP methods: each evaluation builds its text head from its classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from robustune.cli import main
from robustune.config import load_config

CONFIG = """
name: fewshot_tiny_clip_test
data: {name: digits, batch_size: 10, eval_batch_size: 64}
model: {name: "clip:robustune-tiny-clip", weights: null}
method: {name: fap, params: {n_ctx: 2, depth: 2, steps: 1}}
optim: {name: sgd, lr: 0.0035, momentum: 0.9, weight_decay: 5.0e-4, schedule: cosine}
train: {epochs: 1, seed: 1, eval_every: 0}
"""


def test_clip_base_to_new_with_zeroshot_coop_and_fap(tmp_path: Path):
    cfg = tmp_path / "clip.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "proto"
    with pytest.raises(SystemExit) as exc:  # random-init tiny CLIP: the machinery, not accuracy
        main(["fewshot", str(cfg), "--methods", "zeroshot,coop,fap", "--seeds", "0", "--shots", "2",
              "--settings", "base2new", "--pgd-steps", "1", "--n-eval", "10", "--out", str(out)])
    assert exc.value.code in (0, None)
    runs = out / "base2new" / "digits" / "2shot"
    zs = json.loads((runs / "zeroshot" / "seed0" / "cell.json").read_text())
    coop = json.loads((runs / "coop" / "seed0" / "cell.json").read_text())
    fap = json.loads((runs / "fap" / "seed0" / "cell.json").read_text())
    for record in (zs, coop, fap):
        assert record["evals"]["base"]["classes"] == ["zero", "one", "two", "three", "four"]
        assert record["evals"]["new"]["classes"] == ["five", "six", "seven", "eight", "nine"]
    assert load_file(str(runs / "zeroshot" / "seed0" / "model.safetensors")) == {}
    prompts = load_file(str(runs / "coop" / "seed0" / "model.safetensors"))
    assert 0 < sum(t.numel() for t in prompts.values()) < 10_000  # the prompts only, not the CLIP
    md = (out / "table.md").read_text()
    rows = [md.index(f"| digits | 2 | {m} |") for m in ("zeroshot", "coop", "fap")]
    assert rows == sorted(rows)  # methods in the order given

    # the preset's params that coop also takes are shared; FAP-only ones are not passed to coop
    assert load_config(runs / "coop" / "seed0" / "config.yaml").method.params == {"n_ctx": 2}
    assert load_config(runs / "fap" / "seed0" / "config.yaml").method.params["depth"] == 2
