"""Latent priors, the truncation trick, and paths through latent space (slerp, a circular walk).

A prior is picked by config (``model.latent``); :class:`Normal` is the default and draws exactly what
``torch.randn(n, dim, generator=g)`` draws. :meth:`~gan_lightning.module.GANModule.draw_latents` is
the one way latents are drawn: the training noise, the fixed sample-grid noise, ``sample`` and the
evaluation latents all go through it. Truncation is a sampling-time knob: training draws never truncate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gan_lightning.errors import ConfigError


class LatentPrior:
    """p(z) for G's input, with the truncation trick applied at sampling and evaluation time only.

    Args:
        truncation: resample-style truncation: every coordinate lies in [-truncation, truncation]
            (BigGAN, Brock et al. 2019). The draw is the truncated distribution itself, which is what
            resampling the coordinates beyond the threshold until they fall inside gives (BigGAN's own
            code draws it with scipy's ``truncnorm`` the same way). ``None``: off.
        psi: truncation toward the mean, ``z -> mean + psi * (z - mean)`` with the mean 0 here (the
            ``psi`` of StyleGAN, applied to z; Glow's sampling temperature). 1: off.
    """

    def __init__(self, truncation: float | None = None, psi: float = 1.0) -> None:
        name = type(self).__name__
        if truncation is not None and not truncation > 0:
            raise ConfigError(f"{name}.truncation must be > 0 (or null for none), got {truncation}")
        if not 0.0 < psi <= 1.0:
            raise ConfigError(f"{name}.psi must be in (0, 1] (1: no truncation toward the mean), got {psi}")
        self.truncation = truncation
        self.psi = psi

    def draw(
        self, n: int, dim: int, generator: torch.Generator | None, device: torch.device | None
    ) -> Tensor:
        """n untruncated latents of size dim."""
        raise NotImplementedError

    def draw_truncated(
        self, n: int, dim: int, generator: torch.Generator | None, device: torch.device | None
    ) -> Tensor:
        """n latents from the prior truncated to [-truncation, truncation] per coordinate."""
        raise NotImplementedError

    def sample(
        self, n: int, dim: int, generator: torch.Generator | None = None, truncate: bool = False
    ) -> Tensor:
        """n latents of size dim on ``generator``'s device (CPU without one); ``truncate``: apply the
        truncation settings (sampling and evaluation; never training)."""
        device = generator.device if generator is not None else None
        if not truncate or (self.truncation is None and self.psi == 1.0):
            return self.draw(n, dim, generator, device)
        z = (
            self.draw(n, dim, generator, device)
            if self.truncation is None
            else self.draw_truncated(n, dim, generator, device)
        )
        return z * self.psi if self.psi != 1.0 else z

    def __repr__(self) -> str:
        return f"{type(self).__name__}(truncation={self.truncation}, psi={self.psi})"


class Normal(LatentPrior):
    """z ~ N(0, I), the default (DCGAN and most GANs). Truncated: N(0, I) conditioned on every
    coordinate lying in [-truncation, truncation]."""

    def draw(
        self, n: int, dim: int, generator: torch.Generator | None, device: torch.device | None
    ) -> Tensor:
        return torch.randn(n, dim, generator=generator, device=device)

    def draw_truncated(
        self, n: int, dim: int, generator: torch.Generator | None, device: torch.device | None
    ) -> Tensor:
        t = self.truncation
        z = torch.empty(n, dim, device=device)
        return torch.nn.init.trunc_normal_(z, 0.0, 1.0, -t, t, generator=generator)


class Uniform(LatentPrior):
    """z ~ U(-1, 1)^dim (the original GAN's and DCGAN's reference code's prior). Truncated: U(-t, t),
    the distribution resampling the coordinates beyond t gives; ``truncation`` must then be below 1."""

    def __init__(self, truncation: float | None = None, psi: float = 1.0) -> None:
        super().__init__(truncation, psi)
        if truncation is not None and truncation >= 1.0:
            raise ConfigError(f"Uniform.truncation must be in (0, 1): U(-1, 1) never exceeds {truncation}")

    def draw(
        self, n: int, dim: int, generator: torch.Generator | None, device: torch.device | None
    ) -> Tensor:
        return torch.rand(n, dim, generator=generator, device=device) * 2.0 - 1.0

    def draw_truncated(
        self, n: int, dim: int, generator: torch.Generator | None, device: torch.device | None
    ) -> Tensor:
        return self.draw(n, dim, generator, device) * self.truncation


class Sphere(LatentPrior):
    """z uniform on the sphere of radius sqrt(dim): a N(0, I) draw divided by its norm, times sqrt(dim).

    Radius sqrt(dim) because E|z|^2 = dim under N(0, I): the latents keep the scale G's first layer and
    its init were made for, and a high-dimensional N(0, I) already lies close to that shell (White 2016,
    "Sampling Generative Networks"; ganhacks' "sample from a spherical Z"). Slerp between two such
    latents stays on the sphere.

    Truncation acts on the Gaussian draw before it is projected: a truncated N(0, I) direction, so the
    result is still exactly on the sphere (resampling a coordinate after projection would leave it).
    ``psi`` is refused: shrinking toward the mean (0) moves z off the sphere G was trained on.
    """

    def __init__(self, truncation: float | None = None, psi: float = 1.0) -> None:
        super().__init__(truncation, psi)
        if psi != 1.0:
            raise ConfigError(
                "Sphere.psi must be 1: scaling toward the mean (0) leaves the sphere; use truncation instead"
            )

    @staticmethod
    def project(z: Tensor) -> Tensor:
        return z * (math.sqrt(z.shape[-1]) / z.norm(dim=-1, keepdim=True))

    def draw(
        self, n: int, dim: int, generator: torch.Generator | None, device: torch.device | None
    ) -> Tensor:
        return self.project(Normal().draw(n, dim, generator, device))

    def draw_truncated(
        self, n: int, dim: int, generator: torch.Generator | None, device: torch.device | None
    ) -> Tensor:
        return self.project(Normal(self.truncation).draw_truncated(n, dim, generator, device))


# --- paths through latent space -------------------------------------------------------------------------
def slerp(z0: Tensor, z1: Tensor, t: float | Tensor, eps: float = 1e-6) -> Tensor:
    """Spherical linear interpolation (Shoemake 1985; White 2016 for GAN latents) along the last dim:
    ``sin((1-t) W) / sin W * z0 + sin(t W) / sin W * z1``, W the angle between z0 and z1. The norm moves
    smoothly from |z0| to |z1| (constant when they are equal), where lerp cuts through the low-density
    centre of a Gaussian. Nearly parallel (or opposite) vectors, where sin W ~ 0, fall back to lerp.
    Broadcasts: e.g. z0, z1 (B, 1, D) and t (1, T, 1) give (B, T, D)."""
    # hand-written: torch has no slerp for vectors (scipy's Slerp interpolates rotations)
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=-1).unsqueeze(-1).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < eps
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    out = torch.sin((1.0 - t) * omega) / safe * z0 + torch.sin(t * omega) / safe * z1
    return torch.where(parallel, torch.lerp(z0, z1, t), out)


def interpolation(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """(B, D) start and end latents -> (B, steps, D): slerp at t = 0, 1/(steps-1), ..., 1."""
    t = torch.linspace(0.0, 1.0, steps, dtype=z0.dtype, device=z0.device).view(1, steps, 1)
    return slerp(z0.unsqueeze(1), z1.unsqueeze(1), t)


def circular_walk(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """(B, D) -> (B, steps, D): a closed walk around the great circle through z0 in the plane of z0 and
    z1, at radius |z0|: ``z0 cos a + v sin a`` for a = 0, 2pi/steps, ..., with v the part of z1
    orthogonal to z0 rescaled to |z0|. It passes z1's direction and returns to z0, so it loops as a GIF;
    with N(0, I) latents the circle stays on the typical shell."""
    r = z0.norm(dim=-1, keepdim=True)
    v = z1 - (z1 * z0).sum(-1, keepdim=True) / r.square() * z0  # Gram-Schmidt against z0
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(z0.dtype).tiny) * r
    a = torch.arange(steps, dtype=z0.dtype, device=z0.device).view(1, steps, 1) * (2 * math.pi / steps)
    return z0.unsqueeze(1) * torch.cos(a) + v.unsqueeze(1) * torch.sin(a)
