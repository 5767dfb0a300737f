"""2D Gaussian mixtures for mode-collapse studies, with the PacGAN/VEEGAN constants.

* ring: 8 modes on the unit circle at angles 2*pi*k/8, k = 0..7, std 0.01. (``linspace(0, 2*pi, 8)``
  would repeat the first mode as the last; public copies have that bug.)
* grid: 25 modes at {-4,-2,0,2,4}^2, std 0.05.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from gan_lightning.data.base import GANDataModule, TensorSamples
from gan_lightning.errors import ConfigError


def mixture_means(kind: str) -> Tensor:
    """The means of the named mixture, (K, 2)."""
    if kind == "ring":
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        return torch.stack([angles.cos(), angles.sin()], 1).float()
    if kind == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis)
    raise ConfigError(f"unknown mixture {kind!r}; use 'ring' or 'grid'")


MIXTURE_STD = {"ring": 0.01, "grid": 0.05}


def sample_mixture(kind: str, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """n points from the mixture, with the index of the mode each was drawn from."""
    means = mixture_means(kind)
    modes = torch.randint(len(means), (n,), generator=generator)
    points = means[modes] + MIXTURE_STD[kind] * torch.randn(n, 2, generator=generator)
    return points, modes


class GaussianMixture2D(GANDataModule):
    """Points from the ring (8 modes) or grid (25 modes) mixture, drawn once with a fixed seed.

    Args:
        kind: "ring" or "grid".
        num_samples: training points (validation and test get ``num_samples // 10`` each).
    """

    def __init__(
        self, kind: str = "ring", num_samples: int = 100_000, batch_size: int = 256, **kwargs: Any
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        mixture_means(kind)  # validates the name now, not at setup
        self.kind = kind
        self.num_samples = num_samples

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (2,)

    @property
    def means(self) -> Tensor:
        return mixture_means(self.kind)

    @property
    def std(self) -> float:
        return MIXTURE_STD[self.kind]

    def build(self, split: str) -> Dataset:
        n = self.num_samples if split == "train" else max(self.num_samples // 10, 1)
        offset = {"train": 0, "val": 1, "test": 2}[split]
        g = torch.Generator().manual_seed(self._seed() * 3 + offset)
        points, modes = sample_mixture(self.kind, n, g)
        return TensorSamples(points, modes)
