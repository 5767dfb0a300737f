"""MLP generator and discriminator for low-dimensional data (the 2D mixtures)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from gan_lightning.nets.dcgan import apply_spectral_norm


def _mlp(d_in: int, d_out: int, hidden: int, depth: int, act: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), act]
    layers.append(nn.Linear(hidden if depth else d_in, d_out))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z -> ``depth`` x [Linear(hidden) + ReLU] -> Linear -> a point in data space (no output squashing:
    the 2D grid spans [-4, 4]).
    """

    def __init__(
        self, data_shape: tuple[int, ...], latent_dim: int = 2, hidden: int = 128, depth: int = 3
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.data_shape = tuple(data_shape)
        self.net = _mlp(latent_dim, math.prod(data_shape), hidden, depth, nn.ReLU())

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(len(z), *self.data_shape)


class MLPDiscriminator(nn.Module):
    """x -> ``depth`` x [Linear(hidden) + LeakyReLU(0.2)] -> one raw score per sample."""

    def __init__(
        self, data_shape: tuple[int, ...], hidden: int = 128, depth: int = 3, spectral_norm: bool = False
    ) -> None:
        super().__init__()
        self.net = _mlp(math.prod(data_shape), 1, hidden, depth, nn.LeakyReLU(0.2))
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)
