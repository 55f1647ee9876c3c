"""Tiny models registered for CPU work and tests (digits at 32×32)."""

from __future__ import annotations

from torch import nn

from robustune.models.registry import register_model


@register_model("vit_tiny32", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=(3, 32, 32))
def vit_tiny32(num_classes: int = 10, **kwargs) -> nn.Module:
    """timm VisionTransformer: 32 px, patch 4, dim 64, depth 4, 4 heads (~208 K parameters, the machine-notes recipe)."""
    from timm.models.vision_transformer import VisionTransformer

    args = dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4)
    args.update(kwargs)
    return VisionTransformer(num_classes=num_classes, **args)


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head; exposes timm's feature API for GFN."""

    def __init__(self, num_classes: int = 10, width: int = 32, in_chans: int = 3) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(in_chans, width), block(width, 2 * width),
                                  block(2 * width, 4 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 4 * width
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x):
        return self.body(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.head(x)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


@register_model("small_cnn", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=(3, 32, 32))
def small_cnn(num_classes: int = 10, **kwargs) -> nn.Module:
    return SmallCNN(num_classes=num_classes, **kwargs)
