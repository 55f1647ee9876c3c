"""Hub-ready export of a run: what timm loads, a model card, and the results beside them.

A classifier run becomes ``config.json`` + ``model.safetensors`` written by timm's own
``save_for_hf`` (architecture, ``model_args``, ``num_classes``, ``label_names``, and a
``pretrained_cfg`` with the mean / std / input size / interpolation / crop that robustune's
``ImageNormalizer`` used), so ``timm.create_model("local-dir:DIR", pretrained=True)`` (timm ≥ 1.0.16;
``"hf-hub:USER/REPO"`` once pushed) builds it; the export checks that this model gives robustune's
logits on normalised inputs. A CLIP prompt run becomes its prompts (``model.safetensors``),
``config.yaml`` and ``run.json``: a run folder that ``robustune eval DIR`` loads back. Both get a
README.md model card (robustune.report.model_card), the run's ``results.json`` and its numbers in
the field's formats (robustune.report.interchange: RobustBench entries, CLIP_benchmark results).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustune.config import ConfigError, load_config, to_dict
from robustune.eval.results import EvalResults
from robustune.report.interchange import write_interchange
from robustune.report.model_card import model_card
from robustune.files import read_json, write_text_atomic

log = logging.getLogger(__name__)


@dataclass
class Export:
    folder: Path
    kind: str  # "timm" or "clip-prompts"
    files: list[str] = field(default_factory=list)
    max_logit_difference: float | None = None  # timm-loaded vs robustune, on random inputs


def timm_architecture(name: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(timm architecture, model_args) that build ``model.name`` ``name`` in timm itself."""
    from robustune.models.registry import MODELS
    from robustune.models.tiny import TIMM_EQUIVALENTS

    if name in TIMM_EQUIVALENTS:
        arch, args = TIMM_EQUIVALENTS[name]
        return arch, {**args, **kwargs}
    if name in MODELS:
        raise ConfigError(f"{name!r} is a robustune model that timm cannot build; export supports timm "
                          f"models ({', '.join(sorted(TIMM_EQUIVALENTS))} included) and CLIP prompt runs")
    return name.split(".")[0], dict(kwargs)


def _run_results(run_dir: Path, results: str | Path | None) -> EvalResults | None:
    from robustune.report.compare import find_results

    try:
        folder, _ = find_results(results or run_dir)
    except FileNotFoundError:
        log.warning("%s has no evaluation: the model card says so (robustune eval %s first)", run_dir, run_dir)
        return None
    return EvalResults.load(folder / "results.json")


def _timm_model(run_dir: Path, cfg, classes: list[str]):
    """(robustune Classifier with the run's weights, the same weights in timm's own model, arch, args)."""
    import timm

    from robustune.models.factory import create_classifier
    from robustune.models.weights import load_state_dict_file
    from robustune.runs.build import resolve_weights_file

    arch, args = timm_architecture(cfg.model.name, cfg.model.kwargs)
    model = create_classifier(cfg.model.name, num_classes=len(classes), weights=None, **cfg.model.kwargs)
    load_state_dict_file(model, resolve_weights_file(run_dir))
    net = timm.create_model(arch, pretrained=False, num_classes=len(classes), **args)
    missing = net.load_state_dict(model.backbone.state_dict(), strict=False)
    if missing.missing_keys or missing.unexpected_keys:
        raise ConfigError(f"timm's {arch} does not take the weights of {cfg.model.name!r} "
                          f"(missing {missing.missing_keys[:3]}, unexpected {missing.unexpected_keys[:3]})")
    return model.eval(), net.eval(), arch, args


def normalised(model, x: torch.Tensor) -> torch.Tensor:
    """What timm's data pipeline feeds the exported model: ``(x - mean) / std`` of [0,1] images."""
    return model.normalizer(x)


def _export_timm(run_dir: Path, tmp: Path, cfg, run: dict[str, Any], license: str) -> Export:
    import timm
    from timm.models import save_for_hf

    classes = [str(c) for c in run.get("classes") or []]
    if not classes:
        raise ConfigError(f"{run_dir / 'run.json'} records no classes: train the run with this robustune")
    model, net, arch, args = _timm_model(run_dir, cfg, classes)
    data = {"mean": tuple(model.normalizer.mean.flatten().tolist()), "std": tuple(model.std.flatten().tolist()),
            "input_size": tuple(model.input_size), "interpolation": model.interpolation,
            "crop_pct": model.crop_pct}
    save_for_hf(net, tmp, model_config={"label_names": classes, "pretrained_cfg": {
        "tag": f"robustune_{cfg.method.name}", "license": license}}, model_args=args,
        safe_serialization=True, data_config=data)
    loaded = timm.create_model(f"local-dir:{tmp}", pretrained=True).eval()
    x = torch.rand(4, *model.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (loaded(normalised(model, x)) - model(x)).abs().max().item()
    if diff > 1e-5:
        raise RuntimeError(f"timm's reload of the export differs from robustune's model by {diff:g}")
    return Export(tmp, "timm", max_logit_difference=diff)


def _export_prompts(run_dir: Path, tmp: Path) -> Export:
    for name in ("config.yaml", "run.json", "model.safetensors"):
        shutil.copy2(run_dir / name, tmp / name)
    return Export(tmp, "clip-prompts")


HOW_TO_LOAD = {
    "timm": 'import timm\nmodel = timm.create_model("local-dir:PATH", pretrained=True)  # or "hf-hub:USER/REPO"\n'
            'cfg = timm.data.resolve_data_config({}, model=model)\n'
            'transform = timm.data.create_transform(**cfg)',
    "clip-prompts": "# a robustune run folder: prompts + config of a frozen CLIP\n"
                    "# robustune eval PATH --suite clean,pgd",
}


def export_run(run_dir: str | Path, out: str | Path, *, license: str = "other",
               results: str | Path | None = None) -> Export:
    """Export ``run_dir`` into the new folder ``out`` (see the module doc); ``out`` must not exist
    or be empty, and is written whole or not at all."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: choose a new --out folder (nothing was changed)")
    cfg = load_config(run_dir / "config.yaml")
    run = read_json(run_dir / "run.json")
    evaluated = _run_results(run_dir, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if cfg.model.name.startswith("clip:"):
            export = _export_prompts(run_dir, tmp)
        elif cfg.model.name.startswith("det:"):
            raise ConfigError("timm has no detector format: export classifier runs and CLIP prompt runs")
        else:
            export = _export_timm(run_dir, tmp, cfg, run, license)
        if evaluated is not None:
            evaluated.save(tmp / "results.json")
            write_interchange(evaluated, run, to_dict(cfg), tmp)
        library = "timm" if export.kind == "timm" else "robustune"
        tags = ["robustune", "adversarial-robustness", cfg.method.name, "image-classification"]
        if export.kind == "clip-prompts":
            tags.append("clip")
        write_text_atomic(tmp / "README.md", model_card(
            title=f"{cfg.name} ({cfg.method.name})", run=run, config=to_dict(cfg), results=evaluated,
            license=license, tags=tags, library=library, how_to_load=HOW_TO_LOAD[export.kind]))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    export.folder = out
    export.files = sorted(p.name for p in out.iterdir())
    return export


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload an export folder to the Hugging Face Hub model repo ``repo_id`` (created if missing);
    needs a token (``huggingface-cli login`` or ``HF_TOKEN``). Returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(folder), repo_id=repo.repo_id, repo_type="model",
                             commit_message="robustune export")
    return str(getattr(info, "commit_url", info))
