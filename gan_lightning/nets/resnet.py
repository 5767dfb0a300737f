"""ResNet G and D of SNGAN (Miyato et al. 2018, appendix B; the CIFAR-10 ResNets of mimicry and
StudioGAN), with SAGAN's self-attention (Zhang et al. 2019) and BigGAN's G options (Brock et al. 2019).

* G: z -> linear -> (C0, b, b) -> n x GBlock (each doubles H, W) -> BN, ReLU, conv 3x3, tanh.
  GBlock: ``x + f(x)`` with ``f = conv3x3(ReLU(BN(up(conv3x3(ReLU(BN(x)))))))`` and a 1x1 conv
  shortcut after nearest upsampling.
* D: an optimized first block (conv, ReLU, conv, pool; shortcut pool then 1x1 conv), DBlocks
  ``ReLU, conv, ReLU, conv (, pool)``, then ReLU and a global *sum* pooling into the head.

Defaults are SNGAN-32 (mimicry: nz 128, ngf 256, ndf 128, bottom width 4, SN on D only): on 3x32x32
G has 4,276,739 and D 1,053,825 parameters. Sizes: any b·2^n, n >= 1 (auto b in 4..7: 28, 32, 48, 64...).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import ConfigError
from gan_lightning.nets.layers import (
    D_CONDITIONING,
    G_CONDITIONING,
    DiscriminatorHead,
    GatedConv2d,
    InputConditioning,
    MinibatchDiscrimination,
    MinibatchStd,
    SelfAttention,
    apply_spectral_norm,
    check_choice,
    check_image_shape,
    init_weights,
    make_downsample,
    make_upsample,
    require_labels,
    start_size,
)
from gan_lightning.nets.norms import (
    ConditionalBatchNorm2d,
    ProjectedBatchNorm2d,
    call_with_condition,
    make_norm,
)

_RESIDUAL_GAIN = 2**0.5  # xavier gain of the residual-branch convs (SNGAN's chainer code, mimicry)


class GBlock(nn.Module):
    """SNGAN's up block; ``norm(c)`` builds its two norm layers (plain, class- or vector-conditional)."""

    def __init__(
        self, in_channels: int, out_channels: int, norm, upsample: str | None, gated: bool, init: str
    ) -> None:
        super().__init__()
        conv = GatedConv2d if gated else nn.Conv2d
        self.b1 = norm(in_channels)
        self.c1 = (
            make_upsample(upsample, in_channels, out_channels, conv)
            if upsample
            else conv(in_channels, out_channels, 3, 1, 1)
        )
        self.b2 = norm(out_channels)
        self.c2 = conv(out_channels, out_channels, 3, 1, 1)
        self.upsample = upsample is not None
        learnable = in_channels != out_channels or self.upsample
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if learnable else None
        self.act = nn.ReLU()
        init_weights(self.c1, init, _RESIDUAL_GAIN)
        init_weights(self.c2, init, _RESIDUAL_GAIN)
        if self.shortcut is not None:
            init_weights(self.shortcut, init)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.c1(self.act(call_with_condition(self.b1, x, c)))
        h = self.c2(self.act(call_with_condition(self.b2, h, c)))
        s = F.interpolate(x, scale_factor=2.0, mode="nearest") if self.upsample else x
        return h + (self.shortcut(s) if self.shortcut is not None else s)


