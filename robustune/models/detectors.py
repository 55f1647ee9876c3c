"""Detectors over any timm backbone: torchvision Faster R-CNN + FPN (RetinaNet / FCOS as options).

``create_detector(backbone, num_classes, arch="faster_rcnn", ...)`` returns a :class:`Detector`
that takes a list of [0,1] CHW images (any sizes) and, in training mode, targets in the dataset
format of :mod:`robustune.data.detection` (labels 0..C-1); it returns torchvision's loss dict in
training mode and, in eval mode, one dict per image (``boxes`` x1y1x2y2 in the input image's
pixels, ``scores``, ``labels`` 0..C-1).

Backbones (the trunk):

- hierarchical CNNs (any timm model with ``features_only``): the last four stages → torchvision's
  ``FeaturePyramidNetwork``;
- ViTs and other single-map trunks (timm ViTs built with ``dynamic_img_size=True``, the project's
  ``vit_tiny32`` and ``small_cnn``): a ViTDet-style *simple feature pyramid* from the last block's
  map (Li et al. 2022): ×4 and ×2 by transposed convolutions, ×1, ×½ by max-pooling, each then a
  1×1 and a 3×3 convolution with LayerNorm.

Normalisation: torchvision's ``GeneralizedRCNNTransform`` only resizes and batches here — its
``image_mean`` / ``image_std`` are set to 0 / 1, an identity — and the backbone normalises with
the trunk's own mean/std (:class:`~robustune.models.wrapper.ImageNormalizer`) as its first op. So
inputs, attacks and corruptions stay in [0,1] like everywhere in robustune; the batch padding is
0 in [0,1] space (a black border), which the backbone then normalises like any black pixel.

Weights of the trunk: ``weights`` (a timm hub tag / ``"hub"`` / a local ``.safetensors``) or
``backbone_file`` (a robustune classifier's ``model.safetensors``, e.g. of a GFN run; its head is
dropped). Anchor sizes default to 8× each level's stride (torchvision's 32 px at stride 4).
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from robustune.errors import WeightsUnavailableError
from robustune.models.factory import timm_backbone
from robustune.models.registry import MODELS
from robustune.models.weights import is_file_ref, read_state_dict
from robustune.models.wrapper import ImageNormalizer

log = logging.getLogger(__name__)
ARCHS = ("faster_rcnn", "retinanet", "fcos")


def _create_trunk(name: str, weights: str | None, kwargs: dict[str, Any]) -> tuple[nn.Module, dict]:
    """The classification model without head (``num_classes=0``) and its mean/std."""
    if name in MODELS:
        entry = MODELS.get(name)
        if weights is not None and not is_file_ref(weights):
            raise WeightsUnavailableError(f"{name!r} is a project model with no hub weights; pass a local file")
        with warnings.catch_warnings():  # a 0-class head warns that it has nothing to initialise
            warnings.simplefilter("ignore", UserWarning)
            try:
                trunk = entry.fn(num_classes=0, **{"dynamic_img_size": True, **kwargs})
            except TypeError:
                trunk = entry.fn(num_classes=0, **kwargs)
        return trunk, {"mean": entry.mean, "std": entry.std}
    hub = None if weights is None or is_file_ref(weights) else weights
    try:
        trunk = timm_backbone(name, 0, hub, **{"dynamic_img_size": True, **kwargs})
    except TypeError:
        trunk = timm_backbone(name, 0, hub, **kwargs)
    cfg = getattr(trunk, "pretrained_cfg", {}) or {}
    return trunk, {"mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                   "std": tuple(cfg.get("std", (0.229, 0.224, 0.225)))}


def load_trunk_weights(trunk: nn.Module, path) -> None:
    """Load a classifier's weights (robustune ``model.safetensors`` or timm file) into ``trunk``.

    The classification head is dropped; every other trunk tensor must be present and fit.
    """
    state = read_state_dict(path)
    if state and all(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items()}
    own = trunk.state_dict()
    head = {k for k in state if k.split(".")[0] in ("head", "fc", "classifier") and k not in own}
    head |= {k for k in state if k in own and k.split(".")[0] in ("head", "fc", "classifier")
             and state[k].shape != own[k].shape}
    state = {k: v for k, v in state.items() if k not in head}
    missing = [k for k in own if k not in state and k.split(".")[0] not in ("head", "fc", "classifier")]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or shape:
        first = (missing or unexpected or shape)[0]
        raise WeightsUnavailableError(
            f"{str(path)!r} does not fit the detector's backbone ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(shape)} mis-shaped key(s), e.g. {first}): was it trained with another model.name?")
    trunk.load_state_dict(state, strict=False)
    log.info("detector backbone initialised from %s (%d tensors, head dropped)", path, len(state))


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's pyramid from one map: scales ×4, ×2, ×1, ×½ → ``out_channels`` each."""

    def __init__(self, dim: int, out_channels: int, scales: Sequence[float] = (4, 2, 1, 0.5)) -> None:
        super().__init__()
        from timm.layers import LayerNorm2d

        self.scales = tuple(float(s) for s in scales)
        stages = []
        for s in self.scales:
            if s == 4:
                pre, c = [nn.ConvTranspose2d(dim, dim // 2, 2, 2), LayerNorm2d(dim // 2), nn.GELU(),
                          nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2)], dim // 4
            elif s == 2:
                pre, c = [nn.ConvTranspose2d(dim, dim // 2, 2, 2)], dim // 2
            elif s == 1:
                pre, c = [], dim
            elif s == 0.5:
                pre, c = [nn.MaxPool2d(2, 2)], dim
            else:
                raise ValueError(f"simple feature pyramid scales must be among 4, 2, 1, 0.5; got {s}")
            stages.append(nn.Sequential(*pre, nn.Conv2d(c, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                        LayerNorm2d(out_channels)))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict((str(i), stage(x)) for i, stage in enumerate(self.stages))


class DetectionBackbone(nn.Module):
    """Normaliser → timm trunk → pyramid; ``out_channels`` and ``strides`` as torchvision expects."""

    def __init__(self, trunk: nn.Module, mean, std, out_channels: int = 256, arch: str = "faster_rcnn",
                 scales: Sequence[float] = (4, 2, 1, 0.5), hierarchical: bool = False) -> None:
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

        self.normalizer = ImageNormalizer(mean, std)
        self.trunk = trunk
        self.hierarchical = hierarchical
        self.out_channels = out_channels
        if hierarchical:
            channels = trunk.feature_info.channels()[-4:]
            base = trunk.feature_info.reduction()[-4:]
            self.fpn = FeaturePyramidNetwork(channels, out_channels)
        else:
            dim, stride = self._probe()
            base = [stride / s for s in scales]
            self.fpn = SimpleFeaturePyramid(dim, out_channels, scales)
        self.extra = LastLevelMaxPool() if arch == "faster_rcnn" else LastLevelP6P7(out_channels, out_channels)
        self.strides = [float(b) for b in base] + [base[-1] * 2] * (1 if arch == "faster_rcnn" else 2)
        if arch != "faster_rcnn":
            self.strides[-1] = base[-1] * 4

    @torch.no_grad()
    def _probe(self) -> tuple[int, float]:
        was = self.trunk.training
        self.trunk.eval()
        size = 64 if not hasattr(self.trunk, "patch_embed") else 4 * int(self.trunk.patch_embed.patch_size[0])
        out = self._single_map(torch.zeros(1, 3, size, size))
        self.trunk.train(was)
        return int(out.shape[1]), size / out.shape[-1]

    def _single_map(self, z: torch.Tensor) -> torch.Tensor:
        feats = self.trunk.forward_features(z)
        if feats.ndim == 3:  # ViT tokens (B, prefix + h*w, D) → (B, D, h, w)
            p = self.trunk.patch_embed.patch_size
            h, w = z.shape[-2] // p[0], z.shape[-1] // p[1]
            tokens = feats[:, getattr(self.trunk, "num_prefix_tokens", 1):]
            feats = tokens.transpose(1, 2).reshape(z.shape[0], -1, h, w)
        return feats

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        z = self.normalizer(x)
        if self.hierarchical:
            maps = self.trunk(z)[-4:]
            out = self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))
        else:
            out = self.fpn(self._single_map(z))
        names, feats = list(out.keys()), list(out.values())
        feats, names = self.extra(feats, feats, names)  # + "pool" (Faster R-CNN) or "p6", "p7"
        return OrderedDict(zip(names, feats))


class Detector(nn.Module):
    """A torchvision detector over [0,1] images with labels 0..C-1 (background handled inside)."""

    task = "detection"

    def __init__(self, model: nn.Module, num_classes: int, arch: str, name: str = "") -> None:
        super().__init__()
        self.detector = model
        self.num_classes = num_classes
        self.arch = arch
        self.name = name

    @property
    def std(self) -> torch.Tensor:
        return self.detector.backbone.normalizer.std

    @property
    def backbone(self) -> DetectionBackbone:
        return self.detector.backbone

    @staticmethod
    def to_internal(targets: list[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
        """Training targets for torchvision: crowd / ignore boxes removed, labels + 1 (0 = background)."""
        out = []
        for t in targets:
            keep = t["iscrowd"] == 0 if "iscrowd" in t else torch.ones_like(t["labels"], dtype=torch.bool)
            out.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep] + 1})
        return out

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, Any]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("a detector in training mode needs targets")
            return self.detector(list(images), self.to_internal(targets))
        preds = self.detector(list(images))
        return [{**p, "labels": p["labels"] - 1} for p in preds]


