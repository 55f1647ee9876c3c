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
    from robustune.eval.model_loading import load_run_model
    from robustune.report.export import export_run

    out = tmp_path / "hub"
    done = export_run(vit_run, out, license="apache-2.0")
    assert done.files == ["README.md", "config.json", "model.safetensors", "results.json"]
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
    assert calls["files"] == ["README.md", "config.json", "model.safetensors", "results.json"]


def test_clip_prompt_run_exports_prompts_that_robustune_loads_back(tmp_path):
    """FAP prompts on the tiny CLIP: the export is a run folder (prompts + config) with its card;
    robustune rebuilds the same prompted CLIP from it (identical logits)."""
    from robustune.cli import main
    from robustune.config import load_config
    from robustune.eval.model_loading import load_run_model
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