class DBlock(nn.Module):
    """SNGAN's D block; ``optimized`` is the first block (no activation on the input image, shortcut
    pooled before its 1x1 conv). ``norm`` (off in SNGAN) comes before each activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str,
        downsample: str | None,
        optimized: bool,
        init: str,
    ) -> None:
        super().__init__()
        self.optimized, self.downsample = optimized, downsample is not None
        self.n1 = nn.Identity() if optimized else make_norm(norm, in_channels)
        self.c1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.n2 = make_norm(norm, out_channels)
        self.c2 = (
            make_downsample(downsample, out_channels, out_channels)
            if downsample
            else nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        )
        learnable = in_channels != out_channels or self.downsample
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if learnable else None
        self.act = nn.ReLU()
        init_weights(self.c1, init, _RESIDUAL_GAIN)
        init_weights(self.c2, init, _RESIDUAL_GAIN)
        if self.shortcut is not None:
            init_weights(self.shortcut, init)

    def forward(self, x: Tensor) -> Tensor:
        h = self.c1(x if self.optimized else self.act(self.n1(x)))
        h = self.c2(self.act(self.n2(h)))
        if self.optimized:  # pool first: the 1x1 conv then runs on a quarter of the pixels
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x) if self.shortcut is not None else x
        return h + (F.avg_pool2d(s, 2) if self.downsample else s)


def _multipliers(given: list[int] | None, count: int, what: str) -> list[int]:
    if given is None:
        return [1] * count
    if len(given) != count:
        raise ConfigError(
            f"{what} needs {count} entries for this image size, got {len(given)}: {list(given)}"
        )
    return list(given)


class ResNetGenerator(nn.Module):
    """SNGAN's ResNet G with SAGAN and BigGAN options.

    Args:
        data_shape: (C, H, H) of the images; linked from the data module.
        num_classes: classes of a conditional G (``forward(z, y)``); 0 for unconditional.
        latent_dim: size of z.
        width: channels of the blocks; ``width_multipliers`` (n + 1 entries: the input of each of the n
            blocks, then the output) scales them per block (BigGAN's ch_mult); default all 1 (SNGAN).
        bottom_width: side b of the first feature map; default: the b in 4..7 with size = b·2^n.
        blocks_per_resolution: GBlocks per resolution (the first upsamples); the depth knob.
        upsample: "nearest" (SNGAN), "bilinear" (mimicry), "transposed" or "pixel_shuffle".
        norm: G's norm layers ("batch" for SNGAN; see :func:`~gan_lightning.nets.norms.make_norm`).
        spectral_norm: SN on G's convs and linears too (SAGAN, BigGAN).
        attention_resolution: add self-attention after the blocks at this resolution; 0 = off.
        gated: gated convolutions (Yu et al. 2019) in the blocks.
        conditioning: "cbn" (per-class BN gain and bias; needs norm "batch") or "concat".
        embed_dim: size of the label embedding ("concat", or the shared embedding).
        shared_embedding: BigGAN's shared class embedding, projected linearly to every block's BN gain
            and bias (instead of a per-class table per BN layer).
        hierarchical_z: BigGAN's hierarchical latent: z split in (blocks + 1) equal chunks, the first to
            the linear layer, one more to each block's conditional BN (with the shared embedding).
        init: "xavier" (SNGAN), "ortho" (BigGAN) or "normal".
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        latent_dim: int = 128,
        width: int = 256,
        width_multipliers: list[int] | None = None,
        bottom_width: int | None = None,
        blocks_per_resolution: int = 1,
        upsample: Literal["nearest", "bilinear", "transposed", "pixel_shuffle"] = "nearest",
        norm: str = "batch",
        spectral_norm: bool = False,
        attention_resolution: int = 0,
        gated: bool = False,
        conditioning: Literal["cbn", "concat"] = "cbn",
        embed_dim: int = 128,
        shared_embedding: bool = False,
        hierarchical_z: bool = False,
        init: Literal["xavier", "ortho", "normal"] = "xavier",
    ) -> None:
        super().__init__()
        channels, size = check_image_shape(data_shape, "ResNet")
        b, n = _g_start(size, bottom_width)
        self.latent_dim, self.num_classes, self.data_shape = latent_dim, num_classes, tuple(data_shape)
        self.conditioning = (
            check_choice(conditioning, G_CONDITIONING, "generator conditioning") if num_classes else None
        )
        shared = shared_embedding and self.conditioning is not None
        if shared and self.conditioning != "cbn":
            raise ConfigError("shared_embedding feeds the conditional BN; set conditioning 'cbn' or drop it")
        if self.conditioning == "cbn" and hierarchical_z and not shared:
            raise ConfigError("hierarchical_z with conditioning 'cbn' needs shared_embedding true (BigGAN)")
        if (self.conditioning == "cbn" or hierarchical_z) and norm != "batch":
            raise ConfigError("conditional BN (conditioning 'cbn', hierarchical_z) needs norm 'batch'")
        num_blocks = n * blocks_per_resolution
        self.chunk = latent_dim // (num_blocks + 1) if hierarchical_z else 0
        if hierarchical_z and latent_dim % (num_blocks + 1):
            raise ConfigError(
                f"hierarchical_z splits z into {num_blocks + 1} equal chunks (1 + one per block), but "
                f"latent_dim is {latent_dim}; use a multiple of {num_blocks + 1}"
            )
        proj_dim = self.chunk + (embed_dim if shared else 0)
        self.cbn = "projected" if proj_dim else "class" if self.conditioning == "cbn" else None

        def block_norm(c: int) -> nn.Module:
            if proj_dim:
                return ProjectedBatchNorm2d(c, proj_dim)
            return ConditionalBatchNorm2d(c, num_classes) if self.cbn == "class" else make_norm(norm, c)

        ch = [width * m for m in _multipliers(width_multipliers, n + 1, "width_multipliers")]
        concat = self.conditioning == "concat"
        self.embed = nn.Embedding(num_classes, embed_dim) if concat or shared else None
        z0 = self.chunk if hierarchical_z else latent_dim
        self.linear = nn.Linear(z0 + (embed_dim if concat else 0), b * b * ch[0])
        self.bottom = (ch[0], b, b)
        blocks: list[nn.Module] = []
        resolutions = []
        for i in range(n):
            for j in range(blocks_per_resolution):
                c_in = ch[i] if j == 0 else ch[i + 1]
                blocks.append(GBlock(c_in, ch[i + 1], block_norm, upsample if j == 0 else None, gated, init))
            resolutions.append(b * 2 ** (i + 1))
            if attention_resolution == resolutions[-1]:
                blocks.append(SelfAttention(ch[i + 1]))
        _check_attention(attention_resolution, resolutions, "generator")
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Sequential(
            make_norm(norm, ch[-1]), nn.ReLU(), nn.Conv2d(ch[-1], channels, 3, 1, 1), nn.Tanh()
        )
        init_weights(self.linear, init)
        init_weights(self.out, init)
        for m in self.blocks:
            if isinstance(m, SelfAttention):
                init_weights(m, init)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = require_labels(y, self.num_classes, type(self).__name__)
        zs = list(z.split(self.chunk, 1)) if self.chunk else [z]
        emb = self.embed(y) if self.embed is not None else None
        h_in = zs.pop(0)
        if self.conditioning == "concat":
            h_in = torch.cat([h_in, emb], 1)
        h = self.linear(h_in).view(len(z), *self.bottom)
        for m in self.blocks:
            if isinstance(m, GBlock):
                if self.cbn == "projected":  # BigGAN: [z chunk, shared embedding]
                    c = torch.cat([t for t in (zs.pop(0) if zs else None, emb) if t is not None], 1)
                else:
                    c = y if self.cbn == "class" else None
                h = m(h, c)
            else:
                h = m(h)
        return self.out(h)


