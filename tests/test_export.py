"""robustune export: timm loads the folder with identical logits; the model card; the Hub upload."""

from __future__ import annotations

import pytest
import torch
import yaml

from robustune.config import ConfigError


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    """vit_tiny32 trained 3 steps with pgd_at on digits, evaluated clean + PGD on 40 images."""
    from robustune.cli import main

    root = tmp_path_factory.mktemp("export")
    run = root / "run"
    args = ["--set", "model.init_from=null", "--set", "train.max_steps=3", "--set", "train.epochs=1",
            "--set", "method.params.steps=1", "--set", "data.batch_size=16"]
    with pytest.raises(SystemExit) as exc:
        main(["train", "configs/pgd_at_digits.yaml", *args, "--out", str(run)])
    assert exc.value.code in (0, None)
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(run), "--suite", "clean,pgd", "--eps", "8/255", "--n-examples", "40"])
    assert exc.value.code in (0, None)
    return run


def test_timm_loads_the_export_with_identical_logits(vit_run, tmp_path):
    import timm

    from robustune.config import load_config
    from robustune.runs.loading import load_run_model
    from robustune.report.export import export_run

    out = tmp_path / "hub"
    done = export_run(vit_run, out, license="apache-2.0")
    assert done.files == ["README.md", "config.json", "model.safetensors", "results.json", "robustbench_Linf.json"]
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    ours, dataset, classes, _ = load_run_model(load_config(vit_run / "config.yaml"), vit_run)
    ours.eval()
    # timm's own data pipeline from the exported pretrained_cfg, applied to the [0,1] test images
    data_cfg = timm.data.resolve_data_config({}, model=model)
    assert tuple(data_cfg["input_size"]) == (3, 32, 32) and tuple(data_cfg["mean"]) == (0.5, 0.5, 0.5)
    x = torch.stack([dataset[i][0] for i in range(16)])
    mean = torch.tensor(data_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(data_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(model((x - mean) / std), ours(x))
    assert model.pretrained_cfg["label_names"] == classes
    assert model.pretrained_cfg["license"] == "apache-2.0"


def test_model_card_front_matter_and_protocols(vit_run, tmp_path):
    from robustune.report.export import export_run

    export_run(vit_run, tmp_path / "hub", license="apache-2.0")
    card = (tmp_path / "hub" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "timm" and front["license"] == "apache-2.0"
    assert {"robustune", "pgd_at", "adversarial-robustness"} <= set(front["tags"])
    assert front["datasets"] == ["digits"]
    assert "Madry et al." in card  # the method's paper
    pgd = next(line for line in card.splitlines() if line.startswith("| `pgd/Linf/eps=8/255"))
    for part in ("Linf ε = 8/255", "10 steps", "1 restarts", "| 40 |", "eval 0, train 0", "fp32"):
        assert part in pgd, part
    assert "| `clean` | top1_accuracy |" in card


def test_export_refuses_a_non_empty_folder_and_a_model_timm_cannot_build(vit_run, tmp_path):
    from robustune.report.export import export_run, timm_architecture

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_run(vit_run, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="timm cannot build"):
        timm_architecture("small_cnn", {})
    assert timm_architecture("resnet18.a1_in1k", {"drop_rate": 0.1}) == ("resnet18", {"drop_rate": 0.1})


def test_push_to_hub_uploads_the_export_folder(vit_run, tmp_path, monkeypatch):
    """No network here: HfApi is replaced, and what it is asked to upload is checked."""
    import huggingface_hub

    from robustune.cli import main

    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private, exist_ok, repo_type):
            calls["repo"] = (repo_id, private, exist_ok, repo_type)
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            from pathlib import Path

            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            return type("Info", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    with pytest.raises(SystemExit) as exc:
        main(["export", str(vit_run), "--out", str(tmp_path / "hub"), "--push-to-hub", "me/digits-pgd"])
    assert exc.value.code in (0, None)
    assert calls["repo"] == ("me/digits-pgd", False, True, "model")
    assert calls["files"] == ["README.md", "config.json", "model.safetensors", "results.json", "robustbench_Linf.json"]


def test_clip_prompt_run_exports_prompts_that_robustune_loads_back(tmp_path):
    """FAP prompts on the tiny CLIP: the export is a run folder (prompts + config) with its card;
    robustune rebuilds the same prompted CLIP from it (identical logits)."""
    from robustune.cli import main
    from robustune.config import load_config
    from robustune.runs.loading import load_run_model
    from robustune.report.export import export_run

    run = tmp_path / "fap"
    with pytest.raises(SystemExit) as exc:
        main(["train", "configs/clip_tiny_digits_fap.yaml", "--set", "train.max_steps=2", "--out", str(run)])
    assert exc.value.code in (0, None)
    done = export_run(run, tmp_path / "hub")
    assert done.kind == "clip-prompts"
    assert done.files == ["README.md", "config.yaml", "model.safetensors", "run.json"]
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "library_name: robustune" in card and "- clip" in card and "Not evaluated yet" in card
    a, dataset, _, _ = load_run_model(load_config(run / "config.yaml"), run)
    b, _, _, _ = load_run_model(load_config(tmp_path / "hub" / "config.yaml"), tmp_path / "hub")
    x = torch.stack([dataset[i][0] for i in range(8)])
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_robustbench_entry_never_calls_pgd_autoattack(vit_run, tmp_path):
    import json

    from robustune.report.export import export_run

    export_run(vit_run, tmp_path / "hub")
    entry = json.loads((tmp_path / "hub" / "robustbench_Linf.json").read_text())
    results = json.loads((vit_run / "eval" / "results.json").read_text())["cells"]
    assert entry["eps"] == "8/255" and entry["dataset"] == "digits" and entry["architecture"] == "vit_tiny32"
    assert entry["clean_acc"] == f"{100 * results['clean']['value']:.2f}"
    assert "autoattack_acc" not in entry  # evaluated with PGD only
    pgd = entry["robustune"]["robust_acc"]["pgd/Linf/eps=8/255/steps=10"]
    assert pgd["value"] == f"{100 * results['pgd/Linf/eps=8/255/steps=10']['value']:.2f}" and "10 steps" in pgd["attack"]
    assert entry["robustune"]["n"]["pgd/Linf/eps=8/255/steps=10"] == 40


def test_interchange_autoattack_corruptions_and_clip_benchmark():
    from robustune.eval.results import Cell, EvalResults
    from robustune.report.interchange import clip_benchmark_result, robustbench_entries

    aa = {"norm": "Linf", "eps": 4 / 255, "eps_label": "4/255", "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"]}
    cells = {"clean": Cell("clean", "clean", "top1_accuracy", 0.8, n=1000),
             "adversarial/autoattack/Linf/eps=4/255": Cell("adversarial/autoattack/Linf/eps=4/255", "adversarial",
                                                          "robust_accuracy", 0.4, n=1000, details={"threat_model": aa}),
             "corruptions/mean_corruption_accuracy": Cell("corruptions/mean_corruption_accuracy", "corruptions",
                                                          "mean_corruption_accuracy", 0.6123, n=75000),
             "corruptions/mCE": Cell("corruptions/mCE", "corruptions", "mCE", 55.5, details={"normalizer": "AlexNet"})}
    res = EvalResults({}, {"name": "imagenet", "split": "val"}, 0, {}, cells)
    cfg = {"name": "gfn_vit", "model": {"name": "vit_base_patch16_224"}, "data": {"name": "imagenet"},
           "method": {"name": "gfn"}}
    entries = robustbench_entries(res, {}, cfg)
    assert entries["Linf"]["autoattack_acc"] == "40.00" and entries["Linf"]["clean_acc"] == "80.00"
    assert entries["corruptions"]["corruptions_acc"] == "61.23" and entries["corruptions"]["eps"] is None
    assert entries["corruptions"]["robustune"]["mCE"] == {"value": "55.50", "normalizer": "AlexNet"}
    clip_cfg = {"model": {"name": "clip:ViT-B-32", "weights": "openai"}, "method": {"name": "erapt"}}
    cb = clip_benchmark_result(res, clip_cfg)
    assert cb["model"] == "ViT-B-32" and cb["pretrained"] == "openai" and cb["dataset"] == "imagenet"
    assert cb["task"] == "prompt_tuned_classification"
    assert cb["metrics"] == {"acc1": 0.8, "acc1_adversarial/autoattack/Linf/eps=4/255": 0.4}
