"""Instance noise (Sønderby et al. 2016, "Amortised MAP Inference for Image Super-resolution"; seed 001)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from gan_lightning.errors import ConfigError
from gan_lightning.tricks.base import DInputTransform


class InstanceNoise(DInputTransform):
    """Gaussian noise on every D input, annealed to 0: x + sigma_t * N(0, I).

    Blurring both distributions makes their supports overlap, so D cannot separate them perfectly and
    its gradient to G stays informative early on; the noise is annealed away so the final D sees clean
    data. With t the generator step:

        linear:       sigma_t = sigma * max(0, 1 - t / anneal_steps)
        exponential:  sigma_t = sigma * 0.01 ** (t / anneal_steps) for t < anneal_steps, else 0
                      (1% of sigma at the end of the annealing)
        constant:     sigma_t = sigma

    Works on inputs of any shape. Each call draws fresh noise, so real and fake get independent draws.

    Args:
        sigma: noise standard deviation at step 0, in data units (data lie in [-1, 1]).
        anneal_steps: G steps until the noise reaches 0 (unused by ``constant``).
        schedule: how sigma decays.
    """

    def __init__(
        self,
        sigma: float = 0.1,
        anneal_steps: int = 10000,
        schedule: Literal["linear", "exponential", "constant"] = "linear",
    ) -> None:
        super().__init__()
        if sigma < 0:
            raise ConfigError(f"InstanceNoise.sigma is a standard deviation and must be >= 0, got {sigma}")
        if anneal_steps < 1:
            raise ConfigError(f"InstanceNoise.anneal_steps must be >= 1, got {anneal_steps}")
        if schedule not in ("linear", "exponential", "constant"):
            raise ConfigError(
                f"InstanceNoise.schedule must be linear, exponential or constant, got {schedule!r}"
            )
        self.sigma = sigma
        self.anneal_steps = anneal_steps
        self.schedule = schedule
        # A function of the G step, which the module passes in every step: nothing to checkpoint.
        self.current_sigma = self.sigma_at(0)

    def sigma_at(self, step: int) -> float:
        """sigma_t at generator step ``step``."""
        progress = step / self.anneal_steps
        if self.schedule == "constant":
            return self.sigma
        if self.schedule == "linear":
            return self.sigma * max(0.0, 1.0 - progress)
        return self.sigma * 0.01**progress if progress < 1.0 else 0.0

    def set_step(self, generator_step: int) -> None:
        self.current_sigma = self.sigma_at(generator_step)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.current_sigma == 0.0:
            return x
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + self.current_sigma * noise

    def log_values(self) -> dict[str, float]:
        return {"noise/sigma": self.current_sigma}

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, anneal_steps={self.anneal_steps}, schedule={self.schedule!r}"
