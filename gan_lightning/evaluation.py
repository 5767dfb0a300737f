"""Evaluation during training and on checkpoints: FID/KID/IS/mode counts for images, the PacGAN mode
coverage for the 2D mixtures.

:class:`GANMetrics` runs at every validation (``trainer.val_check_interval`` counts generator steps),
on G's EMA when there is one, and logs ``val/<prefix><metric>`` to every logger. :class:`BestCheckpoint`
keeps the checkpoint with the best FID. ``python -m gan_lightning evaluate`` runs the same code on a
checkpoint and writes ``metrics.json``.

DDP: each rank generates a strided share of one seeded set of latents (so the sample set does not
depend on the number of processes), extracts its features, and the torchmetrics states sync inside
``compute()``, which every rank calls; every rank then logs the same synced values (no rank-0-only
collective, Lightning/torchmetrics #2684).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from gan_lightning.checkpoints import KeyedCheckpoint
from gan_lightning.errors import ConfigError
from gan_lightning.metrics.cache import cache_key, real_features, subset_indices
from gan_lightning.metrics.features import FeatureExtractor
from gan_lightning.metrics.scores import (
    DC_K,
    IS_SPLITS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    LOGIT_METRICS,
    METRICS,
    PR_K,
    FeatureScores,
)
from gan_lightning.metrics.toy2d import mode_coverage
from gan_lightning.nets.g_layers import warn_if_random_at_sampling


class GANMetrics(L.Callback):
    """Sample-quality metrics at each validation and test.

    Args:
        extractor: the feature network for image data: ``gan_lightning.metrics.InceptionV3`` (standard
            FID/IS/KID) or ``gan_lightning.metrics.DigitFeatures`` (offline, digits only). ``None``:
            no image metrics. 2D mixtures need none: they get modes / high-quality % / reverse KL.
        metrics: which of "fid", "kid", "is", "modes", "precision_recall", "density_coverage" to compute
            for images (``None``: the first four; "is" and "modes" are left out, with a warning, for an
            extractor without a classifier layer, and refused when named).
        num_fake: generated samples per evaluation (FID is biased upward at small counts: compare only
            runs evaluated with the same count). The counts are logged with the metrics
            (``<prefix>num_fake``, ``<prefix>num_real``).
        num_real: real images for the reference statistics (``None``: the whole split).
        real_split: the split the reference statistics come from.
        batch_size: images per generator / extractor forward pass.
        kid_subsets, kid_subset_size, is_splits: as in torchmetrics; pr_k: the k of precision/recall;
            dc_k: the k of density/coverage.
        use_cache: keep the real features on disk (see ``gan_lightning.metrics.cache``).
        seed: seed of the evaluation latents and of KID/IS's subset draws (fixed: every evaluation of a
            run sees the same latents, so successive scores differ only through G).
        num_points: samples for the 2D mode coverage (2,500 in the PacGAN/VEEGAN protocol).
        only_last: during fit, evaluate only at ``trainer.max_steps`` (for an expensive extractor:
            ``configs/metrics/inception_at_end.yaml``); ``validate``, ``test`` and ``evaluate`` always do.
        extra: more evaluations, each with its own extractor, counts and schedule, logged beside this
            one (their key prefixes must differ), e.g. Inception at the end beside the digit classifier.
    """

    def __init__(
        self,
        extractor: FeatureExtractor | None = None,
        metrics: list[str] | None = None,
        num_fake: int = 10_000,
        num_real: int | None = None,
        real_split: Literal["train", "val", "test"] = "train",
        batch_size: int = 250,
        kid_subsets: int = KID_SUBSETS,
        kid_subset_size: int = KID_SUBSET_SIZE,
        is_splits: int = IS_SPLITS,
        pr_k: int = PR_K,
        dc_k: int = DC_K,
        use_cache: bool = True,
        seed: int = 0,
        num_points: int = 2500,
        only_last: bool = False,
        extra: list[GANMetrics] | None = None,
    ) -> None:
        if num_fake < 2:
            raise ConfigError(f"metrics.num_fake must be >= 2, got {num_fake}")
        self.extractor = extractor
        self.metrics = list(METRICS if metrics is None else metrics)
        if extractor is not None and not extractor.has_classifier:
            self.metrics = self._without_logit_metrics(extractor, self.metrics, explicit=metrics is not None)
        self.num_fake = num_fake
        self.num_real = num_real
        self.real_split = real_split
        self.batch_size = batch_size
        self.score_args = {
            "kid_subsets": kid_subsets,
            "kid_subset_size": kid_subset_size,
            "is_splits": is_splits,
            "pr_k": pr_k,
            "dc_k": dc_k,
        }
        FeatureScores(1, 1, self.metrics)  # validate the names now, not at the first validation
        self.use_cache = use_cache
        self.seed = seed
        self.num_points = num_points
        self.only_last = only_last
        self.extra = list(extra or [])
        prefixes = [m.extractor.key_prefix for m in (self, *self.extra) if m.extractor is not None]
        if len(set(prefixes)) < len(prefixes):
            raise ConfigError(
                f"metrics.extra repeats a metric key prefix ({prefixes}): each extractor (and each "
                "Inception resize) may appear once"
            )
        self.scores: FeatureScores | None = None
        self.num_real_used: int | None = None
        self.last_seconds = 0.0  # of the latest evaluation

    @staticmethod
    def _without_logit_metrics(extractor: FeatureExtractor, metrics: list[str], explicit: bool) -> list[str]:
        """IS and class counts need real logits: refused when asked for by name, else left out, saying so."""
        wanted = [m for m in metrics if m in LOGIT_METRICS]
        if not wanted:
            return metrics
        names = " and ".join(repr(m) for m in wanted)
        message = (
            f"metric{'s' if len(wanted) > 1 else ''} {names} need{'' if len(wanted) > 1 else 's'} the "
            f"extractor's classifier layer, which {extractor.name} has not "
            f"({getattr(extractor, 'classifier_hint', 'its logits are not class scores')})"
        )
        if explicit:
            raise ConfigError(f"{message}; or drop {wanted} from metrics.metrics")
        warnings.warn(f"not computed: {message}; FID, KID and the other metrics are", stacklevel=3)
        return [m for m in metrics if m not in LOGIT_METRICS]

    @property
    def fid_key(self) -> str | None:
        """The logged FID key, when FID is computed."""
        if self.extractor is None or "fid" not in self.metrics:
            return None
        return f"val/{self.extractor.key_prefix}fid"

    # --- Lightning hooks -------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # An extractor that can't read these images (e.g. 1-channel digits on RGB data) fails now, not
        # at the first evaluation hours into the run.
        for m in (self, *self.extra):
            if m.extractor is not None and len(pl_module.data_shape) == 3:
                m.extractor(torch.zeros(2, *pl_module.data_shape))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "test")

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        gather = pl_module.all_gather if trainer.world_size > 1 else None
        # during fit, the last evaluation is the one at max_steps; validate/test are always "final"
        fitting = trainer.state.fn == "fit" and trainer.max_steps > 0
        final = not fitting or trainer.global_step >= trainer.max_steps
        results = self.evaluate(
            pl_module, trainer.datamodule, trainer.global_rank, trainer.world_size, gather, final
        )
        for name, value in results.items():
            # already synced: every rank logs the same value, so no further reduction
            pl_module.log(f"{stage}/{name}", value, sync_dist=False)

    # --- the computation, shared with `evaluate` ---------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self,
        module: L.LightningModule,
        datamodule: L.LightningDataModule,
        rank: int = 0,
        world_size: int = 1,
        all_gather: Callable[[Tensor], Tensor] | None = None,
        final: bool = True,
    ) -> dict[str, float]:
        """The metrics of ``module``'s sampling generator, keys prefixed by the extractor's prefix, then
        those of each ``extra`` evaluation; ``final``: this is the last evaluation of the run (or one
        outside training), the only one ``only_last`` evaluations run at."""
        t0 = time.perf_counter()
        results: dict[str, float] = {}
        if self.only_last and not final:
            pass
        elif len(module.data_shape) == 1:
            results = self._toy2d(module, datamodule)
        elif self.extractor is not None:
            results = self._images(module, datamodule, rank, world_size, all_gather)
        for m in self.extra:
            results.update(m.evaluate(module, datamodule, rank, world_size, all_gather, final))
        self.last_seconds = time.perf_counter() - t0
        return results

    def _toy2d(self, module: L.LightningModule, datamodule: L.LightningDataModule) -> dict[str, float]:
        if not hasattr(datamodule, "means"):
            return {}
        g = torch.Generator().manual_seed(self.seed)
        z = module.draw_latents(self.num_points, g).to(module.device)
        warn_if_random_at_sampling(module.sampling_generator)
        # every rank draws the same samples: identical results, no collective needed
        out = mode_coverage(module.sample(z), datamodule.means, datamodule.std)
        return {k: float(v) for k, v in out.items()}

    def _images(
        self,
        module: L.LightningModule,
        datamodule: L.LightningDataModule,
        rank: int,
        world_size: int,
        all_gather: Callable[[Tensor], Tensor] | None,
    ) -> dict[str, float]:
        extractor = self.extractor.to(module.device)
        if self.scores is None:
            scores = FeatureScores(
                extractor.num_features, extractor.num_classes, self.metrics, **self.score_args
            )
            scores = scores.to(module.device)
            split = self.real_split
            if split not in datamodule.splits:
                datamodule.splits[split] = datamodule.build(split)
            dataset = datamodule.splits[split]
            num = len(subset_indices(len(dataset), self.num_real))
            key = cache_key(type(datamodule).__name__, split, dataset, extractor, num)
            feats = real_features(
                dataset, key, extractor, num, self.batch_size, module.device, self.use_cache,
                rank, world_size, all_gather,
            )  # fmt: skip
            scores.update_real(feats[rank::world_size])  # a shard each: the synced sums are exact
            self.scores = scores
            self.num_real_used = len(feats)
        scores = self.scores
        scores.reset_fake()
        g = torch.Generator().manual_seed(self.seed)
        z_all = module.draw_latents(self.num_fake, g)  # the prior's, truncated if it says so
        warn_if_random_at_sampling(module.sampling_generator)
        for z in z_all[rank::world_size].split(self.batch_size):
            scores.update_fake(*extractor(module.sample(z.to(module.device)).float()))
        results = scores.compute(self.seed)
        # FID and KID are biased by the sample counts: they travel with every result
        results.update(num_fake=float(self.num_fake), num_real=float(self.num_real_used))
        return {f"{extractor.key_prefix}{k}": v for k, v in results.items()}


class BestCheckpoint(KeyedCheckpoint):
    """Keeps the checkpoint with the best FID, saved right after the evaluation that measured it.

    ``monitor=None`` follows the :class:`GANMetrics` callback's FID (``val/fid``, or ``val/digit_fid``
    with the digit classifier); with no FID configured this callback does nothing. Set ``monitor`` and
    ``mode`` to keep the best of another logged value (e.g. ``val/modes`` with ``mode: max``).
    """

    def __init__(
        self,
        monitor: str | None = None,
        mode: Literal["min", "max"] = "min",
        filename: str = "best-step={step:07d}",
        save_top_k: int = 1,
    ) -> None:
        super().__init__(
            monitor=monitor,
            mode=mode,
            filename=filename,
            save_top_k=save_top_k,
            auto_insert_metric_name=False,
            save_on_train_epoch_end=False,
        )
        self._auto = monitor is None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._auto:
            keys = [cb.fid_key for cb in trainer.callbacks if isinstance(cb, GANMetrics)]
            self.monitor = next((k for k in keys if k), None)
        super().setup(trainer, pl_module, stage)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is not None:
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # only after evaluations

    def on_train_batch_end(self, *args, **kwargs) -> None:
        pass


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a metric that is undefined (e.g. IS's std over one split) is written as null."""
    return value if math.isfinite(value) else None
