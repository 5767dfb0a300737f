"""A multi-scale discriminator (pix2pixHD, Wang et al. 2018): copies of one D architecture, each on the
input average-pooled to 1x, 1/2x, 1/4x... of its size, with the scores summed:
``D(x) = sum_k D_k(avgpool_{2^k}(x))``.

Each scale has its own weights (as pix2pixHD), so any D works, including DCGAN's whose last linear layer
fixes the input size. It obeys the D contract: ``features`` concatenates the scales' features (coarse
scales see global structure, the full scale texture) and ``head`` splits them back and sums the scales'
scores (and, for ACGAN, their class logits).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import ConfigError


class MultiScaleHead:
    """The sum of the scales' heads, on the concatenated features (not a module: the heads' weights
    belong to their scale's D, so they are saved once)."""

    def __init__(self, discriminators: nn.ModuleList) -> None:
        self.discriminators = discriminators
        self.sizes = [d.head.in_features for d in discriminators]
        self.in_features = sum(self.sizes)
        self.conditioning = discriminators[0].head.conditioning
        self.num_classes = discriminators[0].head.num_classes

    def __call__(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        return sum(d.head(part, y) for d, part in zip(self.discriminators, h.split(self.sizes, 1)))

    def classify(self, h: Tensor) -> Tensor:
        return sum(d.head.classify(part) for d, part in zip(self.discriminators, h.split(self.sizes, 1)))


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` discriminators built by ``discriminator(shape_k, num_classes)``, scale k seeing
    (C, H/2^k, W/2^k).

    Args:
        data_shape: (C, H, W) of the images; linked from the data module.
        num_classes: classes of a conditional D, passed to every scale.
        discriminator: the D of every scale, e.g. ``{class_path: gan_lightning.nets.DCGANDiscriminator,
            init_args: {width: 32}}``.
        num_scales: 3 for 1x, 1/2x and 1/4x.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        discriminator: Callable[[tuple[int, ...], int], nn.Module],
        num_scales: int = 3,
    ) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ConfigError(f"a multi-scale D needs images (C, H, W), got data shape {tuple(data_shape)}")
        c, h, w = data_shape
        if h % 2 ** (num_scales - 1) or w % 2 ** (num_scales - 1):
            raise ConfigError(
                f"{h}x{w} images cannot be halved {num_scales - 1} times; lower num_scales or change the size"
            )
        nets = []
        for k in range(num_scales):
            shape = (c, h // 2**k, w // 2**k)
            try:
                nets.append(discriminator(shape, num_classes))
            except ConfigError as err:
                raise ConfigError(f"multi-scale D, scale 1/{2**k} ({shape[1]}x{shape[2]}): {err}") from None
        self.discriminators = nn.ModuleList(nets)
        self.num_classes = num_classes
        self.head = MultiScaleHead(self.discriminators)
        self.conditioning = self.head.conditioning

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        feats = []
        for k, d in enumerate(self.discriminators):
            if k:
                x = F.avg_pool2d(x, 2)
            feats.append(d.features(x, y))
        return torch.cat(feats, 1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.features(x, y), y)
