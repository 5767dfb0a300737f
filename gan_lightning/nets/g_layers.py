"""Generator-side layers: noise inside G, dropout in G (optionally kept on at sampling time), and virtual
batch normalization. :class:`~gan_lightning.nets.DCGANGenerator` and
:class:`~gan_lightning.nets.MLPGenerator` take them as options (``noise``, ``dropout``,
``norm: virtual``).

``LayerNoise`` and ``LayerDropout`` are recipes: G puts a copy after each hidden layer listed in
``layers`` (``None``: every hidden layer). Hidden layer 0 is the first (DCGAN: the projection of z).
In training their random draws use the GANModule's checkpointed RNG (handed to them each step by
:func:`set_generator_step`), so a resumed run draws what the uninterrupted one would have; outside
training (sampling with ``at_sampling``) torch's global RNG, seeded by ``seed_everything``.
"""

from __future__ import annotations

import copy
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import ConfigError
from gan_lightning.nets.layers import check_choice, require_labels
from gan_lightning.nets.norms import make_norm
from gan_lightning.tricks.instance_noise import InstanceNoise

VBN_REFERENCE_SIZE = 64  # latents in virtual batch norm's fixed reference batch
_REFERENCE_SEED = 1  # not 0, the fixed sample-grid noise's seed: the reference must not be the grid


class GLayer(nn.Module):
    """A layer G inserts after chosen hidden layers; ``at_sampling`` keeps it active in eval mode."""

    def __init__(self, layers: list[int] | None, at_sampling: bool) -> None:
        super().__init__()
        self.generator: torch.Generator | None = None  # the module's RNG while training (see above)
        if layers is not None and any(i < 0 for i in layers):
            raise ConfigError(f"{type(self).__name__}.layers are hidden-layer indices >= 0, got {layers}")
        self.layers = None if layers is None else sorted(set(layers))
        self.at_sampling = at_sampling

    @property
    def active(self) -> bool:
        return self.training or self.at_sampling

    def random_at_sampling(self) -> str | None:
        """What makes sampling random (for the one-line warning), or None."""
        return None


class LayerNoise(GLayer):
    """Gaussian noise added to G's hidden activations, ``h + sigma_t * N(0, I)`` (EBGAN, Zhao et al.
    2017: "Gaussian noise to every layer of the generator"; ganhacks), sigma decaying over generator
    steps with :class:`~gan_lightning.tricks.InstanceNoise`'s schedules (t the G step):

        linear:       sigma_t = sigma * max(0, 1 - t / anneal_steps)
        exponential:  sigma_t = sigma * 0.01 ** (t / anneal_steps) for t < anneal_steps, else 0
        constant:     sigma_t = sigma

    The G step is a buffer, set by :func:`set_generator_step` every training step, so the EMA copy of
    G and a checkpoint carry the current sigma.

    Args:
        sigma: noise standard deviation at step 0 (activations after ReLU are O(1) at DCGAN's init).
        anneal_steps: G steps until the noise reaches 0 (unused by ``constant``).
        schedule: how sigma decays.
        layers: hidden layers to add noise after (``None``: all).
        at_sampling: also add it when sampling (eval mode).
    """

    def __init__(
        self,
        sigma: float = 0.1,
        anneal_steps: int = 10000,
        schedule: Literal["linear", "exponential", "constant"] = "linear",
        layers: list[int] | None = None,
        at_sampling: bool = False,
    ) -> None:
        super().__init__(layers, at_sampling)
        if sigma < 0:
            raise ConfigError(f"LayerNoise.sigma is a standard deviation and must be >= 0, got {sigma}")
        if anneal_steps < 1:
            raise ConfigError(f"LayerNoise.anneal_steps must be >= 1, got {anneal_steps}")
        self.sigma = sigma
        self.anneal_steps = anneal_steps
        self.schedule = check_choice(schedule, ("linear", "exponential", "constant"), "LayerNoise.schedule")
        # float, so the EMA's lerp of two equal steps is exact (a long buffer would be rounded down)
        self.register_buffer("step", torch.zeros(()))

    def sigma_at(self, step: int) -> float:
        """sigma_t at generator step ``step``: InstanceNoise's annealing, one schedule for both tricks."""
        return InstanceNoise.sigma_at(self, step)  # reads sigma, anneal_steps and schedule only

    @property
    def current_sigma(self) -> float:
        return self.sigma_at(int(self.step))

    def set_step(self, generator_step: int) -> None:
        self.step.fill_(generator_step)

    def forward(self, x: Tensor) -> Tensor:
        sigma = self.current_sigma if self.active else 0.0
        if sigma <= 0:
            return x
        gen = self.generator if self.training else None
        return x + sigma * torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=gen)

    def random_at_sampling(self) -> str | None:
        return (
            f"noise (sigma {self.current_sigma:g})" if self.at_sampling and self.current_sigma > 0 else None
        )

    def extra_repr(self) -> str:
        schedule = f"sigma={self.sigma}, anneal_steps={self.anneal_steps}, schedule={self.schedule!r}"
        return f"{schedule}, at_sampling={self.at_sampling}"


