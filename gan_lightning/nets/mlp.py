"""MLP generator and discriminator for low-dimensional data (the 2D mixtures).

Options for PacGAN's 2D-grid setting (Lin et al. 2018: G with 4 hidden layers of 400 ReLU units and
BatchNorm; D with 3 hidden layers of 200 maxout units of 5 pieces): ``norm`` and ``bn_momentum`` in G,
``activation`` in D, ``init_std`` in both (the authors' code: weights N(0, 0.02²), biases 0, BatchNorm
population statistics updated with momentum 0.05).
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from gan_lightning.errors import ConfigError
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
    Maxout,
    MinibatchDiscrimination,
    MinibatchStd,
    apply_spectral_norm,
    check_choice,
    g_conditioning,
    init_normal_weights,
    require_labels,
)
from gan_lightning.nets.norms import ConditionalBatchNorm1d, ConditionalSequential


class MLPGenerator(nn.Module):
    """z -> ``depth`` x [Linear(hidden) (+ norm) + ReLU] -> Linear -> a point in data space (no output
    squashing: the 2D grid spans [-4, 4]).

    Args:
        data_shape: shape of one sample, e.g. (2,).
        num_classes: classes of a conditional G (``forward(z, y)``); 0 for unconditional.
        latent_dim, hidden, depth: noise size, hidden width and number of hidden layers.
        norm: "none", "batch", "layer", "pixel" or "virtual" (virtual batch norm, with G's fixed
            reference latents: :class:`~gan_lightning.nets.g_layers.VirtualBatchNorm`) after each hidden
            linear layer.
        spectral_norm: spectral normalization on G's linear layers.
        conditioning: "concat" (a label embedding joined to z) or "cbn" (needs ``norm: batch``).
        embed_dim: size of the label embedding for "concat".
        noise: Gaussian noise after chosen hidden layers (:class:`~gan_lightning.nets.g_layers.LayerNoise`).
        dropout: dropout after chosen hidden layers (:class:`~gan_lightning.nets.g_layers.LayerDropout`).
        init_std: weights ~ N(0, init_std²) and biases 0; None keeps PyTorch's default init.
        bn_momentum: momentum of the BatchNorm running statistics (PyTorch's default 0.1; PacGAN 0.05).
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        latent_dim: int = 2,
        hidden: int = 128,
        depth: int = 3,
        norm: str = "none",
        spectral_norm: bool = False,
        conditioning: Literal["cbn", "concat"] = "concat",
        embed_dim: int = 8,
        noise: LayerNoise | None = None,
        dropout: LayerDropout | None = None,
        init_std: float | None = None,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0.0 < bn_momentum <= 1.0:
            raise ConfigError(f"bn_momentum must be in (0, 1], got {bn_momentum}")
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.data_shape = tuple(data_shape)
        self.conditioning = g_conditioning(conditioning, num_classes, norm, type(self).__name__)
        concat = self.conditioning == "concat"
        check_layers(depth, noise, dropout)
        layers: list[nn.Module] = []
        act = nn.ReLU()
        for i in range(depth):
            layers.append(nn.Linear(latent_dim + (embed_dim if concat else 0) if i == 0 else hidden, hidden))
            if self.conditioning == "cbn":
                layers.append(ConditionalBatchNorm1d(hidden, num_classes))
            elif norm != "none":
                layers.append(g_norm(norm, hidden, dims=1))
            layers += [act, *after_hidden_layer(i, noise, dropout)]
        d_in = hidden if depth else latent_dim + (embed_dim if concat else 0)
        layers.append(nn.Linear(d_in, math.prod(data_shape)))
        self.net = ConditionalSequential(*layers)
        self.embed = nn.Embedding(num_classes, embed_dim) if concat else None
        self.reference = VBNReference(latent_dim, num_classes) if norm == "virtual" and depth else None
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.momentum = bn_momentum
        if init_std is not None:
            init_normal_weights(self, init_std)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        z, y = generator_inputs(self, z, y)
        out = self.net(z, y)
        out = self.reference.strip(out) if self.reference is not None else out
        return out.view(len(out), *self.data_shape)


class MLPDiscriminator(nn.Module):
    """x -> ``depth`` x [Linear(hidden) + LeakyReLU(0.2)] (or maxout units) -> features -> head.

    Args:
        data_shape: shape of one sample; any size (PacGAN packs m samples: (m·2,)).
        num_classes: classes of a conditional D; 0 for unconditional.
        hidden, depth: hidden width and number of hidden layers.
        spectral_norm: spectral normalization on every linear layer (Miyato et al. 2018).
        activation: "leaky_relu" (0.2), "relu" or "maxout" (``maxout_pieces`` linear pieces per unit).
        conditioning: "projection", "acgan" or "input" (see :class:`DiscriminatorHead`).
        embed_dim: label features joined to the input for "input" conditioning.
        minibatch_std_group: group size of a minibatch-std feature appended before the last hidden layer
            (Karras et al. 2018); 0 = off.
        minibatch_discrimination: number of minibatch-discrimination kernels on the features (Salimans
            et al. 2016); 0 = off.
        init_std: weights ~ N(0, init_std²) and biases 0; None keeps PyTorch's default init.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        hidden: int = 128,
        depth: int = 3,
        spectral_norm: bool = False,
        activation: Literal["leaky_relu", "relu", "maxout"] = "leaky_relu",
        maxout_pieces: int = 5,
        conditioning: Literal["projection", "acgan", "input"] = "projection",
        embed_dim: int = 10,
        minibatch_std_group: int = 0,
        minibatch_discrimination: int = 0,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        check_choice(activation, ("leaky_relu", "relu", "maxout"), "activation")
        self.num_classes = num_classes
        self.conditioning = (
            check_choice(conditioning, D_CONDITIONING, "discriminator conditioning") if num_classes else None
        )
        self.input_conditioning = (
            InputConditioning(num_classes, embed_dim) if self.conditioning == "input" else None
        )
        d_in = math.prod(data_shape) + (embed_dim if self.input_conditioning is not None else 0)
        act = nn.LeakyReLU(0.2) if activation == "leaky_relu" else nn.ReLU()
        layers: list[nn.Module] = []
        for i in range(depth):
            if minibatch_std_group and i == depth - 1:  # one std feature into the last hidden layer
                layers.append(MinibatchStd(minibatch_std_group))
            width_in = (d_in if i == 0 else hidden) + (1 if minibatch_std_group and i == depth - 1 else 0)
            layers += (
                [Maxout(width_in, hidden, maxout_pieces)]
                if activation == "maxout"
                else [nn.Linear(width_in, hidden), act]
            )
        features = hidden if depth else d_in
        if minibatch_std_group and not depth:
            layers.append(MinibatchStd(minibatch_std_group))
            features += 1
        self.net = nn.Sequential(*layers)
        k = minibatch_discrimination
        self.minibatch_discrimination = MinibatchDiscrimination(features, k) if k else None
        self.head = DiscriminatorHead(features + k, num_classes, conditioning)
        if init_std is not None:
            init_normal_weights(self, init_std)
        if spectral_norm:
            apply_spectral_norm(self, embeddings=True)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = x.flatten(1)
        if self.input_conditioning is not None:
            h = self.input_conditioning(h, require_labels(y, self.num_classes, type(self).__name__))
        h = self.net(h)
        return self.minibatch_discrimination(h) if self.minibatch_discrimination is not None else h

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.features(x, y), y)
