"""Test-only classes, importable by the CLI in a subprocess (tests/ is put on PYTHONPATH)."""

import torch

from gan_lightning.losses import NonSaturating


class NaNAfterCalls(NonSaturating):
    """Non-saturating loss whose D loss turns NaN after ``calls`` calls: a run that diverges."""

    def __init__(self, calls: int = 2) -> None:
        self.calls = calls
        self._n = 0

    def d_loss(self, real_out, fake_out):
        self._n += 1
        loss = super().d_loss(real_out, fake_out)
        return loss * torch.nan if self._n > self.calls else loss
