"""GAN loss families as small objects: math, no control flow.

Convention used everywhere: D outputs a raw score (a logit for the probabilistic families); real data
should score *high*. Every family implements

* ``d_loss(real_out, fake_out, generator=None)``: minimized by the discriminator (``generator``: the RNG
  of random label targets, see :class:`LabelTargets`);
* ``g_loss(fake_out, real_out)``: minimized by the generator (``real_out`` is only read by the
  relativistic families, which compare fake scores to real ones; they set ``g_loss_uses_real``).

Both return a scalar mean over the batch. Below, ``r = D(x)`` and ``f = D(G(z))`` are the raw scores,
``E`` is the batch mean, ``sigma`` the logistic sigmoid and ``softplus(u) = log(1 + exp(u))``.

The D losses of the families with targets (:class:`NonSaturating`, :class:`Minimax`, :class:`LeastSquares`)
take the ganhacks label tricks through :class:`LabelTargets`: one-sided smoothing of the real target (fixed or
drawn per sample) and label flipping. The G losses never see them. The families without targets (hinge,
Wasserstein, relativistic) do not accept those arguments, so a config that sets them is refused.

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
    #: the raw score above which D calls a sample real (read by the health monitor for D's accuracy):
    #: 0 for logits (sigma(0) = 1/2) and hinge margins; ``None`` where D has no fixed threshold and only
    #: compares scores (a Wasserstein critic, the relativistic families)
    decision_threshold: float | None = 0.0

    def d_loss(self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
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


class LabelTargets:
    """Per-sample targets for the D loss: one-sided label smoothing and label flipping (ganhacks).

    One-sided smoothing (Salimans et al. 2016, "Improved Techniques for Training GANs", section 3.4): the
    real target is a constant below 1 (e.g. 0.9), or ``t ~ U[lo, hi)`` drawn per sample when
    ``real_target_range = (lo, hi)`` (e.g. (0.7, 1.2)); the fake target is never smoothed. Flipping: each
    real sample takes the fake target with probability ``flip_prob``, and each fake sample the real target
    (drawn the same way), independently.

    A subclass provides the constant targets ``real_target`` and ``fake_target``. Random draws come from
    the ``generator`` passed to ``d_loss`` (the GANModule's checkpointed RNG; else the global torch RNG), one
    U[0, 1) per sample, in this order: real targets of the reals (with a range), flip draws of the reals,
    flip draws of the fakes, real targets of the fakes (with a range and flipping).
    """

    real_target: float
    fake_target: float

    def __init__(self, real_target_range: tuple[float, float] | None = None, flip_prob: float = 0.0) -> None:
        if real_target_range is not None:
            lo, hi = real_target_range
            if not lo < hi:
                raise ConfigError(f"real_target_range must be (lo, hi) with lo < hi, got {real_target_range}")
            real_target_range = (float(lo), float(hi))
        if not 0.0 <= flip_prob <= 1.0:
            raise ConfigError(f"flip_prob is a probability and must be in [0, 1], got {flip_prob}")
        self.real_target_range = real_target_range
        self.flip_prob = flip_prob

    @property
    def random_targets(self) -> bool:
        """Whether the targets are drawn (a range or flipping), rather than the two constants."""
        return self.real_target_range is not None or self.flip_prob > 0.0

    @staticmethod
    def _uniform(scores: Tensor, generator: torch.Generator | None) -> Tensor:
        """One U[0, 1) per sample, shaped (batch, 1, ...) to broadcast over the scores."""
        u = torch.rand(scores.shape[0], generator=generator, device=scores.device, dtype=scores.dtype)
        return u.view((-1,) + (1,) * (scores.dim() - 1))

    def _real_targets(self, scores: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.real_target_range is None:
            return torch.full_like(scores, self.real_target)
        lo, hi = self.real_target_range
        return (lo + (hi - lo) * self._uniform(scores, generator)).expand_as(scores)

    def targets(
        self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """The D-loss targets (t_real, t_fake), shaped like the scores; random ones from ``generator``."""
        t_real = self._real_targets(real_out, generator)
        t_fake = torch.full_like(fake_out, self.fake_target)
        if self.flip_prob > 0.0:
            flip_real = self._uniform(real_out, generator) < self.flip_prob
            flip_fake = self._uniform(fake_out, generator) < self.flip_prob
            t_real = torch.where(flip_real, torch.full_like(real_out, self.fake_target), t_real)
            t_fake = torch.where(flip_fake, self._real_targets(fake_out, generator), t_fake)
        return t_real, t_fake


# --- the probabilistic (binary cross-entropy) family --------------------------------------------------


class _BinaryCrossEntropy(GANLoss, LabelTargets):
    """The D loss shared by the BCE families, with the label tricks of :class:`LabelTargets`.

    D: E[BCE(D(x), t_real)] + E[BCE(D(G(z)), t_fake)], with BCE-with-logits against a target t:
       BCE(u, t) = -[t log sigmoid(u) + (1 - t) log(1 - sigmoid(u))] = t softplus(-u) + (1 - t) softplus(u)
    With the default targets (1, 0) this is softplus(-D(x)) + softplus(D(G(z))).

    Args:
        real_target: fixed real target; 0.9 is one-sided label smoothing (Salimans et al. 2016).
        real_target_range: (lo, hi): one real target per sample from U[lo, hi), e.g. (0.7, 1.2).
        flip_prob: probability that a sample's real/fake target is swapped in the D loss.
    """

    fake_target = 0.0

    def __init__(
        self,
        real_target: float = 1.0,
        real_target_range: tuple[float, float] | None = None,
        flip_prob: float = 0.0,
    ) -> None:
        if real_target_range is not None and real_target != 1.0:
            raise ConfigError(f"{type(self).__name__}: set real_target or real_target_range, not both")
        super().__init__(real_target_range, flip_prob)
        self.real_target = real_target

    @staticmethod
    def _bce(scores: Tensor, target: Tensor) -> Tensor:
        # -[t log sigmoid(u) + (1 - t) log(1 - sigmoid(u))], with log(1 - sigmoid(u)) = -softplus(u)
        return (target * F.softplus(-scores) + (1.0 - target) * F.softplus(scores)).mean()

    def d_loss(self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not self.random_targets and self.real_target == 1.0:  # today's exact formula
            return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()
        t_real, t_fake = self.targets(real_out, fake_out, generator)
        return self._bce(real_out, t_real) + self._bce(fake_out, t_fake)


class NonSaturating(_BinaryCrossEntropy):
    """Goodfellow et al. 2014, with the non-saturating generator loss (the usual "vanilla" GAN).

    D: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))  = softplus(-D(x)) + softplus(D(G(z)))
    G: -log sigmoid(D(G(z)))                            = softplus(-D(G(z)))

    The D loss takes label smoothing and flipping (see :class:`_BinaryCrossEntropy`); G's does not.
    """

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return F.softplus(-fake_out).mean()


class Minimax(_BinaryCrossEntropy):
    """The original saturating minimax objective (Goodfellow et al. 2014, "Generative Adversarial Nets").

    D: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))  = softplus(-D(x)) + softplus(D(G(z)))
    G:  log(1 - sigmoid(D(G(z))))                       = -softplus(D(G(z)))

    G minimizes exactly what D maximizes on fakes. Its gradient w.r.t. the fake score is
    -sigmoid(D(G(z))), which vanishes when D confidently rejects the fakes (early in training): the
    reason :class:`NonSaturating` exists. Kept for comparison. The D loss takes label smoothing and
    flipping (see :class:`_BinaryCrossEntropy`); G's does not.
    """

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        # log(1 - sigmoid(u)) = -softplus(u), computed stably
        return -F.softplus(fake_out).mean()


# --- margin and distance families ---------------------------------------------------------------------


class Hinge(GANLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018, SN-GAN).

    D: max(0, 1 - D(x)) + max(0, 1 + D(G(z)))
    G: -D(G(z))
    """

    def d_loss(self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
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

    decision_threshold = None  # a critic's scores only mean something relative to each other

    def d_loss(self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return fake_out.mean() - real_out.mean()

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return -fake_out.mean()


class LeastSquares(GANLoss, LabelTargets):
    """Least-squares GAN (Mao et al. 2017, "Least Squares Generative Adversarial Networks").

    D: 0.5 E[(D(x) - b)^2] + 0.5 E[(D(G(z)) - a)^2]
    G: 0.5 E[(D(G(z)) - c)^2]

    D regresses real scores to ``b`` and fake scores to ``a``; G pushes fake scores to ``c``. The
    defaults (a, b, c) = (0, 1, 1) are the widely used "0-1 coding"; (a, b, c) = (-1, 1, 0) satisfies the
    paper's b - c = 1, b - a = 2, under which G minimizes the Pearson chi^2 divergence.

    Label tricks (:class:`LabelTargets`) act on D's targets only: one-sided smoothing is ``b`` itself
    (e.g. b = 0.9); ``real_target_range`` draws a per-sample real target in place of ``b``;
    ``flip_prob`` swaps a sample's target between ``a`` and ``b``.

    Args:
        a: target score for fake samples in the D loss.
        b: target score for real samples in the D loss.
        c: the score G wants D to give its samples.
        real_target_range: (lo, hi): one real target per sample from U[lo, hi), in place of ``b``.
        flip_prob: probability that a sample's real/fake target is swapped in the D loss.
    """

    def __init__(
        self,
        a: float = 0.0,
        b: float = 1.0,
        c: float = 1.0,
        real_target_range: tuple[float, float] | None = None,
        flip_prob: float = 0.0,
    ) -> None:
        if a == b:
            raise ConfigError(f"LeastSquares needs distinct real and fake targets, got a = b = {a}")
        if real_target_range is not None and b != 1.0:
            raise ConfigError("LeastSquares: set b or real_target_range, not both")
        super().__init__(real_target_range, flip_prob)
        self.a = a
        self.b = b
        self.c = c

    @property
    def real_target(self) -> float:  # LabelTargets' constant real target is the paper's b
        return self.b

    @property
    def fake_target(self) -> float:  # and its fake target is a
        return self.a

    @property
    def decision_threshold(self) -> float:  # the midpoint of the two targets
        return 0.5 * (self.a + self.b)

    def d_loss(self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not self.random_targets:
            return 0.5 * (real_out - self.b).pow(2).mean() + 0.5 * (fake_out - self.a).pow(2).mean()
        t_real, t_fake = self.targets(real_out, fake_out, generator)
        return 0.5 * (real_out - t_real).pow(2).mean() + 0.5 * (fake_out - t_fake).pow(2).mean()

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
    decision_threshold = None  # relative: D judges D(x) against D(G(z))

    def d_loss(self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
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
    decision_threshold = None  # relative: D judges D(x) against D(G(z))

    @staticmethod
    def _loss(hi: Tensor, lo: Tensor) -> Tensor:
        # -log sigmoid(hi - E lo) - log(1 - sigmoid(lo - E hi))
        return F.softplus(-(hi - lo.mean())).mean() + F.softplus(lo - hi.mean()).mean()

    def d_loss(self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
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
    decision_threshold = None  # relative: D judges D(x) against D(G(z))

    @staticmethod
    def _loss(hi: Tensor, lo: Tensor) -> Tensor:
        return (hi - lo.mean() - 1.0).pow(2).mean() + (lo - hi.mean() + 1.0).pow(2).mean()

    def d_loss(self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
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
    decision_threshold = None  # relative: D judges D(x) against D(G(z))

    @staticmethod
    def _loss(hi: Tensor, lo: Tensor) -> Tensor:
        return torch.relu(1.0 - (hi - lo.mean())).mean() + torch.relu(1.0 + (lo - hi.mean())).mean()

    def d_loss(self, real_out: Tensor, fake_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self._loss(real_out, fake_out)

    def g_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        return self._loss(fake_out, _require_real(self, real_out))
