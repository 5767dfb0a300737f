"""Test-only classes, importable by the CLI in a subprocess (tests/ is put on PYTHONPATH)."""

import lightning as L
import torch

from gan_lightning.losses import NonSaturating
from gan_lightning.metrics.features import FeatureExtractor


class NaNAfterCalls(NonSaturating):
    """Non-saturating loss whose D loss turns NaN after ``calls`` calls: a run that diverges."""

    def __init__(self, calls: int = 2) -> None:
        super().__init__()
        self.calls = calls
        self._n = 0

    def d_loss(self, real_out, fake_out, generator=None):
        self._n += 1
        loss = super().d_loss(real_out, fake_out)
        return loss * torch.nan if self._n > self.calls else loss


class RandomFeatures(FeatureExtractor):
    """A stand-in for InceptionV3 in tests: a fixed random projection of 4x4-pooled images, with a call
    counter (to prove cache hits)."""

    name = "random-features-v1"
    key_prefix = "rand_"

    def __init__(self, num_features: int = 8, num_classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        self.num_features, self.num_classes = num_features, num_classes
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(16, num_features, generator=g))
        self.register_buffer("head", torch.randn(num_features, num_classes, generator=g))
        self.calls = 0

    def extract(self, images):
        self.calls += 1
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.float().mean(1, keepdim=True), 4).flatten(1)
        features = pooled @ self.proj
        return features, features @ self.head


class SaveInitialState(L.Callback):
    """Saves the module's state_dict as training starts (before the first step), to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer, pl_module) -> None:
        torch.save({k: v.detach().clone() for k, v in pl_module.state_dict().items()}, self.path)