def list_detector_archs(pattern: str = "*") -> list[str]:
    """The detector architectures over a timm backbone (``model.kwargs.arch``)."""
    import fnmatch

    return [a for a in ARCHS if fnmatch.fnmatch(a, pattern)]


def _anchor_generator(strides: Sequence[float], arch: str, sizes: Sequence[float] | None):
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = list(sizes) if sizes else [8 * s for s in strides]
    if len(sizes) != len(strides):
        raise ValueError(f"anchor_sizes needs {len(strides)} values (one per pyramid level), got {len(sizes)}")
    if arch == "retinanet":
        per = tuple((s, s * 2 ** (1 / 3), s * 2 ** (2 / 3)) for s in sizes)
    else:
        per = tuple((s,) for s in sizes)
    ratios = ((0.5, 1.0, 2.0),) * len(per) if arch != "fcos" else ((1.0,),) * len(per)
    return AnchorGenerator(per, ratios)


def create_detector(backbone: str, num_classes: int, arch: str = "faster_rcnn", weights: str | None = None,
                    backbone_file: str | None = None, fpn_channels: int = 256, min_size: int = 800,
                    max_size: int = 1333, anchor_sizes: Sequence[float] | None = None,
                    pyramid_scales: Sequence[float] = (4, 2, 1, 0.5), backbone_kwargs: dict | None = None,
                    box_head_dim: int | None = None, **detector_kwargs: Any) -> Detector:
    """Build a detector; ``detector_kwargs`` go to torchvision's constructor (e.g. ``box_score_thresh``).

    ``box_head_dim``: width of Faster R-CNN's two-layer box head (torchvision: 1024; smaller for
    CPU-sized models).
    """
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet

    if arch not in ARCHS:
        from robustune.registry import unknown_choice_message

        raise ValueError(unknown_choice_message("detector arch", arch, ARCHS))
    trunk_kwargs = dict(backbone_kwargs or {})
    hierarchical = backbone not in MODELS and _is_hierarchical(backbone)
    if hierarchical:
        trunk_kwargs.setdefault("features_only", True)
        trunk_kwargs.setdefault("out_indices", (1, 2, 3, 4))
    trunk, meta = _create_trunk(backbone, weights, trunk_kwargs)
    for ref in (weights if weights and is_file_ref(weights) else None, backbone_file):
        if ref:
            load_trunk_weights(trunk, ref)
    body = DetectionBackbone(trunk, meta["mean"], meta["std"], fpn_channels, arch, pyramid_scales, hierarchical)
    anchors = _anchor_generator(body.strides, arch, anchor_sizes)
    common = dict(min_size=min_size, max_size=max_size, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0])
    if arch == "faster_rcnn":
        if box_head_dim:
            from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

            detector_kwargs["box_head"] = TwoMLPHead(fpn_channels * 7 * 7, box_head_dim)
            detector_kwargs["box_predictor"] = FastRCNNPredictor(box_head_dim, num_classes + 1)
            num = None
        else:
            num = num_classes + 1
        model = FasterRCNN(body, num, rpn_anchor_generator=anchors, **common, **detector_kwargs)
    elif arch == "retinanet":
        model = RetinaNet(body, num_classes + 1, anchor_generator=anchors, **common, **detector_kwargs)
    else:
        model = FCOS(body, num_classes + 1, anchor_generator=anchors, **common, **detector_kwargs)
    return Detector(model, num_classes, arch, name=f"{arch}:{backbone}")


def _is_hierarchical(name: str) -> bool:
    """timm CNNs with ``features_only`` (ViT-like trunks take the simple feature pyramid)."""
    base = name.split(".")[0]
    return not any(base.startswith(p) for p in ("vit_", "deit", "eva", "beit", "fan_", "cait", "xcit"))
