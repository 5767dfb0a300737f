"""GAN loss families as small objects: math, no control flow.

Convention used everywhere: D outputs a raw score (a logit for the probabilistic families); real data
should score *high*. Every family implements

* ``d_loss(real_out, fake_out)``: minimized by the discriminator;
* ``g_loss(fake_out, real_out)``: minimized by the generator (``real_out`` is only read by the
  relativistic families, which compare fake scores to real ones; they set ``g_loss_uses_real``).

Both return a scalar mean over the batch. Below, ``r = D(x)`` and ``f = D(G(z))`` are the raw scores,
``E`` is the batch mean, ``sigma`` the logistic sigmoid and ``softplus(u) = log(1 + exp(u))``.

Where a paper's formula carries a global factor of 1/2 on the D loss (some relativistic write-ups do) we
leave it out, so every two-sided D loss here is "real term + fake term", like :class:`NonSaturating`.
A constant factor only rescales the gradient, i.e. the learning rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_lightning.errors import ConfigError


class GANLoss:
    """Base class. Subclasses implement the two halves of the objective."""

    #: whether ``g_loss`` reads ``real_out`` (the relativistic families); saves a D pass otherwise
    g_loss_uses_real: bool = False

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _require_real(loss: GANLoss, real_out: Tensor | None) -> Tensor:
    if real_out is None:
        raise ValueError(f"{type(loss).__name__}.g_loss compares fake scores to real ones: pass real_out")
    return real_out


# --- the probabilistic (binary cross-entropy) family --------------------------------------------------


class NonSaturating(GANLoss):
    """Goodfellow et al. 2014, with the non-saturating generator loss (the usual "vanilla" GAN).

    D: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))  = softplus(-D(x)) + softplus(D(G(z)))
    G: -log sigmoid(D(G(z)))                            = softplus(-D(G(z)))
    """

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return F.softplus(-fake_out).mean()


class Minimax(GANLoss):
    """The original saturating minimax objective (Goodfellow et al. 2014, "Generative Adversarial Nets").

    D: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))  = softplus(-D(x)) + softplus(D(G(z)))
    G:  log(1 - sigmoid(D(G(z))))                       = -softplus(D(G(z)))

    G minimizes exactly what D maximizes on fakes. Its gradient w.r.t. the fake score is
    -sigmoid(D(G(z))), which vanishes when D confidently rejects the fakes (early in training): the
    reason :class:`NonSaturating` exists. Kept for comparison.
    """

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        # log(1 - sigmoid(u)) = -softplus(u), computed stably
        return -F.softplus(fake_out).mean()


# --- margin and distance families ---------------------------------------------------------------------


class Hinge(GANLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018, SN-GAN).

    D: max(0, 1 - D(x)) + max(0, 1 + D(G(z)))
    G: -D(G(z))
    """

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return torch.relu(1.0 - real_out).mean() + torch.relu(1.0 + fake_out).mean()

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return -fake_out.mean()


class Wasserstein(GANLoss):
    """Wasserstein GAN critic loss (Arjovsky et al. 2017, "Wasserstein GAN").

    D (the critic): E[D(G(z))] - E[D(x)]   (minimizing it maximizes the Kantorovich-Rubinstein estimate
                                            E[D(x)] - E[D(G(z))] of W1 over 1-Lipschitz critics)
    G:             -E[D(G(z))]

    The objective is unbounded unless D is kept (approximately) 1-Lipschitz: pair it with
    :class:`~gan_lightning.regularizers.WeightClipping` and RMSProp (the original WGAN), or with
    ``GradientPenalty(weight=10, target=1)`` and Adam (WGAN-GP, Gulrajani et al. 2017).
    """

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return fake_out.mean() - real_out.mean()

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return -fake_out.mean()


class LeastSquares(GANLoss):
    """Least-squares GAN (Mao et al. 2017, "Least Squares Generative Adversarial Networks").

    D: 0.5 E[(D(x) - b)^2] + 0.5 E[(D(G(z)) - a)^2]
    G: 0.5 E[(D(G(z)) - c)^2]

    D regresses real scores to ``b`` and fake scores to ``a``; G pushes fake scores to ``c``. The
    defaults (a, b, c) = (0, 1, 1) are the widely used "0-1 coding"; (a, b, c) = (-1, 1, 0) satisfies the
    paper's b - c = 1, b - a = 2, under which G minimizes the Pearson chi^2 divergence.

    Args:
        a: target score for fake samples in the D loss.
        b: target score for real samples in the D loss.
        c: the score G wants D to give its samples.
    """

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0) -> None:
        if a == b:
            raise ConfigError(f"LeastSquares needs distinct real and fake targets, got a = b = {a}")
        self.a = a
        self.b = b
        self.c = c

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return 0.5 * (real_out - self.b).pow(2).mean() + 0.5 * (fake_out - self.a).pow(2).mean()

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return 0.5 * (fake_out - self.c).pow(2).mean()


