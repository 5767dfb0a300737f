"""Evaluation metrics. ``toy2d``: mode coverage on the 2D mixtures (one implementation, shared by the
tests, the benchmarks and evaluation)."""

from gan_lightning.metrics.toy2d import mode_coverage

__all__ = ["mode_coverage"]
