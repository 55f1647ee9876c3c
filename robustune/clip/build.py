"""Build a CLIP classifier from a run config (``model.name: clip:<architecture>``).

``model.weights`` as :func:`robustune.clip.models.create_clip`; ``model.kwargs.templates`` as
:func:`robustune.clip.templates.resolve_templates` (default: the template the dataset carries, else
CoOp's template of the dataset); other ``model.kwargs`` go to ``open_clip.create_model``.
"""

from __future__ import annotations

from robustune.clip.templates import dataset_template, resolve_templates
from robustune.clip.zeroshot import CLIPClassifier
from robustune.config import ConfigError, RunConfig


def build_clip_model(cfg: RunConfig) -> CLIPClassifier:
    """Zero-shot CLIP over the class names of the run's training split."""
    from robustune.clip.models import create_clip
    from robustune.data.splits import train_class_info

    if cfg.model.init_from:
        raise ConfigError("model.init_from is not used by CLIP models: prompts start from their init; "
                          "load trained prompts by evaluating the run folder")
    info = train_class_info(cfg.data)
    kwargs = dict(cfg.model.kwargs)
    spec = kwargs.pop("templates", None)
    if spec is None or spec == "dataset":
        spec = info["template"] or dataset_template(str(info["source"]))
    templates = resolve_templates(spec, str(info["source"]))
    bundle = create_clip(cfg.model.name, cfg.model.weights, **kwargs)
    return CLIPClassifier(bundle, info["classes"], templates)
