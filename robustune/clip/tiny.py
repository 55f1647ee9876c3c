"""A tiny CLIP for CPU work and tests, contrastively pre-trained on the built-in digits.

``robustune-tiny-clip`` (3.4 M parameters, 3.2 M of them the token embedding; 32 px images,
patch 8, two layers of width 64 per tower) is an open_clip JSON config shipped with the package
and registered with ``open_clip.add_model_config``. :func:`pretrain_tiny_clip` trains it with a
CLIP-style contrastive loss (Radford et al. 2021) on digits train images and captions made from
:data:`~robustune.clip.templates.DIGIT_TEMPLATES`; several captions share a class, so the InfoNCE
terms have several positives (all captions of the image's class / all images of the caption's
class). The weights are cached in :func:`robustune.utils.cache_dir` under a key of the
architecture, recipe and seed, written atomically, so concurrent processes are safe.
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

from robustune.clip.templates import DIGIT_TEMPLATES, fill
from robustune.utils import atomic_path, cache_dir

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


def _cache_key(recipe: TinyCLIPRecipe) -> str:
    arch = (CONFIG_DIR / f"{TINY_CLIP}.json").read_text()
    blob = json.dumps({"arch": json.loads(arch), "recipe": asdict(recipe), "templates": DIGIT_TEMPLATES,
                       "version": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tiny_clip_path(recipe: TinyCLIPRecipe = TinyCLIPRecipe()) -> Path:
    return cache_dir() / "clip" / f"{TINY_CLIP}-digits-{_cache_key(recipe)}.safetensors"


def pretrain_tiny_clip(recipe: TinyCLIPRecipe = TinyCLIPRecipe(), device: str = "cpu"):
    """Train the tiny CLIP on digits train and return the open_clip model (eval mode)."""
    import open_clip

    from robustune.data.digits import DIGIT_NAMES, digits

    register_tiny_clip()
    t0 = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        model = open_clip.create_model(TINY_CLIP).to(device).train()
    tokenizer = open_clip.get_tokenizer(TINY_CLIP)
    captions = [fill(t, c) for c in DIGIT_NAMES for t in DIGIT_TEMPLATES]
    text_tokens = tokenizer(captions).to(device).view(len(DIGIT_NAMES), len(DIGIT_TEMPLATES), -1)
    text_labels = torch.arange(len(DIGIT_NAMES), device=device)
    data = digits("train", image_size=32)
    images, labels = data.images.to(device), torch.tensor(data.targets, device=device)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD, device=device).view(1, 3, 1, 1)
    # The token embedding (3.2 M of the 3.4 M parameters) stays at its random init: distinct random
    # vectors per token are enough for ten classes, and it keeps a step cheap on CPU.
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
            pick = torch.randint(len(DIGIT_TEMPLATES), (len(DIGIT_NAMES),), generator=gen).to(device)
            texts = text_tokens[text_labels, pick]  # one caption per class and step
            loss = contrastive_loss(model.encode_image((x - mean) / std), model.encode_text(texts),
                                    labels[idx], text_labels, model.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)  # ≤ 100, as CLIP
        log.debug("tiny CLIP epoch %d loss %.4f", epoch + 1, loss.item())
    log.info("pre-trained the tiny CLIP on digits in %.1f s", time.perf_counter() - t0)
    return model.eval()


def tiny_clip_weights(recipe: TinyCLIPRecipe = TinyCLIPRecipe()) -> Path:
    """Path of the cached pre-trained tiny CLIP; trains and caches it on first use."""
    from safetensors.torch import save_file

    path = tiny_clip_path(recipe)
    if path.is_file():
        return path
    log.info("pre-training the tiny CLIP on digits (once; cached at %s)", path)
    model = pretrain_tiny_clip(recipe)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:  # another process may write the same file: last rename wins
        save_file(state, str(tmp), metadata={"recipe": json.dumps(asdict(recipe))})
    return path
