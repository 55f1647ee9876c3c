"""Zero-shot CLIP as a [0,1]-input classifier whose head is the class text features.

``logits = exp(logit_scale) · cos(f_img(normalize(x)), t_c)`` with ``t_c`` the normalised text
feature of class c (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision", zero-shot prediction; with a template ensemble ``t_c`` is the renormalised mean over
templates). Every attack and metric of the project therefore treats CLIP like any classifier.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robustune.clip.models import CLIPBundle, create_clip
from robustune.clip.templates import fill, resolve_templates
from robustune.models.wrapper import ImageNormalizer


def tokenize(tokenizer: Callable, texts: Sequence[str], device: torch.device | None = None) -> torch.Tensor:
    tokens = tokenizer(list(texts))
    return tokens.to(device) if device is not None else tokens


@torch.no_grad()
def encode_class_texts(clip: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                       templates: Sequence[str], chunk: int = 256) -> torch.Tensor:
    """(C, D) unit text features: per class, the renormalised mean over ``templates``."""
    device = next(clip.parameters()).device
    texts = [fill(t, c) for c in classnames for t in templates]
    feats = []
    for i in range(0, len(texts), chunk):
        feats.append(F.normalize(clip.encode_text(tokenize(tokenizer, texts[i:i + chunk], device)), dim=-1))
    per = torch.cat(feats).view(len(classnames), len(templates), -1).mean(1)
    return F.normalize(per, dim=-1)


def clip_logits(clip: nn.Module, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """``exp(logit_scale) · cos`` (+ ``logit_bias`` for SigLIP-style models)."""
    logits = clip.logit_scale.exp() * F.normalize(image_features, dim=-1) @ text_features.t()
    bias = getattr(clip, "logit_bias", None)
    return logits + bias if bias is not None else logits


class CLIPClassifier(nn.Module):
    """A frozen CLIP over [0,1] images with the normaliser inside and a text-feature head.

    Attributes:
        clip: the open_clip model (frozen).
        num_classes, input_size, crop_pct, interpolation: the data config that pipelines read.
        classnames, templates: what the head was built from; :meth:`set_classes` rebuilds it
            (e.g. the new classes of a base-to-new evaluation).
    """

    def __init__(self, bundle: CLIPBundle, classnames: Sequence[str],
                 templates: Sequence[str] = ("a photo of a {}.",)) -> None:
        super().__init__()
        self.clip = bundle.model.eval().requires_grad_(False)
        self.tokenizer = bundle.tokenizer
        self.normalizer = ImageNormalizer(bundle.mean, bundle.std)
        self.input_size = (3, bundle.image_size, bundle.image_size)
        self.crop_pct = 1.0
        self.interpolation = bundle.interpolation
        self.name = f"clip:{bundle.name}"
        self.weights = bundle.weights
        self.templates = list(templates)
        self.register_buffer("class_embeddings", torch.empty(0), persistent=False)
        self.set_classes(classnames)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    @property
    def std(self) -> torch.Tensor:
        return self.normalizer.std

    def set_classes(self, classnames: Sequence[str], templates: Sequence[str] | None = None) -> None:
        """Rebuild the text head for ``classnames`` (and optionally new ``templates``)."""
        self.classnames = list(classnames)
        if templates is not None:
            self.templates = list(templates)
        # Encoded on first use, on the model's device (prompt methods may never need it).
        self.class_embeddings = torch.empty(0, device=self.class_embeddings.device)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Image features (unnormalised) of [0,1] images."""
        return self.clip.encode_image(self.normalizer(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit features, as :meth:`robustune.models.Classifier.features`."""
        return self.encode_image(x)

    def text_features(self) -> torch.Tensor:
        """(C, D) unit class text features: the classification head."""
        if self.class_embeddings.numel() == 0:
            self.class_embeddings = encode_class_texts(self.clip, self.tokenizer, self.classnames,
                                                       self.templates)
        return self.class_embeddings

    def head_weights(self) -> torch.Tensor:
        return self.text_features()

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encode_image(x)
        return clip_logits(self.clip, feats, self.text_features()), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_features(x)[0]


def create_clip_classifier(name: str, classnames: Sequence[str], weights: str | None = None,
                           templates: str | list[str] | None = None, dataset: str = "",
                           **kwargs) -> CLIPClassifier:
    """One call from names to a zero-shot classifier.

    Args:
        name: open_clip architecture (``ViT-B-32`` or ``clip:ViT-B-32``).
        classnames: class names in label order.
        weights: see :func:`robustune.clip.models.create_clip`.
        templates: see :func:`robustune.clip.templates.resolve_templates` (default: the dataset's).
        dataset: dataset name that selects the default template.
    """
    bundle = create_clip(name, weights, **kwargs)
    return CLIPClassifier(bundle, classnames, resolve_templates(templates, dataset))