class LayerDropout(GLayer):
    """Dropout on G's hidden activations (ganhacks: "provide noise in the form of dropout (50%) on
    several layers of G at both training and test time", as pix2pix's G, Isola et al. 2017).

    Args:
        p: probability of zeroing an activation (inverted dropout: survivors scaled by 1/(1-p)).
        layers: hidden layers to drop after (``None``: all).
        at_sampling: keep dropout on when sampling (pix2pix's only source of noise at test time).
    """

    def __init__(self, p: float = 0.5, layers: list[int] | None = None, at_sampling: bool = False) -> None:
        super().__init__(layers, at_sampling)
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"LayerDropout.p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.active or self.p == 0:
            return x
        if not self.training:
            return F.dropout(x, self.p, training=True)
        # F.dropout takes no generator: the same inverted dropout, with the mask from the module's RNG
        keep = torch.rand(x.shape, device=x.device, generator=self.generator) >= self.p
        return x * keep / (1 - self.p)

    def random_at_sampling(self) -> str | None:
        return f"dropout (p {self.p:g})" if self.at_sampling and self.p > 0 else None

    def extra_repr(self) -> str:
        return f"p={self.p}, at_sampling={self.at_sampling}"


def after_hidden_layer(i: int, noise: LayerNoise | None, dropout: LayerDropout | None) -> list[nn.Module]:
    """Copies of the noise / dropout layers that G puts after its hidden layer ``i`` (noise first)."""
    chosen = [m for m in (noise, dropout) if m is not None and (m.layers is None or i in m.layers)]
    return [copy.deepcopy(m) for m in chosen]


def check_layers(num_hidden: int, *tricks: GLayer | None) -> None:
    for m in tricks:
        if m is not None and m.layers and max(m.layers) >= num_hidden:
            raise ConfigError(
                f"{type(m).__name__}.layers {m.layers}: this generator has hidden layers 0..{num_hidden - 1}"
            )


def set_generator_step(
    module: nn.Module, generator_step: int, generator: torch.Generator | None = None
) -> None:
    """``set_step(generator_step)`` on every :class:`LayerNoise` under ``module`` (a GANModule: G and
    its EMA copy alike, so the EMA's sigma is the current one), and hand every G layer the RNG its
    training draws come from (the module's checkpointed one)."""
    for m in module.modules():
        if isinstance(m, LayerNoise):
            m.set_step(generator_step)
        if isinstance(m, GLayer):
            m.generator = generator


def random_at_sampling(generator: nn.Module) -> str | None:
    """One line saying that G samples randomly from a given z (dropout or noise kept on), or None."""
    kinds = sorted(
        {k for m in generator.modules() if isinstance(m, GLayer) and (k := m.random_at_sampling())}
    )
    if not kinds:
        return None
    return (
        f"the generator keeps {' and '.join(kinds)} on at sampling time: the same latent gives a different "
        "sample on every call (at_sampling: false turns it off)"
    )


def warn_if_random_at_sampling(generator: nn.Module) -> str | None:
    message = random_at_sampling(generator)
    if message:
        warnings.warn(message, stacklevel=2)
    return message