class ResNetDiscriminator(nn.Module):
    """SNGAN's ResNet D with SAGAN's attention and the D options of every network here.

    Args:
        data_shape: (C, H, H) of the images; any C (PacGAN packs m·C).
        num_classes: classes of a conditional D; 0 for unconditional.
        width: channels of the blocks; ``width_multipliers`` (one entry per block) scales them.
        down_blocks: downsampling blocks (the first is SNGAN's optimized block); default n - 1 for a
            size b·2^n (32 -> 16 -> 8).
        plain_blocks: blocks without downsampling after those (SNGAN-32: 2).
        downsample: "avg_pool" (SNGAN) or "strided".
        norm: D's norm layers ("none" in SNGAN).
        spectral_norm: SN on every conv, linear and the projection embedding (SNGAN: on).
        attention_resolution: self-attention after the first block with this output resolution; 0 = off.
        conditioning: "projection", "acgan" or "input" (see :class:`DiscriminatorHead`).
        embed_dim: label channels added at the input for "input" conditioning.
        minibatch_std_group: minibatch-std channel before the last block (Karras et al. 2018); 0 = off.
        minibatch_discrimination: minibatch-discrimination kernels on the features; 0 = off.
        init: "xavier" (SNGAN), "ortho" (BigGAN) or "normal".
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        width: int = 128,
        width_multipliers: list[int] | None = None,
        down_blocks: int | None = None,
        plain_blocks: int = 2,
        downsample: Literal["avg_pool", "strided"] = "avg_pool",
        norm: str = "none",
        spectral_norm: bool = True,
        attention_resolution: int = 0,
        conditioning: Literal["projection", "acgan", "input"] = "projection",
        embed_dim: int = 10,
        minibatch_std_group: int = 0,
        minibatch_discrimination: int = 0,
        init: Literal["xavier", "ortho", "normal"] = "xavier",
    ) -> None:
        super().__init__()
        channels, size = check_image_shape(data_shape, "ResNet")
        down = start_size(size, "ResNet")[1] - 1 if down_blocks is None else down_blocks
        if down < 1 or size % 2**down:
            raise ConfigError(f"ResNet D cannot halve {size}x{size} images {down} times; change down_blocks")
        self.num_classes = num_classes
        self.conditioning = (
            check_choice(conditioning, D_CONDITIONING, "discriminator conditioning") if num_classes else None
        )
        self.input_conditioning = (
            InputConditioning(num_classes, embed_dim) if self.conditioning == "input" else None
        )
        ch = [width * m for m in _multipliers(width_multipliers, down + plain_blocks, "width_multipliers")]
        c_in = channels + (embed_dim if self.input_conditioning is not None else 0)
        blocks: list[nn.Module] = []
        resolutions = []
        for i, c in enumerate(ch):
            if minibatch_std_group and i == len(ch) - 1:  # one std map into the last block
                blocks.append(MinibatchStd(minibatch_std_group))
                c_in += 1
            blocks.append(DBlock(c_in, c, norm, downsample if i < down else None, i == 0, init))
            resolutions.append(size // 2 ** min(i + 1, down))
            if attention_resolution == resolutions[-1] and resolutions.count(resolutions[-1]) == 1:
                blocks.append(SelfAttention(c))
                init_weights(blocks[-1], init)
            c_in = c
        _check_attention(attention_resolution, resolutions, "discriminator")
        self.blocks = nn.Sequential(*blocks)
        self.act = nn.ReLU()
        k = minibatch_discrimination
        self.minibatch_discrimination = MinibatchDiscrimination(ch[-1], k) if k else None
        self.head = DiscriminatorHead(ch[-1] + k, num_classes, conditioning)
        init_weights(self.head.linear, init)
        if self.head.classifier is not None:
            init_weights(self.head.classifier, init)
        if spectral_norm:
            apply_spectral_norm(self, embeddings=True)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.input_conditioning is not None:
            x = self.input_conditioning(x, require_labels(y, self.num_classes, type(self).__name__))
        h = self.act(self.blocks(x)).sum((2, 3))  # global sum pooling (SNGAN)
        return self.minibatch_discrimination(h) if self.minibatch_discrimination is not None else h

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.features(x, y), y)


def _g_start(size: int, bottom_width: int | None) -> tuple[int, int]:
    if bottom_width is None:
        return start_size(size, "ResNet")
    n = 0
    while bottom_width * 2**n < size:
        n += 1
    if n < 1 or bottom_width * 2**n != size:
        raise ConfigError(
            f"ResNet cannot produce {size}x{size} images from bottom_width {bottom_width}: the size must be "
            "bottom_width*2^n with n>=1; change the generator's bottom_width or data.init_args.image_size"
        )
    return bottom_width, n


def _check_attention(resolution: int, available: list[int], who: str) -> None:
    if resolution and resolution not in available:
        raise ConfigError(
            f"no {who} block works at resolution {resolution} for this image size; set attention_resolution "
            f"to one of {sorted(set(available))} (or 0 for none)"
        )
