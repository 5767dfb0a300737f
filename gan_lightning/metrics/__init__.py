"""Evaluation metrics.

* ``toy2d``: mode coverage on the 2D mixtures (one implementation, shared by the tests, the benchmarks
  and evaluation);
* ``features``: the extractor contract and the class-coverage counts; ``inception``: the standard
  InceptionV3; ``digits``: the offline digit classifier;
* ``cache``: real features on disk; ``scores``: FID/KID/IS through torchmetrics on given features.
"""

from gan_lightning.metrics.features import FeatureExtractor, class_coverage, coverage_from_counts
from gan_lightning.metrics.toy2d import mode_coverage

__all__ = [
    "DigitFeatures",
    "FeatureExtractor",
    "InceptionV3",
    "class_coverage",
    "coverage_from_counts",
    "mode_coverage",
]


def __getattr__(name: str):
    # Imported on first use, so `python -m gan_lightning.metrics.digits` runs without a runpy warning.
    if name == "DigitFeatures":
        from gan_lightning.metrics.digits import DigitFeatures

        return DigitFeatures
    if name == "InceptionV3":
        from gan_lightning.metrics.inception import InceptionV3

        return InceptionV3
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