# --- virtual batch normalization -----------------------------------------------------------------------
class VirtualBatchNorm(nn.Module):
    """Virtual batch normalization (Salimans et al. 2016, "Improved Techniques for Training GANs").

    The input is ``[reference; batch]``: the first ``reference_size`` rows are G's activations of its
    fixed reference latents. The reference rows are normalized with the reference statistics; each other
    sample x with the statistics of the reference batch plus x itself, per channel:

        mean_x = (M * mean_ref + mean(x)) / (M + 1),   E[x^2]_x = (M * E[ref^2] + mean(x^2)) / (M + 1)
        y = gamma * (x - mean_x) / sqrt(E[x^2]_x - mean_x^2 + eps) + beta

    (means over the reference batch and, for images, the pixels; as openai/improved-gan's VBN). So a
    sample's output depends on the reference and on itself only, never on the rest of its batch, and
    train and eval mode compute the same thing (no running statistics).
    """

    def __init__(
        self, num_features: int, reference_size: int = VBN_REFERENCE_SIZE, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.reference_size, self.eps = reference_size, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        m = self.reference_size
        if len(x) < m:
            raise ConfigError(
                f"VirtualBatchNorm got {len(x)} rows, fewer than its reference batch of {m}: it must be "
                "called inside a generator built with norm 'virtual', which prepends the reference"
            )
        dims = [0, *range(2, x.dim())]  # batch and pixels
        ref = x[:m]
        ref_mean, ref_sq = ref.mean(dims, keepdim=True), ref.square().mean(dims, keepdim=True)
        own = x[m:]
        pixels = list(range(2, x.dim()))
        own_mean = own.mean(pixels, keepdim=True) if pixels else own
        own_sq = own.square().mean(pixels, keepdim=True) if pixels else own.square()
        mean = (m * ref_mean + own_mean) / (m + 1)
        sq = (m * ref_sq + own_sq) / (m + 1)
        ref_out = (ref - ref_mean) * torch.rsqrt(ref_sq - ref_mean.square() + self.eps)
        out = torch.cat([ref_out, (own - mean) * torch.rsqrt(sq - mean.square() + self.eps)])
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return out * self.weight.view(shape) + self.bias.view(shape)


class VBNReference(nn.Module):
    """G's fixed reference latents for virtual batch norm: ``prepend`` puts them (and class-balanced labels
    for a conditional G) in front of a batch, ``strip`` removes their rows from G's output. A buffer: the
    reference is saved in checkpoints and follows G across devices (and into its EMA copy)."""

    def __init__(self, latent_dim: int, num_classes: int = 0, size: int = VBN_REFERENCE_SIZE) -> None:
        super().__init__()
        self.num_classes = num_classes
        z = torch.randn(size, latent_dim, generator=torch.Generator().manual_seed(_REFERENCE_SEED))
        self.register_buffer("latents", z)

    def prepend(self, z: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        m = len(self.latents)
        z = torch.cat([self.latents.to(z.dtype), z])
        if y is not None:  # labels are a function of the position: no buffer to keep in sync
            y = torch.cat([torch.arange(m, device=y.device) % max(self.num_classes, 1), y])
        return z, y

    def strip(self, out: Tensor) -> Tensor:
        return out[len(self.latents) :]


def generator_inputs(g: nn.Module, z: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """What a G's layers get from ``(z, y)``: labels required when conditional, VBN's reference latents
    prepended (``g.reference``), the label embedding joined to z for "concat" (``g.embed``)."""
    if g.num_classes:
        y = require_labels(y, g.num_classes, type(g).__name__)
    if g.reference is not None:
        z, y = g.reference.prepend(z, y)
    if g.embed is not None:
        z = torch.cat([z, g.embed(y)], 1)
    return z, y


def g_norm(kind: str, num_features: int, dims: int = 2) -> nn.Module:
    """G's norm layer: ``"virtual"`` (virtual batch norm) or any :func:`make_norm` kind."""
    return VirtualBatchNorm(num_features) if kind == "virtual" else make_norm(kind, num_features, dims)
