"""Discriminator regularizers: what each penalizes, its weight, and its period.

A regularizer contributes ``weight * every * penalty`` to the D loss on the D steps where
``d_step % every == 0`` (lazy regularization, Karras et al. 2020: applying a penalty every N steps with
its gain scaled by N keeps the expected gradient the same), and may act on D after the optimizer step
(``after_d_step``, used by weight clipping).

The gradient penalties differentiate D w.r.t. its *inputs* with ``torch.autograd.grad(create_graph=True)``
(:func:`input_gradients`), so the penalty is an ordinary differentiable term added to the D loss before
the single backward of the D step. Under ``16-mixed`` that gradient is taken of the loss-scaled output
and unscaled before the penalty is formed (PyTorch's AMP gradient-penalty recipe, see
:mod:`gan_lightning.precision`), so every penalty sees the true input gradient. For a linear critic
D(x) = w.x + b the input gradient is w everywhere, which gives the closed forms quoted below (and checked
by the tests).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigError
from gan_lightning.precision import GradScaler, unscaled_grad


class Regularizer:
    """Base class. ``penalty`` runs its own D forward, so it can differentiate w.r.t. D's inputs.

    Args:
        weight: gain of the penalty in the D loss.
        every: apply the penalty on every ``every``-th D step only, scaled by ``every`` (lazy
            regularization); 1 applies it on every step.
    """

    def __init__(self, weight: float = 1.0, every: int = 1) -> None:
        if every < 1:
            raise ConfigError(f"{type(self).__name__}.every must be >= 1, got {every}")
        self.weight = weight
        self.every = every

    def is_due(self, d_step: int) -> bool:
        return d_step % self.every == 0

    def scaled_penalty(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
        scaler: GradScaler | None = None,
    ) -> Tensor:
        """The term added to the D loss on a due step: weight * every * penalty. ``generator``: the RNG of
        a random penalty's draws (the GANModule passes its checkpointed one, so they resume exactly; else
        the global RNG); ``scaler``: the AMP GradScaler under 16-mixed, so input gradients are taken at
        the loss scale. Arguments, not attributes: the penalty object stays the config that built it."""
        return self.weight * self.every * self.penalty(discriminator, real, fake, generator, scaler)

    def penalty(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
        scaler: GradScaler | None = None,
    ) -> Tensor:
        return real.new_zeros(())

    @torch.no_grad()
    def after_d_step(self, discriminator: nn.Module) -> None:
        """Called after every D optimizer step."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def input_gradients(
    discriminator: nn.Module, x: Tensor, scaler: GradScaler | None = None
) -> tuple[Tensor, Tensor]:
    """D(x) and dD(x)/dx, with the graph kept so the penalty can be backpropagated to D's weights.

    Taken w.r.t. the *inputs* with ``autograd.grad(create_graph=True)``, then added to the D loss before
    a single backward: the pattern that stays correct under DDP (PyTorch #47562, #63812). With an AMP
    ``scaler`` the gradient is taken of the scaled output, then unscaled
    (:func:`~gan_lightning.precision.unscaled_grad`). The gradient is returned flattened to (batch, features).
    """
    x = x.detach().requires_grad_(True)
    out = discriminator(x)
    return out, unscaled_grad(out.sum(), x, scaler, create_graph=True).flatten(1)


