"""Detector factory (trunk init from a classifier file, archs) and the detection methods' steps."""

from __future__ import annotations

import pytest
import torch

from robustune.data import create_dataset
from robustune.data.detection import detection_collate
from robustune.methods import StepContext, create_method
from robustune.models import create_classifier
from robustune.models.detectors import create_detector
from robustune.errors import WeightsUnavailableError

SMALL = dict(min_size=48, max_size=48, fpn_channels=16, box_head_dim=32, pyramid_scales=(2, 1, 0.5),
             rpn_batch_size_per_image=16, box_batch_size_per_image=16, rpn_pre_nms_top_n_train=100,
             rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20)


@pytest.fixture(scope="module")
def batch():
    ds = create_dataset("digits_det", "train", n_images=4, canvas=48)
    return detection_collate([ds[i] for i in range(2)])


def test_trunk_initialised_from_a_classifier_file(tmp_path):
    from robustune.files import save_tensors

    clf = create_classifier("vit_tiny32", num_classes=10)
    save_tensors(tmp_path / "model.safetensors", clf.state_dict())
    det = create_detector("vit_tiny32", 5, backbone_file=str(tmp_path / "model.safetensors"), **SMALL)
    trunk = det.backbone.trunk.state_dict()
    for k, v in clf.backbone.state_dict().items():
        if not k.startswith("head"):
            assert torch.equal(trunk[k], v), k
    assert det.std.flatten().tolist() == [0.5, 0.5, 0.5]
    assert det.detector.transform.image_mean == [0.0, 0.0, 0.0] and det.detector.transform.image_std == [1.0, 1.0, 1.0]
    save_tensors(tmp_path / "other.safetensors", create_classifier("small_cnn", 10).state_dict())
    with pytest.raises(WeightsUnavailableError, match="does not fit the detector's backbone"):
        create_detector("vit_tiny32", 5, backbone_file=str(tmp_path / "other.safetensors"), **SMALL)
    with pytest.raises(ValueError, match="Did you mean 'fcos'"):
        create_detector("vit_tiny32", 5, arch="fcoss")


@pytest.mark.parametrize("arch", ["retinanet", "fcos"])
def test_other_archs_train_and_predict_in_label_space(arch, batch):
    images, targets = batch
    small = {k: v for k, v in SMALL.items() if not k.startswith(("rpn_", "box_"))} | {"fpn_channels": 32}  # FCOS: GroupNorm(32)
    det = create_detector("small_cnn", 10, arch=arch, **small)
    losses = det(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    det.eval()
    with torch.no_grad():
        preds = det(images)
    assert len(preds) == 2 and all(((p["labels"] >= 0) & (p["labels"] < 10)).all() for p in preds)


def _ctx(step=0):
    gen = torch.Generator()
    gen.manual_seed(step)
    return StepContext(epoch=0, step=step, generator=gen)


def test_methods_step_and_gfn_det_perturbation(batch):
    images, targets = batch
    torch.manual_seed(0)
    det = create_detector("vit_tiny32", 10, **SMALL)
    out = create_method("det_finetune", det, {}).training_step(images, targets, _ctx())
    assert out["n"] == 2 and "logits" not in out and torch.isfinite(out["loss"])

    eta = 0.02
    adv = create_method("det_adv", det, {"eta": eta}).perturb(images, targets)
    gfn = create_method("gfn_det", det, {"eta": eta, "k": 3, "similarity_source": "head_weights"}, num_classes=10)
    gfn.ranks.copy_(torch.stack([torch.roll(torch.arange(10), -c) for c in range(10)]).argsort(1).argsort(1))
    torch.manual_seed(1)
    neighbors = gfn.sample_neighbors(targets, _ctx(3).generator)
    x = gfn.perturb(images, targets, neighbors)
    for a, b, c in zip(images, x, adv):
        step = (b - a).abs()
        inside = (a > 0.02) & (a < 0.98)
        assert torch.allclose(step[inside], torch.tensor(eta * 0.5), atol=1e-6)  # η · std, one sign step
        assert not torch.equal(b, c)  # targeted (toward neighbour + background) ≠ untargeted
    for nb, t in zip(neighbors, targets):
        ranks = gfn.ranks[t["labels"], nb - 1]
        assert ((ranks >= 1) & (ranks <= 3)).all()  # sampled among the 3 nearest classes

    torch.manual_seed(2)
    from robustune.methods.detection import rcnn_pass

    rp = rcnn_pass(det, images, targets)
    losses = {}
    for alpha in (0.5, 0.9):
        gfn.params.alpha = alpha
        losses[alpha] = gfn.roi_class_loss(rp, neighbors).detach().item()
    assert losses[0.5] != pytest.approx(losses[0.9])  # the weighting depends on α
    out = gfn.training_step(images, targets, _ctx(4))
    assert torch.isfinite(out["loss"]) and set(out["logs"]) >= {"loss_classifier", "loss_objectness"}


def test_feature_similarity_from_ground_truth_boxes():
    from robustune.methods.detection_similarity import box_feature_embeddings

    ds = create_dataset("digits_det", "train", n_images=30, canvas=48)
    det = create_detector("vit_tiny32", 10, **SMALL)
    emb = box_feature_embeddings(det, ds, 10, max_per_class=2)
    assert emb.shape == (10, 64) and torch.isfinite(emb).all()
    assert torch.allclose(emb.norm(dim=1), torch.ones(10), atol=0.6)  # means of unit vectors


def test_init_from_a_classifier_run_or_a_detection_run(tmp_path):
    from robustune.config import load_config
    from robustune.runs.build import build_detector
    from robustune.files import save_tensors

    clf = create_classifier("vit_tiny32", num_classes=10)
    (tmp_path / "clf").mkdir()
    save_tensors(tmp_path / "clf" / "model.safetensors", clf.state_dict())
    sets = [f"model.{k}={v}" for k, v in {"name": "det:vit_tiny32", "kwargs": "{min_size: 48, max_size: 48, "
                                          "fpn_channels: 16, box_head_dim: 32}"}.items()]
    det = build_detector(load_config(None, sets + [f"model.init_from={tmp_path / 'clf'}"]), 10)
    assert torch.equal(det.backbone.trunk.blocks[0].attn.qkv.weight, clf.backbone.blocks[0].attn.qkv.weight)
    (tmp_path / "det").mkdir()
    save_tensors(tmp_path / "det" / "model.safetensors", det.state_dict())
    again = build_detector(load_config(None, sets + [f"model.init_from={tmp_path / 'det'}"]), 10)
    for k, v in det.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
