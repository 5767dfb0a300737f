"""Progressive growing networks (Karras et al. 2018, PGGAN): G and D built for the full size, run at a
``stage`` (resolution 4·2^stage) with a fade-in ``alpha`` for the newest block:

* G: ``x = alpha * toRGB_s(block_s(h)) + (1 - alpha) * up(toRGB_{s-1}(h))``;
* D: ``h = alpha * block_s(fromRGB_s(x)) + (1 - alpha) * fromRGB_{s-1}(avgpool(x))``.

``stage`` and ``alpha`` are plain attributes, not buffers (an EMA of G would average a float buffer):
the GANModule sets them on G, its EMA copy and D from the generator step, through ``model.growth``
(:class:`gan_lightning.growing.Growth`), which makes them exact on resume. Without a growth schedule the
defaults (last stage, alpha 1) give a fixed-size PGGAN. Equalized learning rate, pixel norm in G
and minibatch-std in D, LeakyReLU(0.2), no output activation, as in the paper.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import ConfigError
from gan_lightning.nets.layers import (
    D_CONDITIONING,
    DiscriminatorHead,
    EqualizedConv2d,
    EqualizedLinear,
    InputConditioning,
    MinibatchDiscrimination,
    MinibatchStd,
    check_choice,
    check_image_shape,
    require_labels,
)
from gan_lightning.nets.norms import PixelNorm


def _stages(size: int) -> int:
    n = (size // 4).bit_length() - 1
    if size < 8 or 4 * 2**n != size:
        raise ConfigError(
            f"PGGAN cannot produce {size}x{size} images: it grows from 4x4 by doubling, so the size must be "
            "4*2^n (8, 16, 32, 64, ...); change data.init_args.image_size"
        )
    return n


def _width(width: int, stage: int) -> int:
    """Channels at a stage: ``width`` up to 16x16, then halved per doubling (PGGAN's fmap decay)."""
    return max(width >> max(0, stage - 2), 8)


class PGGANGenerator(nn.Module):
    """z -> pixel norm -> 4x4 block -> stage blocks (nearest up, 2 x [conv 3x3, LReLU, pixel norm]) ->
    toRGB (1x1), faded with the previous stage's upsampled image while ``alpha < 1``.

    Args:
        data_shape: (C, H, H) of the full-size images, H = 4·2^n.
        num_classes: classes of a conditional G; labels enter by "concat" (PGGAN has no BN for cBN).
        latent_dim, width: z size; channels up to 16x16 (halved per later stage).
        conditioning: "concat" only (an ``embed_dim`` label embedding joined to z).
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        latent_dim: int = 128,
        width: int = 128,
        conditioning: Literal["concat"] = "concat",
        embed_dim: int = 32,
    ) -> None:
        super().__init__()
        channels, size = check_image_shape(data_shape, "PGGAN")
        n = _stages(size)
        self.latent_dim, self.num_classes, self.data_shape = latent_dim, num_classes, tuple(data_shape)
        self.conditioning = (
            check_choice(conditioning, ("concat",), "PGGAN conditioning") if num_classes else None
        )
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        c0 = _width(width, 0)
        self.bottom = (c0, 4, 4)
        self.first = EqualizedLinear(latent_dim + (embed_dim if num_classes else 0), c0 * 16)
        self.first_conv = EqualizedConv2d(c0, c0, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(_width(width, s - 1), _width(width, s), 3, padding=1),
                           EqualizedConv2d(_width(width, s), _width(width, s), 3, padding=1)])
            for s in range(1, n + 1)
        )  # fmt: skip
        self.to_rgb = nn.ModuleList(
            EqualizedConv2d(_width(width, s), channels, 1, gain=1.0) for s in range(n + 1)
        )
        self.norm, self.act = PixelNorm(), nn.LeakyReLU(0.2)
        self.num_stages, self.stage, self.alpha = n + 1, n, 1.0

    def _block(self, convs: nn.ModuleList, h: Tensor) -> Tensor:
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        for conv in convs:
            h = self.norm(self.act(conv(h)))
        return h

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            z = torch.cat([z, self.embed(require_labels(y, self.num_classes, type(self).__name__))], 1)
        h = self.norm(self.act(self.first(self.norm(z)).view(len(z), *self.bottom)))
        h = self.norm(self.act(self.first_conv(h)))
        s = self.stage
        for convs in self.blocks[: max(s - 1, 0)]:
            h = self._block(convs, h)
        if s == 0:
            return self.to_rgb[0](h)
        new = self.to_rgb[s](self._block(self.blocks[s - 1], h))
        if self.alpha >= 1:
            return new
        old = F.interpolate(self.to_rgb[s - 1](h), scale_factor=2.0, mode="nearest")
        return torch.lerp(old, new, self.alpha)


class PGGANDiscriminator(nn.Module):
    """fromRGB (1x1) -> stage blocks (2 x [conv 3x3, LReLU], avg pool), the newest faded in ->
    minibatch-std -> conv 3x3 -> conv 4x4 -> features -> head.

    Args:
        data_shape: (C, H, H) of the full-size images; any C (PacGAN packs m·C).
        num_classes, conditioning, embed_dim: as every D (see :class:`DiscriminatorHead`).
        width: channels up to 16x16 (halved per later stage).
        minibatch_std_group: PGGAN's minibatch-std group size (4); 0 = off.
        minibatch_discrimination: minibatch-discrimination kernels on the features; 0 = off.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        width: int = 128,
        conditioning: Literal["projection", "acgan", "input"] = "projection",
        embed_dim: int = 10,
        minibatch_std_group: int = 4,
        minibatch_discrimination: int = 0,
    ) -> None:
        super().__init__()
        channels, size = check_image_shape(data_shape, "PGGAN")
        n = _stages(size)
        self.num_classes = num_classes
        self.conditioning = (
            check_choice(conditioning, D_CONDITIONING, "discriminator conditioning") if num_classes else None
        )
        self.input_conditioning = (
            InputConditioning(num_classes, embed_dim) if self.conditioning == "input" else None
        )
        c_in = channels + (embed_dim if self.input_conditioning is not None else 0)
        self.from_rgb = nn.ModuleList(EqualizedConv2d(c_in, _width(width, s), 1) for s in range(n + 1))
        self.blocks = nn.ModuleList(  # blocks[s - 1]: stage s resolution -> stage s - 1
            nn.Sequential(
                EqualizedConv2d(_width(width, s), _width(width, s), 3, padding=1), nn.LeakyReLU(0.2),
                EqualizedConv2d(_width(width, s), _width(width, s - 1), 3, padding=1), nn.LeakyReLU(0.2),
                nn.AvgPool2d(2),
            )
            for s in range(1, n + 1)
        )  # fmt: skip
        c0 = _width(width, 0)
        self.final = nn.Sequential(
            *([MinibatchStd(minibatch_std_group)] if minibatch_std_group else []),
            EqualizedConv2d(c0 + (1 if minibatch_std_group else 0), c0, 3, padding=1), nn.LeakyReLU(0.2),
            EqualizedConv2d(c0, c0, 4), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.act = nn.LeakyReLU(0.2)
        k = minibatch_discrimination
        self.minibatch_discrimination = MinibatchDiscrimination(c0, k) if k else None
        self.head = DiscriminatorHead(c0 + k, num_classes, conditioning)
        self.num_stages, self.stage, self.alpha = n + 1, n, 1.0

    def grown_input(self, x: Tensor) -> Tensor:
        """The newest stage's output, faded with the previous stage's fromRGB of the pooled image."""
        s, res = self.stage, 4 * 2**self.stage
        if x.shape[-1] != res:
            raise ConfigError(
                f"PGGAN D at stage {s} takes {res}x{res} images, got {x.shape[-2]}x{x.shape[-1]}"
            )
        h = self.act(self.from_rgb[s](x))
        if s == 0:
            return h
        h = self.blocks[s - 1](h)
        if self.alpha < 1:
            old = self.act(self.from_rgb[s - 1](F.avg_pool2d(x, 2)))
            h = torch.lerp(old, h, self.alpha)
        return h

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.input_conditioning is not None:
            x = self.input_conditioning(x, require_labels(y, self.num_classes, type(self).__name__))
        h = self.grown_input(x)
        for block in reversed(self.blocks[: max(self.stage - 1, 0)]):
            h = block(h)
        h = self.final(h).flatten(1)
        return self.minibatch_discrimination(h) if self.minibatch_discrimination is not None else h

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.features(x, y), y)
