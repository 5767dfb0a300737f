"""Differentiable augmentation of every D input (Zhao et al. 2020, "Differentiable Augmentation for
Data-Efficient GAN Training"), with the adaptive probability of stylegan2-ada (Karras et al. 2020,
"Training Generative Adversarial Networks with Limited Data").

The ops follow the authors' ``DiffAugment_pytorch.py``; every random draw takes the module's generator.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from gan_lightning.errors import ConfigError
from gan_lightning.tricks.base import DInputTransform

TRANSLATION_RATIO = 0.125  # max shift, as a fraction of the image side (the paper's 1/8)
CUTOUT_RATIO = 0.5  # side of the erased square, as a fraction of the image side (the paper's 1/2)


def _per_sample_uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """U[0, 1) with one draw per sample, shaped (N, 1, 1, 1)."""
    return torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)


def brightness(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Add a per-sample offset from U[-0.5, 0.5)."""
    return x + (_per_sample_uniform(x, generator) - 0.5)


def saturation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Scale each pixel's deviation from its channel mean by U[0, 2) (identity on one channel)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_per_sample_uniform(x, generator) * 2) + mean


def contrast(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Scale the deviation from the image mean by U[0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_sample_uniform(x, generator) + 0.5) + mean


def translation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Shift by up to 1/8 of the side in each direction, per sample; vacated pixels become 0."""
    n, _, h, w = x.shape
    sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), generator=generator, device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=generator, device=x.device)
    batch, rows, cols = torch.meshgrid(
        torch.arange(n, device=x.device),
        torch.arange(h, device=x.device),
        torch.arange(w, device=x.device),
        indexing="ij",
    )
    # index a 1-pixel zero border: shifts past the edge land on it
    rows = torch.clamp(rows + dy + 1, 0, h + 1)
    cols = torch.clamp(cols + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Zero a square of half the side at a random centre, per sample (clipped at the border)."""
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=generator, device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=generator, device=x.device)
    batch, rows, cols = torch.meshgrid(
        torch.arange(n, device=x.device),
        torch.arange(ch, device=x.device),
        torch.arange(cw, device=x.device),
        indexing="ij",
    )
    rows = torch.clamp(rows + oy - ch // 2, 0, h - 1)
    cols = torch.clamp(cols + ox - cw // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[batch, rows, cols] = 0
    return x * mask.unsqueeze(1)


POLICIES = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


class DiffAugment(DInputTransform):
    """DiffAugment (Zhao et al. 2020): the same differentiable augmentation on real and fake D inputs.

    Augmenting reals only would teach G to produce augmented images; augmenting both, differentiably,
    lets G learn through the augmentation while D never sees the raw training set, which keeps D from
    memorizing a small dataset. Each call draws independently for every sample; the whole policy is
    applied to a sample with probability p (otherwise it passes unchanged).

    Adaptive p (stylegan2-ada, Karras et al. 2020): with r_t = E[sign(D(x_real))] over the real scores
    observed since the last adjustment, every ``adjust_every`` G steps

        p <- clamp(p + sign(r_t - target) * n / (speed_kimg * 1000), 0, 1),

    where n is the number of real scores observed in that period (batch * adjust_every with one D step
    per G step, summed over DDP ranks), so p can cross [0, 1] in ``speed_kimg`` thousand real images.
    r_t > target means D is overconfident on reals (overfitting), so p rises. p starts at 0 and is a
    buffer, saved in the checkpoint; so are the running sums, so a resume mid-period is exact.

    Args:
        policy: comma-separated ops from ``color``, ``translation``, ``cutout``, applied in that order.
        p: per-sample probability of augmenting (fixed; must be left at 1.0 with ``adaptive``).
        adaptive: tune p toward ``target`` as above.
        target: the r_t that the adaptive p aims for (0.6 in stylegan2-ada).
        adjust_every: G steps between adjustments.
        speed_kimg: thousands of real images for p to go from 0 to 1.
    """

    def __init__(
        self,
        policy: str = "color,translation,cutout",
        p: float = 1.0,
        adaptive: bool = False,
        target: float = 0.6,
        adjust_every: int = 4,
        speed_kimg: float = 500,
    ) -> None:
        super().__init__()
        names = [name.strip() for name in policy.split(",") if name.strip()]
        unknown = [name for name in names if name not in POLICIES]
        if not names or unknown:
            raise ConfigError(
                f"DiffAugment.policy takes a comma-separated subset of {list(POLICIES)}, got {policy!r}"
            )
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"DiffAugment.p is a probability and must be in [0, 1], got {p}")
        if adaptive and p != 1.0:
            raise ConfigError(
                "DiffAugment: the adaptive p starts at 0 and is tuned; leave p unset with adaptive: true"
            )
        if adjust_every < 1 or speed_kimg <= 0:
            raise ConfigError(
                f"DiffAugment needs adjust_every >= 1 and speed_kimg > 0, got {adjust_every}, {speed_kimg}"
            )
        self.policy = ",".join(names)
        self.ops = [op for name in names for op in POLICIES[name]]
        self.adaptive = adaptive
        self.target = target
        self.adjust_every = adjust_every
        self.speed_kimg = speed_kimg
        self.register_buffer("p", torch.tensor(0.0 if adaptive else float(p)))
        # running sums of sign(D(real)) and of the count since the last adjustment; the last r_t
        self.register_buffer("sign_sum", torch.tensor(0.0))
        self.register_buffer("sign_count", torch.tensor(0.0))
        self.register_buffer("r_t", torch.tensor(float("nan")))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.dim() != 4:
            raise ConfigError(f"DiffAugment needs images (N, C, H, W), got shape {tuple(x.shape)}")
        augmented = x
        for op in self.ops:
            augmented = op(augmented, generator)
        # a tensor comparison, not a Python branch on p: no device sync per call
        apply = _per_sample_uniform(x, generator) < self.p.to(x.dtype)
        return torch.where(apply, augmented, x)

    @torch.no_grad()
    def observe_real_scores(self, scores: Tensor) -> None:
        if self.adaptive:
            self.sign_sum += scores.sign().sum().to(self.sign_sum)
            self.sign_count += scores.numel()

    @torch.no_grad()
    def set_step(self, generator_step: int) -> None:
        if not self.adaptive or generator_step == 0 or generator_step % self.adjust_every:
            return
        stats = torch.stack([self.sign_sum, self.sign_count])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)  # every rank takes the same step, so p stays identical across ranks
        total, count = stats.unbind()
        observed = count > 0
        r_t = total / count.clamp_min(1.0)
        step = torch.sign(r_t - self.target) * count / (self.speed_kimg * 1000)
        self.p.copy_(torch.where(observed, (self.p + step).clamp(0.0, 1.0), self.p))
        self.r_t.copy_(torch.where(observed, r_t, self.r_t))
        self.sign_sum.zero_()
        self.sign_count.zero_()

    def log_values(self) -> dict[str, float]:
        values = {"augment/p": float(self.p)}
        r_t = float(self.r_t)
        if self.adaptive and not math.isnan(r_t):  # NaN until the first adjustment
            values["augment/r_t"] = r_t
        return values

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}, adaptive={self.adaptive}, target={self.target}"