def _per_sample_uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """U[0, 1) with one draw per sample, shaped (batch, 1, 1, ...) to broadcast over x."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)


class R1(Regularizer):
    """R1 (Mescheder et al. 2018, "Which training methods for GANs do actually converge?").

    penalty = 0.5 * E_x ||grad_x D(x)||^2 on real data; ``weight`` is the paper's gamma (gamma/2
    convention). Linear critic: 0.5 ||w||^2.

    Args:
        weight: gamma.
        every: lazy-regularization period (StyleGAN2 uses 16 for R1).
    """

    def __init__(self, weight: float = 1.0, every: int = 1) -> None:
        super().__init__(weight=weight, every=every)

    def penalty(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
        scaler: GradScaler | None = None,
    ) -> Tensor:
        _, grad = input_gradients(discriminator, real, scaler)
        return 0.5 * grad.pow(2).sum(1).mean()


class R2(Regularizer):
    """R2 (Mescheder et al. 2018): 0.5 * E ||grad_x D(x)||^2 on *generated* samples.

    Same gamma/2 convention as :class:`R1`. Linear critic: 0.5 ||w||^2.

    Args:
        weight: gamma.
        every: lazy-regularization period.
    """

    def __init__(self, weight: float = 1.0, every: int = 1) -> None:
        super().__init__(weight=weight, every=every)

    def penalty(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
        scaler: GradScaler | None = None,
    ) -> Tensor:
        _, grad = input_gradients(discriminator, fake, scaler)
        return 0.5 * grad.pow(2).sum(1).mean()


class GradientPenalty(Regularizer):
    """Gradient-norm penalty on random interpolates between real and fake samples.

    penalty = E[(||grad_x D(x_hat)||_2 - target)^2],   x_hat = eps * x + (1 - eps) * G(z),
    eps ~ U[0, 1) drawn once per sample (shared by all of a sample's features), from ``generator`` (in
    training the GANModule's checkpointed RNG), else from the global torch RNG.

    target = 1 is WGAN-GP's two-sided penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein
    GANs"; weight 10 there); target = 0 is the zero-centered 0-GP (Thanh-Tung et al. 2019, "Improving
    Generalization and Stability of GANs"). Linear critic: (||w|| - target)^2.

    Args:
        weight: gain (lambda).
        target: the gradient norm the critic is pulled toward (1: WGAN-GP, 0: 0-GP).
        every: lazy-regularization period.
    """

    def __init__(self, weight: float = 10.0, target: float = 1.0, every: int = 1) -> None:
        super().__init__(weight=weight, every=every)
        if target < 0:
            raise ConfigError(f"GradientPenalty.target is a norm and must be >= 0, got {target}")
        self.target = target

    @staticmethod
    def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """eps * real + (1 - eps) * fake, with one eps ~ U[0, 1) per sample (from ``generator`` if given)."""
        if real.shape != fake.shape:
            raise ValueError(f"real and fake batches differ in shape: {real.shape} vs {fake.shape}")
        real, fake = real.detach(), fake.detach()
        eps = _per_sample_uniform(real, generator)
        return fake + eps * (real - fake)

    def penalty(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
        scaler: GradScaler | None = None,
    ) -> Tensor:
        _, grad = input_gradients(discriminator, self.interpolate(real, fake, generator), scaler)
        return (grad.norm(2, dim=1) - self.target).pow(2).mean()


class DRAGANPenalty(Regularizer):
    """DRAGAN penalty (Kodali et al. 2017, "On Convergence and Stability of GANs").

    penalty = E[(||grad_x D(x_p)||_2 - k)^2] at perturbed real points

        x_p = x + c * std(x) * u,   u ~ U[0, 1) element-wise,

    where std(x) is one scalar: the (biased, ddof=0) standard deviation over every element of the real
    batch. This is the perturbation of the authors' released code, not the paper's Gaussian
    x + N(0, cI); note u >= 0, so the noise is one-sided. No interpolation between x and x_p is done.
    The noise comes from ``generator``, else the global torch RNG. Linear critic: (||w|| - k)^2.

    Args:
        weight: gain (lambda; 10 in the paper).
        k: the gradient norm the critic is pulled toward around real data.
        c: noise scale, in units of the real batch's standard deviation.
        every: lazy-regularization period.
    """

    def __init__(self, weight: float = 10.0, k: float = 1.0, c: float = 0.5, every: int = 1) -> None:
        super().__init__(weight=weight, every=every)
        if k < 0 or c < 0:
            raise ConfigError(f"DRAGANPenalty needs k >= 0 and c >= 0, got k={k}, c={c}")
        self.k = k
        self.c = c

    def perturb(self, real: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x + c * std(x) * U[0, 1) noise (``generator`` if given, else the global RNG)."""
        real = real.detach()
        noise = torch.rand(real.shape, generator=generator, device=real.device, dtype=real.dtype)
        return real + self.c * real.std(correction=0) * noise

    def penalty(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
        scaler: GradScaler | None = None,
    ) -> Tensor:
        _, grad = input_gradients(discriminator, self.perturb(real, generator), scaler)
        return (grad.norm(2, dim=1) - self.k).pow(2).mean()


class DriftPenalty(Regularizer):
    """PGGAN's drift term (Karras et al. 2018, appendix A.1): ``E_x[D(x)^2]`` on real data, with weight
    eps_drift = 0.001, keeps a WGAN critic's scores from drifting away from 0 (its loss only sees their
    differences). Linear critic: mean((w.x + b)^2).

    Args:
        weight: eps_drift.
        every: lazy-regularization period.
    """

    def __init__(self, weight: float = 0.001, every: int = 1) -> None:
        super().__init__(weight=weight, every=every)

    def penalty(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
        scaler: GradScaler | None = None,
    ) -> Tensor:
        out = discriminator(real)
        return out.to(torch.promote_types(out.dtype, torch.float32)).pow(2).mean()  # fp32 under AMP


class WeightClipping(Regularizer):
    """WGAN weight clipping (Arjovsky et al. 2017): every D parameter is clamped to [-clip, clip].

    Adds nothing to the loss; acts in ``after_d_step``. The original WGAN uses clip = 0.01 with RMSProp.

    Args:
        clip: the bound c on |parameter|.
    """

    def __init__(self, clip: float = 0.01) -> None:
        super().__init__(weight=0.0, every=1)
        if clip <= 0:
            raise ConfigError(f"WeightClipping.clip must be > 0, got {clip}")
        self.clip = clip

    def penalty(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
        scaler: GradScaler | None = None,
    ) -> Tensor:
        return real.new_zeros(())

    @torch.no_grad()
    def after_d_step(self, discriminator: nn.Module) -> None:
        for p in discriminator.parameters():
            p.clamp_(-self.clip, self.clip)
