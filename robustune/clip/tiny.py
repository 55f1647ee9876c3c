"""A tiny CLIP for CPU work and tests, contrastively pre-trained on a built-in dataset.

``robustune-tiny-clip`` (3.4 M parameters, 3.2 M of them the token embedding; 32 px images,
patch 8, two layers of width 64 per tower) is an open_clip JSON config shipped with the package
and registered with ``open_clip.add_model_config``. :func:`pretrain_tiny_clip` trains it with a
CLIP-style contrastive loss (Radford et al. 2021) on the train split of one of
:data:`PRETRAIN_RECIPES`' datasets (``digits``: 10 classes; ``digits_pairs``: 100 classes) and
captions made from the dataset's template ensemble (:data:`~robustune.clip.templates.ENSEMBLES`)
and class names; several captions share a class, so the InfoNCE terms have several positives (all
captions of the image's class / all images of the caption's class). The weights are cached in
:func:`robustune.utils.cache_dir` under a key of the dataset, architecture, recipe and seed,
written atomically, so concurrent processes are safe. In a config: ``model: {name:
"clip:robustune-tiny-clip", weights: digits_pairs}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from robustune.clip.templates import fill, resolve_templates
from robustune.files import atomic_path
from robustune.utils import cache_dir

log = logging.getLogger(__name__)

TINY_CLIP = "robustune-tiny-clip"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "resources" / "clip_configs"


def register_tiny_clip() -> None:
    """Make ``robustune-tiny-clip`` known to open_clip (idempotent)."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


@dataclass(frozen=True)
class TinyCLIPRecipe:
    """Pre-training recipe; every field is part of the cache key."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    shift: int = 2  # random translation in pixels (augmentation)
    train_token_embedding: bool = False
    seed: int = 0
    # Fields added after the first version enter the cache key only when not at their default
    # (so caches of older recipes stay valid).
    trim_text: bool = False  # run the text tower on the captions' tokens only (same result, ~7x cheaper)


# The datasets the tiny CLIP can be pre-trained on (``weights: <name>``) and their recipes (ours).
# digits_pairs: 100 classes of 10,000 images, so fewer epochs give more steps than digits' 20.
PRETRAIN_RECIPES: dict[str, TinyCLIPRecipe] = {
    "digits": TinyCLIPRecipe(),
    "digits_pairs": TinyCLIPRecipe(epochs=10, trim_text=True),
}


LATER_FIELDS = {"trim_text": False}


def encode_text_trimmed(model, text: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(text)`` computed on the tokens up to the longest caption's end token.

    The same function (up to float rounding) for open_clip's causal text tower with end-token
    pooling: no position attends to a later one, so the padding after the end token never
    reaches the pooled feature. Other text towers get the plain call.
    """
    if getattr(model, "text_pool_type", None) != "argmax" or getattr(model, "attn_mask", None) is None:
        return model.encode_text(text)
    n = int(text.argmax(dim=-1).max()) + 1  # the end token has the highest id of the vocabulary
    text = text[:, :n]
    x = model.token_embedding(text) + model.positional_embedding[:n]
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    x = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)]
    proj = model.text_projection
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


def _recipe(dataset: str, recipe: TinyCLIPRecipe | None) -> TinyCLIPRecipe:
    if dataset not in PRETRAIN_RECIPES:
        from robustune.registry import unknown_choice_message

        raise ValueError(unknown_choice_message("tiny CLIP pre-training dataset", dataset, PRETRAIN_RECIPES))
    return PRETRAIN_RECIPES[dataset] if recipe is None else recipe


def _multi_positive_nce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows with a positive of ``-log Σ_pos softmax(logits)``."""
    has = positive.any(1)
    lse_all = torch.logsumexp(logits[has], dim=1)
    lse_pos = torch.logsumexp(logits[has].masked_fill(~positive[has], float("-inf")), dim=1)
    return (lse_all - lse_pos).mean()


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, image_labels: torch.Tensor,
                     text_labels: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss where an image and a caption are positives iff they share a class."""
    logits = logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).t()
    positive = image_labels[:, None] == text_labels[None, :]
    return 0.5 * (_multi_positive_nce(logits, positive) + _multi_positive_nce(logits.t(), positive.t()))


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    if max_shift <= 0:
        return x
    dx, dy = (torch.randint(-max_shift, max_shift + 1, (2,), generator=gen)).tolist()
    padded = F.pad(x, [max_shift] * 4)
    h, w = x.shape[-2:]
    return padded[..., max_shift + dy: max_shift + dy + h, max_shift + dx: max_shift + dx + w]


