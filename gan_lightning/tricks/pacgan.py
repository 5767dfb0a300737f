"""PacGAN packing (Lin et al. 2018, "PacGAN: The power of two samples in generative adversarial networks").

D judges m samples at once, all real or all fake, concatenated along channels (images) or features
(points). A packed D sees the joint distribution of m samples, in which a collapsed G is far easier to
tell apart from the data; G itself is unchanged.
"""

from __future__ import annotations

from torch import Tensor

from gan_lightning.errors import ConfigError


def pack(x: Tensor, m: int) -> Tensor:
    """Group consecutive samples [0..m-1], [m..2m-1], ... into one D input each.

    (N, C, H, W) -> (N/m, m*C, H, W) along channels; (N, D) -> (N/m, m*D) along features. Sample j of a
    group fills channels (features) j*C .. (j+1)*C - 1. m = 1 returns x unchanged.
    """
    if m < 1:
        raise ConfigError(f"PacGAN packing degree must be >= 1, got {m}")
    n = x.shape[0]
    if n % m:
        raise ConfigError(
            f"batch of {n} samples cannot be packed in groups of {m}; "
            f"make data.init_args.batch_size a multiple of {m}"
        )
    if m == 1:
        return x
    return x.reshape(n // m, m * x.shape[1], *x.shape[2:])


def packed_shape(data_shape: tuple[int, ...], m: int) -> tuple[int, ...]:
    """The per-sample shape D sees: (C, H, W) -> (m*C, H, W); (D,) -> (m*D,)."""
    if m < 1:
        raise ConfigError(f"PacGAN packing degree must be >= 1, got {m}")
    return (m * data_shape[0], *data_shape[1:])