# --- relativistic families (Jolicoeur-Martineau 2018, "The relativistic discriminator") ---------------
#
# D estimates how much more realistic real data is than fake data, so the G loss also reads D(x).
# Every relativistic G loss is its D loss with the roles of real and fake swapped. With E the batch mean,
# r = D(x), f = D(G(z)):
#   RSGAN   (paired):  D: E softplus(-(r - f))                            G: E softplus(-(f - r))
#   RaGAN   (average): D: E softplus(-(r - E f)) + E softplus(f - E r)    G: swap r <-> f
#   RaLSGAN (average): D: E (r - E f - 1)^2 + E (f - E r + 1)^2           G: swap r <-> f
#   RaHinge (average): D: E relu(1 - (r - E f)) + E relu(1 + (f - E r))   G: swap r <-> f
# No factor 1/2 on RaLSGAN / RaHinge (the author's code halves them; it only rescales the step size).
# The batch means E f, E r are *not* detached: gradients flow through them, as in the paper.


class RSGAN(GANLoss):
    """Relativistic standard GAN (Jolicoeur-Martineau 2018), paired version.

    D: E softplus(-(D(x) - D(G(z))))   = -E log sigmoid(D(x) - D(G(z)))
    G: E softplus(-(D(G(z)) - D(x)))   = -E log sigmoid(D(G(z)) - D(x))

    Real and fake scores are paired element-wise, so both batches must have the same shape.
    """

    g_loss_uses_real = True

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return F.softplus(-(real_out - fake_out)).mean()

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        real_out = _require_real(self, real_out)
        return F.softplus(-(fake_out - real_out)).mean()


class RaGAN(GANLoss):
    """Relativistic average standard GAN, RaSGAN (Jolicoeur-Martineau 2018).

    D: E softplus(-(D(x) - E D(G(z)))) + E softplus(D(G(z)) - E D(x))
    G: E softplus(-(D(G(z)) - E D(x))) + E softplus(D(x) - E D(G(z)))

    i.e. binary cross-entropy on the relativistic logits D(x) - E D(fake) (label 1) and
    D(fake) - E D(x) (label 0); G uses the opposite labels.
    """

    g_loss_uses_real = True

    @staticmethod
    def _loss(hi: Tensor, lo: Tensor) -> Tensor:
        # -log sigmoid(hi - E lo) - log(1 - sigmoid(lo - E hi))
        return F.softplus(-(hi - lo.mean())).mean() + F.softplus(lo - hi.mean()).mean()

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return self._loss(real_out, fake_out)

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return self._loss(fake_out, _require_real(self, real_out))


class RaLSGAN(GANLoss):
    """Relativistic average least-squares GAN (Jolicoeur-Martineau 2018).

    D: E[(D(x) - E D(G(z)) - 1)^2] + E[(D(G(z)) - E D(x) + 1)^2]
    G: E[(D(G(z)) - E D(x) - 1)^2] + E[(D(x) - E D(G(z)) + 1)^2]

    Without the global factor 1/2 that the author's reference code applies.
    """

    g_loss_uses_real = True

    @staticmethod
    def _loss(hi: Tensor, lo: Tensor) -> Tensor:
        return (hi - lo.mean() - 1.0).pow(2).mean() + (lo - hi.mean() + 1.0).pow(2).mean()

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return self._loss(real_out, fake_out)

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return self._loss(fake_out, _require_real(self, real_out))


class RaHinge(GANLoss):
    """Relativistic average hinge GAN (Jolicoeur-Martineau 2018).

    D: E max(0, 1 - (D(x) - E D(G(z)))) + E max(0, 1 + (D(G(z)) - E D(x)))
    G: E max(0, 1 - (D(G(z)) - E D(x))) + E max(0, 1 + (D(x) - E D(G(z))))

    Without the global factor 1/2 that the author's reference code applies.
    """

    g_loss_uses_real = True

    @staticmethod
    def _loss(hi: Tensor, lo: Tensor) -> Tensor:
        return torch.relu(1.0 - (hi - lo.mean())).mean() + torch.relu(1.0 + (lo - hi.mean())).mean()

    def d_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return self._loss(real_out, fake_out)

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return self._loss(fake_out, _require_real(self, real_out))
