"""DCGAN (Radford et al. 2016), following its architecture guidelines:

* strided (transposed) convolutions instead of pooling;
* BatchNorm in G (not on its output layer) and in D (not on its input layer);
* ReLU in G with tanh at the output; LeakyReLU(0.2) in D;
* no fully connected hidden layers (one linear projection in, one out).

Sizes: any ``s * 2**n`` with 4 <= s <= 7 and n >= 1, e.g. 28 (7·2²), 32 (4·2³), 64 (4·2⁴).
Conditional (``num_classes > 0``): G by class-conditional BN or a label embedding joined to z; D by
projection, an ACGAN classifier or label input channels (see :class:`~gan_lightning.nets.layers.
DiscriminatorHead`).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from gan_lightning.nets.g_layers import (
    LayerDropout,
    LayerNoise,
    VBNReference,
    after_hidden_layer,
    check_layers,
    g_norm,
    generator_inputs,
)
from gan_lightning.nets.layers import (
    D_CONDITIONING,
    DiscriminatorHead,
    InputConditioning,
    MinibatchDiscrimination,
    MinibatchStd,
    apply_spectral_norm,
    check_choice,
    check_image_shape,
    g_conditioning,
    init_dcgan_weights,
    require_labels,
    start_size,
)
from gan_lightning.nets.norms import ConditionalBatchNorm2d, ConditionalSequential, make_norm


def dcgan_start_size(image_size: int) -> tuple[int, int]:
    return start_size(image_size, "DCGAN")


class DCGANGenerator(nn.Module):
    """z (latent_dim) -> linear -> (width·2^(n-1), s, s) -> n x [ConvT 4/2 + BN + ReLU] -> tanh image.

    Args:
        data_shape: (C, H, W) of the images; linked from the data module, never typed in a config.
        num_classes: classes of a conditional G (``forward(z, y)``); 0 for unconditional.
        latent_dim: size of the N(0, I) noise vector.
        width: channels of the last hidden layer; earlier layers double it.
        norm: G's norm layers ("batch" in DCGAN; see :func:`~gan_lightning.nets.norms.make_norm`).
        spectral_norm: spectral normalization on G's weights too (as SAGAN and BigGAN do).
        conditioning: "cbn" (each BN gets per-class gain and bias) or "concat" (an ``embed_dim`` label
            embedding joined to z).
        embed_dim: size of the label embedding for "concat".
        noise: Gaussian noise after chosen hidden layers (:class:`~gan_lightning.nets.g_layers.LayerNoise`);
            hidden layer 0 is the projection of z, 1..n-1 the upsampling blocks.
        dropout: dropout after chosen hidden layers (:class:`~gan_lightning.nets.g_layers.LayerDropout`).

    ``norm: virtual`` is virtual batch norm (:class:`~gan_lightning.nets.g_layers.VirtualBatchNorm`): G
    runs its fixed reference latents (a buffer) with every batch.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        latent_dim: int = 100,
        width: int = 64,
        norm: str = "batch",
        spectral_norm: bool = False,
        conditioning: Literal["cbn", "concat"] = "cbn",
        embed_dim: int = 32,
        noise: LayerNoise | None = None,
        dropout: LayerDropout | None = None,
    ) -> None:
        super().__init__()
        channels, size = check_image_shape(data_shape)
        s, n = dcgan_start_size(size)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.data_shape = tuple(data_shape)
        self.conditioning = g_conditioning(conditioning, num_classes, norm, type(self).__name__)
        concat = self.conditioning == "concat"

        def bn(c: int) -> nn.Module:
            return ConditionalBatchNorm2d(c, num_classes) if self.conditioning == "cbn" else g_norm(norm, c)

        check_layers(n, noise, dropout)
        c = width * 2 ** (n - 1)
        bias = norm in ("none", "pixel")  # a norm with its own shift makes the layer's bias redundant
        self.project = ConditionalSequential(
            nn.Linear(latent_dim + (embed_dim if concat else 0), c * s * s, bias=bias),
            nn.Unflatten(1, (c, s, s)),
            bn(c),
            nn.ReLU(),
            *after_hidden_layer(0, noise, dropout),
        )
        blocks: list[nn.Module] = []
        for i in range(1, n):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=bias), bn(c // 2), nn.ReLU()]
            blocks += after_hidden_layer(i, noise, dropout)
            c //= 2
        blocks += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]  # no BN on the output layer
        self.body = ConditionalSequential(*blocks)
        self.embed = nn.Embedding(num_classes, embed_dim) if concat else None
        self.reference = VBNReference(latent_dim, num_classes) if norm == "virtual" else None
        init_dcgan_weights(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        z, y = generator_inputs(self, z, y)
        out = self.body(self.project(z, y), y)
        return self.reference.strip(out) if self.reference is not None else out


class DCGANDiscriminator(nn.Module):
    """image -> n x [Conv 4/2 (+ norm) + LeakyReLU(0.2)] -> features (flattened) -> head -> raw score.

    Args:
        data_shape: (C, H, W) of the images; linked from the data module. Any C (PacGAN packs m·C).
        num_classes: classes of a conditional D; 0 for unconditional.
        width: channels of the first layer; later layers double it.
        norm: "batch" (DCGAN), "layer" or "instance" (for gradient penalties), "group", "pixel",
            "switchable" or "none" (see :func:`~gan_lightning.nets.norms.make_norm`).
        spectral_norm: wrap every conv/linear weight with spectral normalization (Miyato et al. 2018).
        conditioning: "projection", "acgan" or "input" (see :class:`DiscriminatorHead`).
        embed_dim: label channels added at the input for "input" conditioning.
        minibatch_std_group: group size of a minibatch-std feature map appended before the last (linear)
            layer (Karras et al. 2018); 0 = off.
        minibatch_discrimination: number of minibatch-discrimination kernels on the features (Salimans
            et al. 2016); 0 = off.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        width: int = 64,
        norm: str = "batch",
        spectral_norm: bool = False,
        conditioning: Literal["projection", "acgan", "input"] = "projection",
        embed_dim: int = 10,
        minibatch_std_group: int = 0,
        minibatch_discrimination: int = 0,
    ) -> None:
        super().__init__()
        channels, size = check_image_shape(data_shape)
        s, n = dcgan_start_size(size)
        self.num_classes = num_classes
        self.conditioning = (
            check_choice(conditioning, D_CONDITIONING, "discriminator conditioning") if num_classes else None
        )
        self.input_conditioning = (
            InputConditioning(num_classes, embed_dim) if self.conditioning == "input" else None
        )
        extra = embed_dim if self.input_conditioning is not None else 0
        layers: list[nn.Module] = [
            nn.Conv2d(channels + extra, width, 4, 2, 1),
            nn.LeakyReLU(0.2),
        ]  # no norm on input
        c = width
        for _ in range(n - 1):
            layers += [
                nn.Conv2d(c, c * 2, 4, 2, 1, bias=norm in ("none", "pixel")),
                make_norm(norm, c * 2),
                nn.LeakyReLU(0.2),
            ]
            c *= 2
        self.body = nn.Sequential(*layers)
        self.minibatch_std = MinibatchStd(minibatch_std_group) if minibatch_std_group else None
        features = (c + (1 if self.minibatch_std else 0)) * s * s
        k = minibatch_discrimination
        self.minibatch_discrimination = MinibatchDiscrimination(features, k) if k else None
        self.head = DiscriminatorHead(features + k, num_classes, conditioning)
        init_dcgan_weights(self)
        if spectral_norm:
            apply_spectral_norm(self, embeddings=True)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.input_conditioning is not None:
            x = self.input_conditioning(x, require_labels(y, self.num_classes, type(self).__name__))
        h = self.body(x)
        if self.minibatch_std is not None:
            h = self.minibatch_std(h)
        h = h.flatten(1)
        return self.minibatch_discrimination(h) if self.minibatch_discrimination is not None else h

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.features(x, y), y)
