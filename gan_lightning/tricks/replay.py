"""Experience replay of past fakes for D (Shrivastava et al. 2017, "Learning from Simulated and
Unsupervised Images through Adversarial Training", section 2.3; ganhacks #13)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigError


class ExperienceReplay(nn.Module):
    """A ring buffer of past (detached) fakes, some of which D sees in place of fresh fakes.

    A D that only sees the current G forgets the modes G left behind, so G can cycle back to them;
    replaying older fakes keeps D penalizing them. Each ``mix`` call replaces k = round(fraction * N)
    samples of the fake batch, at random positions, by distinct random buffer samples (detached, so no
    gradient reaches G through them), once the buffer holds at least k samples; then it writes the fresh
    fakes (detached) into the buffer.

    The buffer is a *ring*: it keeps the ``size`` most recent fakes, overwriting the oldest. (Shrivastava
    et al. overwrite random entries; the ring is deterministic and keeps the replay close to recent G.)
    Draws, all from ``generator``: a permutation of the batch positions, then one of the stored samples.

    The samples are a persistent buffer, created at the first call with the fakes' shape; loading a
    checkpoint into a fresh instance creates it first. The fill level and write position are the
    module's extra state, so they are saved too. Under DDP each rank holds its own buffer, and a
    checkpoint stores rank 0's, which every rank then resumes from.

    Args:
        size: number of past fakes kept.
        fraction: share of each fake batch replaced by replayed samples.
    """

    samples: Tensor | None

    def __init__(self, size: int = 1000, fraction: float = 0.5) -> None:
        super().__init__()
        if size < 1:
            raise ConfigError(f"ExperienceReplay.size must be >= 1, got {size}")
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"ExperienceReplay.fraction is a share and must be in [0, 1], got {fraction}")
        self.size = size
        self.fraction = fraction
        self.register_buffer("samples", None, persistent=True)
        self.filled = 0  # stored samples
        self.position = 0  # next slot to write

    def mix(self, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The fake batch with round(fraction * N) random positions replaced by replayed fakes."""
        n = fake.shape[0]
        k = round(self.fraction * n)
        if k > self.size:
            raise ConfigError(
                f"ExperienceReplay.size ({self.size}) is below the {k} samples replayed per batch; raise size"
            )
        self._prepare(fake)
        out = fake
        if k > 0 and self.filled >= k:
            positions = torch.randperm(n, generator=generator, device=fake.device)[:k]
            stored = torch.randperm(self.filled, generator=generator, device=fake.device)[:k]
            # out-of-place: gradients still reach G through the fresh positions, none through the replayed
            out = fake.index_copy(0, positions, self.samples[stored].to(fake.dtype))
        self._push(fake.detach())
        return out

    @torch.no_grad()
    def _push(self, fresh: Tensor) -> None:
        fresh = fresh[-self.size :]  # a batch larger than the buffer: only its last `size` fit
        slots = (self.position + torch.arange(len(fresh), device=fresh.device)) % self.size
        self.samples[slots] = fresh.to(self.samples.dtype)
        self.position = (self.position + len(fresh)) % self.size
        self.filled = min(self.size, self.filled + len(fresh))

    def _prepare(self, fake: Tensor) -> None:
        """Create the buffer at the first call; follow the fakes to their device after a load."""
        if self.samples is None:
            self.samples = fake.new_zeros((self.size, *fake.shape[1:])).detach()
        elif self.samples.shape[1:] != fake.shape[1:]:
            raise ConfigError(
                f"ExperienceReplay holds samples of shape {tuple(self.samples.shape[1:])}, got fakes of "
                f"shape {tuple(fake.shape[1:])}; the checkpoint was trained on other data"
            )
        if self.samples.device != fake.device:
            self.samples = self.samples.to(fake.device)

    def get_extra_state(self) -> dict[str, Any]:
        return {"filled": self.filled, "position": self.position}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.filled = int(state["filled"])
        self.position = int(state["position"])

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # the buffer is created lazily: give a fresh instance one of the checkpoint's shape to load into
        saved = state_dict.get(prefix + "samples")
        if saved is not None:
            if saved.shape[0] != self.size:
                raise ConfigError(
                    f"the checkpoint's replay buffer holds {saved.shape[0]} samples but "
                    f"ExperienceReplay.size is {self.size}; set size: {saved.shape[0]} to resume"
                )
            if self.samples is None or self.samples.shape != saved.shape:
                device = saved.device if self.samples is None else self.samples.device
                self.samples = torch.empty_like(saved, device=device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"size={self.size}, fraction={self.fraction}, filled={self.filled}"
