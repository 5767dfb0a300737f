"""DCGAN (Radford et al. 2016), following its architecture guidelines:

* strided (transposed) convolutions instead of pooling;
* BatchNorm in G (not on its output layer) and in D (not on its input layer);
* ReLU in G with tanh at the output; LeakyReLU(0.2) in D;
* no fully connected hidden layers (one linear projection in, one out).

Sizes: any ``s * 2**n`` with 4 <= s <= 7 and n >= 1, e.g. 28 (7·2²), 32 (4·2³), 64 (4·2⁴).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from gan_lightning.errors import ConfigError


def dcgan_start_size(image_size: int) -> tuple[int, int]:
    """(s, n) with image_size = s * 2**n, 4 <= s <= 7, n >= 1; a clear error when there is none."""
    s, n = image_size, 0
    while s > 7 and s % 2 == 0:
        s, n = s // 2, n + 1
    if not (4 <= s <= 7 and n >= 1):
        raise ConfigError(
            f"DCGAN cannot produce {image_size}x{image_size} images: the size must be s*2^n with 4<=s<=7 "
            "and n>=1 (e.g. 28, 32, 48, 64, 128); change data.init_args.image_size"
        )
    return s, n


def _check_image_shape(data_shape: tuple[int, ...]) -> tuple[int, int]:
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise ConfigError(
            f"DCGAN networks need square images (C, H, H), but the data has shape {tuple(data_shape)}; "
            "use gan_lightning.nets.MLPGenerator / MLPDiscriminator for 2D data"
        )
    return data_shape[0], data_shape[1]


class DCGANGenerator(nn.Module):
    """z (latent_dim) -> linear -> (width·2^(n-1), s, s) -> n x [ConvT 4/2 + BN + ReLU] -> tanh image.

    Args:
        data_shape: (C, H, W) of the images; linked from the data module, never typed in a config.
        latent_dim: size of the N(0, I) noise vector.
        width: channels of the last hidden layer; earlier layers double it.
    """

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        channels, size = _check_image_shape(data_shape)
        s, n = dcgan_start_size(size)
        self.latent_dim = latent_dim
        self.data_shape = tuple(data_shape)
        c = width * 2 ** (n - 1)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, c * s * s, bias=False),
            nn.Unflatten(1, (c, s, s)),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        for _ in range(n - 1):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        blocks += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]  # no BN on the output layer
        self.body = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.project(z))


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "layer":  # WGAN-GP: batch statistics would couple the samples the penalty treats separately
        return nn.GroupNorm(1, c)
    if kind == "instance":
        return nn.GroupNorm(c, c)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {kind!r}; use 'batch', 'layer', 'instance' or 'none'")


class DCGANDiscriminator(nn.Module):
    """image -> n x [Conv 4/2 (+ norm) + LeakyReLU(0.2)] -> linear -> one raw score per image.

    Args:
        data_shape: (C, H, W) of the images; linked from the data module.
        width: channels of the first layer; later layers double it.
        norm: "batch" (DCGAN), "layer" or "instance" (for gradient penalties), or "none".
        spectral_norm: wrap every conv/linear weight with spectral normalization (Miyato et al. 2018).
    """

    def __init__(
        self, data_shape: tuple[int, ...], width: int = 64, norm: str = "batch", spectral_norm: bool = False
    ) -> None:
        super().__init__()
        channels, size = _check_image_shape(data_shape)
        s, n = dcgan_start_size(size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]  # no norm on input
        c = width
        for _ in range(n - 1):
            layers += [
                nn.Conv2d(c, c * 2, 4, 2, 1, bias=norm == "none"),
                _norm(norm, c * 2),
                nn.LeakyReLU(0.2),
            ]
            c *= 2
        layers += [nn.Flatten(), nn.Linear(c * s * s, 1)]
        self.body = nn.Sequential(*layers)
        init_dcgan_weights(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).squeeze(1)


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN init: conv/linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def apply_spectral_norm(module: nn.Module) -> None:
    """torch's own parametrization (power iteration, one step per forward in training mode)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            _spectral_norm(m)
