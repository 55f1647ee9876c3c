"""Prompt learners: identity configurations equal plain CLIP, prompts change the right features,
only prompt tensors are trainable, hooks do not leak, deep prompts reach their layers."""

from __future__ import annotations

import pytest
import torch

from robustune.clip import CLIPClassifier, PromptedCLIP, create_clip, create_prompt_learner
from robustune.clip.prompted import trainable_is_prompt_only
from robustune.data.digits import DIGIT_NAMES

TEMPLATE = "a photo of a {}."


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return create_clip("robustune-tiny-clip")  # random init: properties only


@pytest.fixture(scope="module")
def base(bundle):
    return CLIPClassifier(bundle, DIGIT_NAMES, [TEMPLATE])


@pytest.fixture(scope="module")
def images():
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def prompted_model(base, name, **kw):
    learner = create_prompt_learner(name, base.clip, base.tokenizer, base.classnames, **kw)
    return PromptedCLIP(base, learner).eval()


IDENTITY = [
    ("coop", dict(template="{}.", ctx_init="a photo of a")),  # context = the template's own tokens
    ("coop", dict(template=TEMPLATE, n_ctx=2, ctx_init="template")),
    ("maple", dict(template=TEMPLATE, n_ctx=0)),
    ("ivlp", dict(template=TEMPLATE, n_ctx=0, n_ctx_vision=0)),
    ("pad", dict(template=TEMPLATE, pad_size=0, image_size=32)),
]


@pytest.mark.parametrize("name,kw", IDENTITY)
def test_identity_prompts_equal_plain_clip(base, images, name, kw):
    model = prompted_model(base, name, **kw)
    with torch.no_grad():
        torch.testing.assert_close(model.text_features(), base.text_features(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.features(images), base.features(images), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(images), base(images), atol=1e-4, rtol=1e-4)


CHANGING = [
    ("coop", dict(template="{}.", n_ctx=4, ctx_init="random"), "text"),
    ("maple", dict(template=TEMPLATE, n_ctx=2, depth=2), "both"),
    ("ivlp", dict(template=TEMPLATE, n_ctx=2, n_ctx_vision=2, depth_text=2, depth_vision=2), "both"),
    ("pad", dict(template=TEMPLATE, pad_size=4, image_size=32), "image"),
]


@pytest.mark.parametrize("name,kw,side", CHANGING)
def test_prompts_change_features_and_only_prompts_train(base, images, name, kw, side):
    model = prompted_model(base, name, **kw)
    assert trainable_is_prompt_only(model)
    assert not any(p.requires_grad for p in base.clip.parameters())
    n_prompt = sum(p.numel() for p in model.learner.parameters())
    assert 0 < n_prompt < 0.01 * sum(p.numel() for p in base.clip.parameters())
    with torch.no_grad():
        text_changed = not torch.allclose(model.text_features(), base.text_features(), atol=1e-4)
        image_changed = not torch.allclose(model.features(images), base.features(images), atol=1e-4)
    assert text_changed == (side in ("text", "both"))
    assert image_changed == (side in ("image", "both"))
    # Gradients reach every prompt tensor and nothing else.
    model.train()
    model(images).logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.learner.parameters())
    assert all(p.grad is None for p in base.clip.parameters())


def test_hooks_are_removed_after_a_forward(base, images):
    with torch.no_grad():
        before = base(images)
        prompted_model(base, "maple", template=TEMPLATE, n_ctx=2, depth=2)(images)
        torch.testing.assert_close(base(images), before)
        tokens = base.tokenizer(["a photo of a one."])
        assert base.clip.encode_text(tokens).shape == (1, 64)


def test_deep_prompts_reach_their_layer(base, images):
    model = prompted_model(base, "maple", template=TEMPLATE, n_ctx=2, depth=2)
    with torch.no_grad():
        img, txt = model.features(images), model.text_features()
        # layer-2 vision prompt (its projection feeds the text side); not a constant shift, which
        # the blocks' LayerNorm would remove
        model.learner.vision_deep[0].add_(torch.randn_like(model.learner.vision_deep[0]))
        assert not torch.allclose(model.features(images), img, atol=1e-4)
        assert not torch.allclose(model.text_features(), txt, atol=1e-4)  # eval cache invalidated


def test_maple_couples_text_context_to_vision(base, images):
    model = prompted_model(base, "maple", template=TEMPLATE, n_ctx=2, depth=1)
    with torch.no_grad():
        img = model.features(images)
        model.learner.ctx.add_(torch.randn_like(model.learner.ctx))
        assert not torch.allclose(model.features(images), img, atol=1e-4)


def test_class_name_is_filled_in_and_classes_can_change(base, images):
    model = prompted_model(base, "maple", template="{} texture.", n_ctx=2, depth=1)
    assert "{}" not in model.learner.template.replace("{}", "", 1)
    assert len({tuple(t.tolist()) for t in model.learner.tokens}) == len(DIGIT_NAMES)
    model.set_classes(DIGIT_NAMES[5:])
    assert model.num_classes == 5 and model(images).shape == (6, 5)
    model.set_classes(DIGIT_NAMES)


def test_depth_beyond_the_transformer_is_an_error(base):
    with pytest.raises(ValueError, match="depth 9"):
        create_prompt_learner("maple", base.clip, base.tokenizer, DIGIT_NAMES, template=TEMPLATE, depth=9)
