"""Mode coverage on the 2D mixtures, following the PacGAN / VEEGAN protocol.

For samples from G and the mixture's K means and standard deviation sigma:

* a sample is *high quality* when it lies within 3 sigma of its nearest mean;
* a mode is *covered* when at least one high-quality sample has it as nearest mean;
* the *reverse KL* is KL(p || uniform) = log K - H(p), where p is the histogram of the high-quality
  samples over the K modes (0 when they spread evenly over all modes; log K when all sit on one).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mode_coverage(samples: Tensor, means: Tensor, std: float) -> dict[str, float]:
    """{"modes": covered modes, "high_quality_pct": % high-quality samples, "reverse_kl": nats}.

    ``reverse_kl`` is ``nan`` when no sample is high quality (the histogram is empty).
    """
    samples, means = samples.detach().double().cpu(), means.double().cpu()
    dist = torch.cdist(samples, means)  # (N, K)
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist < 3 * std
    counts = torch.bincount(nearest[good], minlength=len(means)).double()
    if counts.sum() == 0:
        kl = math.nan
    else:
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
        kl = math.log(len(means)) - entropy
    return {
        "modes": int((counts > 0).sum().item()),
        "high_quality_pct": 100.0 * good.double().mean().item(),
        "reverse_kl": kl,
    }
