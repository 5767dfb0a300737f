"""The feature-extractor contract shared by every image metric, and where cached files live.

A :class:`FeatureExtractor` maps images in [-1, 1] to (features, logits) in one forward pass:
features feed FID and KID, logits feed IS and the class-coverage counts. Extractors are frozen and
always in eval mode. ``name`` identifies the network *and its weights*: it is part of the real-feature
cache key, so two extractors that can give different features must never share a name.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from gan_lightning.io import atomic_write


def cache_dir() -> Path:
    """``$GAN_LIGHTNING_CACHE``, else ``~/.cache/gan_lightning``: real features, classifier weights."""
    return Path(os.environ.get("GAN_LIGHTNING_CACHE") or Path.home() / ".cache" / "gan_lightning")


def atomic_save(record: dict, path: Path) -> None:
    """torch.save through :func:`gan_lightning.io.atomic_write` (same-directory temporary file, fsync,
    rename): a reader (or another rank writing the same file at once) never sees a half-written file,
    and a crash leaves no partial cache behind."""
    atomic_write(path, lambda f: torch.save(record, f))


class FeatureExtractor(nn.Module):
    """Base class: subclasses set ``name``, ``num_features``, ``num_classes`` and ``key_prefix`` and
    implement :meth:`extract`. ``has_classifier`` is False when the logits are not real class scores
    (InceptionV3 with weights converted from a file that has no classifier layer): then the metrics
    built on logits (IS, class counts) are refused, never computed.

    ``key_prefix`` keeps metrics from different extractors apart in the logs: the Inception metrics are
    ``val/fid``, ``val/is``, ...; the digit classifier's are ``val/digit_fid``, ``val/digit_modes``, ...
    """

    name: str = "extractor"
    num_features: int = 0
    num_classes: int = 0
    key_prefix: str = ""
    has_classifier: bool = True

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)  # never leaves eval mode (BatchNorm statistics stay frozen)

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) floats in [-1, 1] -> (features (N, num_features), logits (N, num_classes))."""
        return self.extract(images)

    def extract(self, images: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def class_coverage(predicted: Tensor, num_classes: int) -> dict[str, float]:
    """Mode counts from predicted class labels (the digit and Stacked-MNIST protocol of VEEGAN/PacGAN).

    ``modes``: classes predicted at least once; ``mode_kl``: KL(p || uniform) = log K - H(p) of the
    histogram p of the predictions over the K classes (0 when balanced, log K when all in one class).
    """
    return coverage_from_counts(
        torch.bincount(predicted.detach().long().flatten().cpu(), minlength=num_classes)
    )


def coverage_from_counts(counts: Tensor) -> dict[str, float]:
    """:func:`class_coverage` from the per-class counts (what ranks sum under DDP)."""
    counts = counts.detach().double().cpu()
    num_classes = len(counts)
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return {"modes": int((counts > 0).sum().item()), "mode_kl": math.log(num_classes) - entropy}