def _cache_key(recipe: TinyCLIPRecipe, dataset: str) -> str:
    arch = (CONFIG_DIR / f"{TINY_CLIP}.json").read_text()
    fields = asdict(recipe)
    for name, default in LATER_FIELDS.items():
        if fields[name] == default:
            del fields[name]
    record = {"arch": json.loads(arch), "recipe": fields,
              "templates": resolve_templates("ensemble", dataset), "version": 1}
    if dataset != "digits":  # digits' key predates the dataset field: kept, so its cache stays valid
        record["dataset"] = dataset
    blob = json.dumps(record, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tiny_clip_path(recipe: TinyCLIPRecipe | None = None, dataset: str = "digits") -> Path:
    recipe = _recipe(dataset, recipe)
    return cache_dir() / "clip" / f"{TINY_CLIP}-{dataset}-{_cache_key(recipe, dataset)}.safetensors"


def pretrain_tiny_clip(recipe: TinyCLIPRecipe | None = None, device: str = "cpu", dataset: str = "digits"):
    """Train the tiny CLIP on ``dataset``'s train split and return the open_clip model (eval mode)."""
    import open_clip

    from robustune.data import create_dataset

    recipe = _recipe(dataset, recipe)
    register_tiny_clip()
    t0 = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        model = open_clip.create_model(TINY_CLIP).to(device).train()
    tokenizer = open_clip.get_tokenizer(TINY_CLIP)
    data = create_dataset(dataset, "train", image_size=32)
    templates = resolve_templates("ensemble", dataset)
    captions = [fill(t, c) for c in data.classes for t in templates]
    text_tokens = tokenizer(captions).to(device).view(len(data.classes), len(templates), -1)
    text_labels = torch.arange(len(data.classes), device=device)
    images, labels = data.images.to(device), torch.tensor(data.targets, device=device)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD, device=device).view(1, 3, 1, 1)
    # The token embedding (3.2 M of the 3.4 M parameters) stays at its random init: distinct random
    # vectors per token are enough (digits' ten names; digits_pairs' names are two digit tokens,
    # "37" -> "3", "7"), and it keeps a step cheap on CPU.
    model.token_embedding.requires_grad_(recipe.train_token_embedding)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = -(-len(labels) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=recipe.epochs * steps_per_epoch,
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(recipe.seed)
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(labels), generator=gen).to(device)
        for i in range(0, len(order), recipe.batch_size):
            idx = order[i:i + recipe.batch_size]
            x = _shift(images[idx], recipe.shift, gen)
            pick = torch.randint(len(templates), (len(data.classes),), generator=gen).to(device)
            texts = text_tokens[text_labels, pick]  # one caption per class and step
            text_features = encode_text_trimmed(model, texts) if recipe.trim_text else model.encode_text(texts)
            loss = contrastive_loss(model.encode_image((x - mean) / std), text_features,
                                    labels[idx], text_labels, model.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)  # ≤ 100, as CLIP
        log.debug("tiny CLIP epoch %d loss %.4f", epoch + 1, loss.item())
    log.info("pre-trained the tiny CLIP on %s in %.1f s", dataset, time.perf_counter() - t0)
    return model.eval()


def tiny_clip_weights(recipe: TinyCLIPRecipe | None = None, dataset: str = "digits") -> Path:
    """Path of the tiny CLIP pre-trained on ``dataset`` (cached); trains and caches it on first use."""
    from safetensors.torch import save_file

    recipe = _recipe(dataset, recipe)
    path = tiny_clip_path(recipe, dataset)
    if path.is_file():
        return path
    log.info("pre-training the tiny CLIP on %s (once; cached at %s)", dataset, path)
    model = pretrain_tiny_clip(recipe, dataset=dataset)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:  # another process may write the same file: last rename wins
        save_file(state, str(tmp), metadata={"recipe": json.dumps(asdict(recipe)), "dataset": dataset})
    return path
