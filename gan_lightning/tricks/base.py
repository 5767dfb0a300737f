"""The interface of a D-input transform: what the one path into D applies to every D input."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DInputTransform(nn.Module):
    """Base class of the transforms applied to every D input (augmentation, instance noise).

    The path into D calls the transform on real and fake batches separately, so their random draws are
    independent. ``forward`` must stay differentiable w.r.t. ``x``: G learns through it. Every random draw
    uses ``generator`` (the GANModule's checkpointed RNG, on x's device), so a resumed run draws the same.
    State that must survive a checkpoint (e.g. an adaptive probability) is a buffer.

    Hooks, all no-ops by default:
        ``set_step(generator_step)``: called once per G step, before that step's D steps.
        ``observe_real_scores(scores)``: called after each D step with D's raw (detached) scores on reals.
        ``log_values()``: values to log, keyed by their log name, e.g. ``{"augment/p": 0.2}``.
    """

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def set_step(self, generator_step: int) -> None:
        """Called once per G step, before its D steps."""

    def observe_real_scores(self, scores: Tensor) -> None:
        """Called after each D step with D's raw scores on the real batch (detached)."""

    def log_values(self) -> dict[str, float]:
        return {}
