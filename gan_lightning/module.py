"""GANModule: the update loop. Everything else (loss family, schedule, regularizers, networks) is an
object it calls.

Units: one Lightning training step is one *generator* step. Lightning's ``global_step`` counts every
``optimizer.step()`` (Lightning #17958), so D steps are taken without advancing it (see
:func:`_step_without_counting`): ``trainer.global_step``, ``max_steps``, ``log_every_n_steps``,
``val_check_interval``, ``ModelCheckpoint(every_n_train_steps)`` and the ``step=`` in checkpoint names
all count generator steps. D steps are counted separately in ``d_steps_done``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Literal, get_args

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import Strategy
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gan_lightning.checkpoints import CHECKPOINT_FORMAT, migrate_state_dict
from gan_lightning.d_path import DiscriminatorPath, DOutput, packed_shape
from gan_lightning.errors import ConfigError, TrainingDivergedError
from gan_lightning.latents import LatentPrior, Normal
from gan_lightning.losses import GANLoss, NonSaturating
from gan_lightning.nets.g_layers import GLayer, set_generator_step
from gan_lightning.nets.layers import orthogonal_penalty
from gan_lightning.precision import grad_scaler, rescale_gradients, step_was_skipped, unscaled_grad
from gan_lightning.regularizers import Regularizer
from gan_lightning.schedules import DSteps, FixedDSteps
from gan_lightning.tricks.g_objectives import FeatureMatching, HistoricalAveraging, UnrolledD

NetworkFactory = Callable[[tuple[int, ...], int], nn.Module]  # (data_shape, num_classes); 0 = unconditional
OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
UpdateOrder = Literal["d_first", "g_first", "simultaneous", "fused"]


def _dcgan_adam(params: Iterable) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def ema_with_warmup(decay: float) -> Callable:
    """AveragedModel's ``multi_avg_fn`` for an EMA whose decay ramps up as min(decay, (1+n)/(10+n)) after
    n updates (TF's ``ExponentialMovingAverage(num_updates=...)`` rule). swa_utils' fixed-decay EMA keeps
    a weight of decay^n on G's random init: at 0.999 that is 37 % after 1,000 steps, and the EMA samples
    of the quickstart stayed one blurry class for the first 1,500 G steps (docs/quickstart_metrics.md)."""

    @torch.no_grad()
    def update(ema_params: list[Tensor], params: list[Tensor], num_averaged: Tensor) -> None:
        n = int(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        for e, p in zip(ema_params, params):
            if e.is_floating_point():
                e.lerp_(p, weight)
            else:
                e.copy_(p)  # BatchNorm's num_batches_tracked: a count, not something to average

    return update


def _step_without_counting(strategy: Strategy, opt: LightningOptimizer) -> None:
    """``opt.step()`` without advancing ``trainer.global_step``, so that it counts G steps only.

    ``LightningOptimizer.step`` counts a step around the strategy's ``optimizer_step``; calling that public
    ``Strategy.optimizer_step`` directly runs the same precision plugin (the AMP scaler's unscale, inf
    check and step), the ``on_before_optimizer_step`` hooks and the strategy, without the count.
    """
    strategy.optimizer_step(opt.optimizer, closure=lambda: None)


class GANModule(L.LightningModule):
    """A GAN trained with manual optimization, one generator step per training step.

    Each step (``order="d_first"``): for each of the ``schedule.d_steps(g)`` fresh real batches, one D
    update (loss family + regularizers); then one G update; then the EMA of G. The other orders:

    * ``g_first``: the G update comes before the D updates (seed 003's G-first template);
    * ``simultaneous``: the last D update and the G update come from one loss and one backward (Su 2019,
      stop-gradient): ``d_loss(D(x), D(sg(G(z)))) + lambda * [g_loss(D(G(z))) - g_loss(D(sg(G(z))))]``.
      The bracket is 0 in value, but its gradient reaches G only, so one backward gives D its D-loss
      gradient and G its G-loss gradient with D held fixed; ``lambda`` scales G's gradient (for SGD, the
      G:D learning-rate ratio; Adam is invariant to it, so there set the optimizers' lr instead);
    * ``fused``: the same update with one D forward on ``[real; fake]``: G's gradient is the gradient of
      the G loss w.r.t. the fake *images* (an input-only backward through D), chained through G. With a
      BatchNorm D, real and fake then share batch statistics.

    Args:
        generator: G factory, called with ``data_shape``; must expose ``latent_dim``.
        discriminator: D factory, called with ``data_shape``; returns one raw score per sample.
        loss: the loss family (default: non-saturating).
        schedule: D steps per G step (default: 1).
        regularizers: D regularizers (gradient penalties, weight clipping), each with weight and period.
        g_optimizer, d_optimizer: optimizer factories (default: Adam(lr=2e-4, betas=(0.5, 0.999)), DCGAN's).
            Separate learning rates and betas give TTUR (Heusel et al. 2017).
        g_lr_scheduler, d_lr_scheduler: LR scheduler factories, each stepped once per generator step.
        order: "d_first", "g_first", "simultaneous" or "fused" (see above).
        simultaneous_g_weight: lambda of the simultaneous and fused updates.
        ema_decay: decay of the exponential moving average of G's weights; ``None`` turns EMA off.
        ema_warmup: ramp the decay up from 0.1 as min(ema_decay, (1+n)/(10+n)) over the first updates
            (see :func:`ema_with_warmup`); ``False`` gives swa_utils' fixed-decay EMA.
        num_fixed_samples: size of the fixed noise batch used for sample grids (with fixed labels, one
            grid row of 8 per class, when conditional).
        latent: the latent prior and its sampling-time truncation (:mod:`gan_lightning.latents`;
            default ``Normal()``, N(0, I)). Every latent is drawn through :meth:`draw_latents`.
        conditional: class-conditional G and D (labels from the data; the networks' ``conditioning``
            picks how: cBN or concat in G, projection, ACGAN or input channels in D).
        acgan_weight: weight of ACGAN's classification losses (when D's head is ``acgan``).
        d_transforms: D-input transforms applied to every D input (DiffAugment, instance noise, ...).
        pack: PacGAN's m: D sees m samples packed together (1: off).
        replay: experience replay of past fakes for D (``gan_lightning.tricks.ExperienceReplay``).
        feature_matching, historical_averaging, unrolled: G-side objectives
            (:mod:`gan_lightning.tricks.g_objectives`); ``None``: off.
        g_orthogonal_reg: beta of BigGAN's orthogonal regularization of G's weights
            (:func:`~gan_lightning.nets.orthogonal_penalty`; BigGAN: 1e-4); 0: off.
        data_shape: shape of one sample; linked from the data module by the CLI.
        num_classes: classes of the data's labels; linked from the data module by the CLI.
    """

    def __init__(
        self,
        generator: NetworkFactory,
        discriminator: NetworkFactory,
        loss: GANLoss | None = None,
        schedule: DSteps | None = None,
        regularizers: list[Regularizer] | None = None,
        g_optimizer: OptimizerFactory | None = None,
        d_optimizer: OptimizerFactory | None = None,
        g_lr_scheduler: SchedulerFactory | None = None,
        d_lr_scheduler: SchedulerFactory | None = None,
        order: UpdateOrder = "d_first",
        simultaneous_g_weight: float = 1.0,
        ema_decay: float | None = 0.999,
        ema_warmup: bool = True,
        num_fixed_samples: int = 64,
        latent: LatentPrior | None = None,
        conditional: bool = False,
        acgan_weight: float = 1.0,
        d_transforms: list[nn.Module] | None = None,
        pack: int = 1,
        replay: nn.Module | None = None,
        feature_matching: FeatureMatching | None = None,
        historical_averaging: HistoricalAveraging | None = None,
        unrolled: UnrolledD | None = None,
        g_orthogonal_reg: float = 0.0,
        data_shape: tuple[int, ...] = (1, 32, 32),
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.data_shape = tuple(data_shape)
        if conditional and num_classes < 1:
            raise ConfigError(
                "model.conditional is true but the data has no class labels (num_classes 0); use labeled "
                "data (e.g. digits, or an image folder with one subfolder per class) or set it false"
            )
        self.num_classes = num_classes if conditional else 0
        self.generator = generator(self.data_shape, self.num_classes)
        self.discriminator = discriminator(packed_shape(self.data_shape, pack), self.num_classes)
        self.d_transforms = nn.ModuleList(d_transforms or [])
        self.replay = replay
        self.feature_matching, self.historical_averaging, self.unrolled = (
            feature_matching,
            historical_averaging,
            unrolled,
        )
        if g_orthogonal_reg < 0:
            raise ConfigError(f"model.g_orthogonal_reg must be >= 0, got {g_orthogonal_reg}")
        self.g_orthogonal_reg = g_orthogonal_reg
        if feature_matching is not None:
            feature_matching.check(self.discriminator)
        if historical_averaging is not None:
            historical_averaging.attach(self.generator, self.discriminator)
        if unrolled is not None and order not in ("d_first", "g_first"):
            raise ConfigError(
                f"the unrolled G loss needs a G step of its own: set model.order d_first or g_first "
                f"(got {order!r})"
            )
        self.acgan_weight = acgan_weight
        self.d_path = DiscriminatorPath(self.discriminator, self.d_transforms, pack, self.num_classes)
        self.latent_dim: int = getattr(self.generator, "latent_dim", 0)
        if self.latent_dim < 1:
            raise ConfigError(f"{type(self.generator).__name__} must set a positive `latent_dim` attribute")
        self.loss = loss or NonSaturating()
        self.schedule = schedule or FixedDSteps(1)
        self.regularizers = list(regularizers or [])
        self._g_opt_factory = g_optimizer or _dcgan_adam
        self._d_opt_factory = d_optimizer or _dcgan_adam
        for name, make_opt in (("g_optimizer", self._g_opt_factory), ("d_optimizer", self._d_opt_factory)):
            try:  # built once here, so a bad setting fails before any run directory is made
                make_opt([nn.Parameter(torch.zeros(1))])
            except (ValueError, TypeError) as err:
                raise ConfigError(f"model.{name}: {err}; fix its init_args") from None
        self._scheduler_factories = (g_lr_scheduler, d_lr_scheduler)
        if order not in get_args(UpdateOrder):
            raise ConfigError(f"order must be one of {', '.join(get_args(UpdateOrder))}, got {order!r}")
        self.order = order
        self.simultaneous_g_weight = simultaneous_g_weight
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1) or null, got {ema_decay}")
        # EMA of G only (a D average is useless): Lightning's WeightAveraging would average D too.
        if ema_decay is None:
            self.generator_ema = None
        else:
            avg_fn = ema_with_warmup(ema_decay) if ema_warmup else get_ema_multi_avg_fn(ema_decay)
            self.generator_ema = AveragedModel(self.generator, multi_avg_fn=avg_fn, use_buffers=True)
        # Buffers, so they are saved in checkpoints and follow the module across devices.
        self.latent = latent or Normal()
        fixed = self.draw_latents(num_fixed_samples, torch.Generator().manual_seed(0))
        self.register_buffer("fixed_noise", fixed)
        # one grid row of 8 per class (0 when unconditional: ignored)
        rows = torch.arange(num_fixed_samples) // 8
        self.register_buffer("fixed_labels", rows % self.num_classes if self.num_classes else rows * 0)
        self.register_buffer("d_steps_done", torch.zeros((), dtype=torch.long))
        # AMP (16-mixed): optimizer steps the GradScaler skipped for inf/NaN gradients, per network
        self.register_buffer("g_steps_skipped", torch.zeros((), dtype=torch.long))
        self.register_buffer("d_steps_skipped", torch.zeros((), dtype=torch.long))
        # G's noise/dropout layers, found once (not every step): they get the step and the RNG per step
        self._has_g_layers = any(isinstance(m, GLayer) for m in self.generator.modules())
        self._noise_rng: torch.Generator | None = None
        self._noise_rng_state: Tensor | None = None

    # --- sampling ------------------------------------------------------------------------------
    @property
    def sampling_generator(self) -> nn.Module:
        """The EMA generator when there is one, else the raw generator."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    def balanced_labels(self, n: int) -> Tensor:
        """0, 1, ..., K-1, 0, 1, ...: class-balanced labels for sampling and metrics."""
        return torch.arange(n, device=self.device) % max(self.num_classes, 1)

    def _generate(self, g: nn.Module, z: Tensor, y: Tensor | None) -> Tensor:
        return g(z, y) if self.num_classes else g(z)

    @torch.no_grad()
    def sample(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Samples in data space from noise ``z`` (eval mode, EMA weights when present). A conditional
        model takes labels ``y``; without them it samples class-balanced labels."""
        if self.num_classes and y is None:
            y = self.balanced_labels(len(z))
        g = self.sampling_generator
        was_training = g.training
        g.eval()
        try:
            return self._generate(g, z, y.to(z.device) if y is not None else None)
        finally:
            g.train(was_training)

    @property
    def rng(self) -> torch.Generator:
        """The module's own RNG (latents, fake labels, random penalties and D-input transforms), whose
        state is checkpointed: a resumed run draws exactly what the uninterrupted one would have."""
        if self._noise_rng is None:
            self._noise_rng = torch.Generator(device=self.device)
            self._noise_rng.manual_seed(int(os.environ.get("PL_GLOBAL_SEED", 0)) * 1000 + self.global_rank)
            if self._noise_rng_state is not None:
                self._noise_rng.set_state(self._noise_rng_state)
        return self._noise_rng

    def draw_latents(self, n: int, generator: torch.Generator | None = None, truncate: bool = True) -> Tensor:
        """``n`` latents from the prior ``latent``, on ``generator``'s device (default: the module's own
        RNG). ``truncate``: apply the prior's truncation, as sampling and evaluation do (training never)."""
        return self.latent.sample(n, self.latent_dim, self.rng if generator is None else generator, truncate)

    def noise(self, n: int) -> Tensor:
        """Training latents (never truncated) from the module's own RNG; N(0, I) by default."""
        return self.draw_latents(n, self.rng, truncate=False)

    def fake_labels(self, n: int) -> Tensor | None:
        """Uniform class labels for fakes, from the same RNG (None when unconditional)."""
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, (n,), device=self.device, generator=self.rng)

    # --- optimizers ----------------------------------------------------------------------------
    def configure_optimizers(self) -> list[dict[str, Any]]:
        configs = []
        for net, make_opt, make_sched in zip(
            (self.generator, self.discriminator),
            (self._g_opt_factory, self._d_opt_factory),
            self._scheduler_factories,
        ):
            opt = make_opt(net.parameters())
            configs.append({"optimizer": opt, **({"lr_scheduler": make_sched(opt)} if make_sched else {})})
        return configs

    # --- the update loop -----------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real_all, labels_all = batch
        g_opt, d_opt = self.optimizers()
        k = self.schedule.d_steps(self.global_step)
        if len(real_all) % k:
            raise ConfigError(f"batch of {len(real_all)} cannot be split into {k} D steps; use GANDataModule")
        reals = real_all.split(len(real_all) // k)
        labels = labels_all.split(len(real_all) // k) if self.num_classes else [None] * k
        if self.num_classes and bool((labels_all < 0).any()):
            raise ConfigError("model.conditional is true but this batch has unlabeled samples (label -1)")
        for transform in self.d_transforms:
            if hasattr(transform, "set_step"):
                transform.set_step(self.global_step)
        if self._has_g_layers:
            set_generator_step(self, self.global_step, self.rng)  # G's noise schedule and its RNG
        if self.order == "g_first":
            self.g_step(reals[0], g_opt, labels[0])
            for real, y in zip(reals, labels):
                self.d_step(real, d_opt, y)
        elif self.order == "d_first":
            for real, y in zip(reals, labels):
                self.d_step(real, d_opt, y)
            self.g_step(reals[-1], g_opt, labels[-1])
        else:  # the last D update and the G update in one backward
            for real, y in zip(reals[:-1], labels[:-1]):
                self.d_step(real, d_opt, y)
            joint = self.simultaneous_step if self.order == "simultaneous" else self.fused_step
            joint(reals[-1], g_opt, d_opt, labels[-1])
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)
        for scheduler in self._lr_schedulers():
            scheduler.step()
        for transform in self.d_transforms:
            for key, value in getattr(transform, "log_values", dict)().items():
                self.log(key, value)

    def _lr_schedulers(self) -> list:
        schedulers = self.lr_schedulers()
        return [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]

    def _regularize(self, loss: Tensor, real: Tensor, fake: Tensor, y: Tensor | None) -> Tensor:
        """Add the due regularizers' scaled penalties to the D loss (and log each). ``real`` and ``fake``
        are D's prepared inputs (see :mod:`gan_lightning.d_path`), ``y`` the real labels."""
        d_step = int(self.d_steps_done)
        for reg in self.regularizers:
            if reg.is_due(d_step):
                reg.generator, reg.scaler = self.rng, grad_scaler(self.trainer)
                term = reg.scaled_penalty(self.d_path.scorer(y), real, fake)
                self.log(f"loss/D/{type(reg).__name__.lower()}", term)
                loss = loss + term
        return loss

    def _acgan(self, loss: Tensor, out: DOutput, y: Tensor | None, who: str) -> Tensor:
        """ACGAN (Odena et al. 2017): + weight * cross-entropy of the auxiliary classifier (reals for D,
        fakes for G)."""
        if out.class_logits is None or y is None:
            return loss
        term = F.cross_entropy(out.class_logits, y)
        self.log(f"loss/{who}/acgan", term)
        return loss + self.acgan_weight * term

    def _weight_penalties(self, loss: Tensor, name: str) -> Tensor:
        """+ the penalties on the weights of G ("g") or D ("d"), each logged: historical averaging, and
        BigGAN's orthogonal regularization on G."""
        net = self.generator if name == "g" else self.discriminator
        penalty = self.historical_averaging.penalty(name, net) if self.historical_averaging else None
        if penalty is not None:
            self.log(f"loss/{name.upper()}/historical_averaging", penalty)
            loss = loss + penalty
        if name == "g" and self.g_orthogonal_reg:
            term = orthogonal_penalty(self.generator)
            self.log("loss/G/orthogonal", term)
            loss = loss + self.g_orthogonal_reg * term
        return loss

    def _record_history(self, *names: str) -> None:
        """Add the networks' current weights to their historical averages (after backward, before step)."""
        if self.historical_averaging is not None:
            for name in names:
                self.historical_averaging.record(name, self.generator if name == "g" else self.discriminator)

    def _step(self, opt: LightningOptimizer, who: Literal["G", "D"]) -> None:
        """One optimizer step through the precision plugin (D's without advancing ``global_step``). Under
        16-mixed, a step the GradScaler skipped for inf/NaN gradients is counted and logged per network
        (``amp/skipped_steps/G``, ``/D``): an overflow at the loss scale, not a diverged run."""
        scaler = grad_scaler(self.trainer)
        if who == "D":
            skipped = step_was_skipped(lambda: _step_without_counting(self.trainer.strategy, opt), scaler)
        else:
            skipped = step_was_skipped(opt.step, scaler)
        if scaler is not None:
            count = self.d_steps_skipped if who == "D" else self.g_steps_skipped
            count += int(skipped)
            self.log(f"amp/skipped_steps/{who}", count.float())

    def _finish_d_step(self, d_opt: LightningOptimizer, real_out: Tensor, fake_out: Tensor) -> None:
        self._step(d_opt, "D")
        for reg in self.regularizers:
            reg.after_d_step(self.discriminator)
        self.d_steps_done += 1
        real_scores, fake_scores = real_out.detach(), fake_out.detach()
        for transform in self.d_transforms:
            if hasattr(transform, "observe_real_scores"):
                transform.observe_real_scores(real_scores)
        self.last_d_scores = (real_scores, fake_scores)  # read by HealthMonitor (D's accuracy)
        self.log_dict({"scores/real": real_scores.mean(), "scores/fake": fake_scores.mean()})

    def _fakes_for_d(self, n: int) -> tuple[Tensor, Tensor | None]:
        """A fresh fake batch for a D update (no graph to G), mixed with replayed past fakes if configured."""
        y = self.fake_labels(n)
        with torch.no_grad():
            fake = self._generate(self.generator, self.noise(n), y)
        if self.replay is not None:
            if self.num_classes:
                raise ConfigError("experience replay stores no labels: use it with an unconditional model")
            fake = self.replay.mix(fake, self.rng)
        return fake, y

    def d_step(self, real: Tensor, d_opt: LightningOptimizer, labels: Tensor | None = None) -> None:
        """One D update on a fresh real batch: loss family + due regularizers."""
        with self.toggled_optimizer(d_opt):  # G frozen: no G gradients are computed here
            fake, y_fake = self._fakes_for_d(len(real))
            real_out, real_in, y_real = self.d_path.run(real, labels, self.rng, with_logits=True)
            fake_out, fake_in, _ = self.d_path.run(fake, y_fake, self.rng)
            if hasattr(self.loss, "generator"):  # random label-smoothing targets and flips
                self.loss.generator = self.rng
            loss = self.loss.d_loss(real_out.scores, fake_out.scores)
            self.log("loss/D/main", loss)
            main = self._acgan(loss, real_out, y_real, "D")
            loss = self._weight_penalties(self._regularize(main, real_in, fake_in, y_real), "d")
            self._check_finite(loss, "D", main)
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            self._record_history("d")
            self._finish_d_step(d_opt, real_out.scores, fake_out.scores)

    def g_step(self, real: Tensor, g_opt: LightningOptimizer, labels: Tensor | None = None) -> None:
        """One G update. ``real`` is only read by relativistic losses."""
        with self.toggled_optimizer(g_opt):  # D frozen so its weights get no G-step gradient
            y_fake = self.fake_labels(len(real))
            fake = self._generate(self.generator, self.noise(len(real)), y_fake)
            fake_out, fake_in, y_in = self.d_path.run(fake, y_fake, self.rng, with_logits=True)
            g_side = self.feature_matching is not None or self.unrolled is not None
            real_out, real_in, y_real = (
                self.d_path.run(real, labels, self.rng)
                if self.loss.g_loss_uses_real or g_side
                else (None,) * 3
            )
            loss = self.loss.g_loss(fake_out.scores, real_out.scores if self.loss.g_loss_uses_real else None)
            self.log("loss/G/main", loss, prog_bar=True)
            if self.unrolled is not None:
                d_opt = self.optimizers()[1].optimizer
                loss = self.unrolled.g_loss(
                    self.discriminator,
                    d_opt,
                    self.loss.d_loss,
                    self.loss.g_loss,
                    real_in,
                    fake_in,
                    y_real,
                    y_in,
                )
                self.log("loss/G/unrolled", loss)
            if self.feature_matching is not None:
                distance = self.feature_matching.distance(self.discriminator, real_in, fake_in, y_real, y_in)
                self.log("loss/G/feature_matching", distance)
                loss = self.feature_matching.combine(loss, distance)
            loss = self._weight_penalties(self._acgan(loss, fake_out, y_fake, "G"), "g")
            self._check_finite(loss, "G")
            g_opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            self._record_history("g")
            self._step(g_opt, "G")

    def simultaneous_step(
        self, real: Tensor, g_opt: LightningOptimizer, d_opt: LightningOptimizer, labels: Tensor | None = None
    ) -> None:
        """D and G updated from one loss and one backward, via stop-gradient (Su 2019)."""
        y_fake = self.fake_labels(len(real))
        fake_in, y_in = self.d_path.prepare(
            self._generate(self.generator, self.noise(len(real)), y_fake), y_fake, self.rng
        )
        fake_in_sg = fake_in.detach()  # stop_gradient: the same prepared fakes, with no path back to G
        real_in, y_real = self.d_path.prepare(real, labels, self.rng)
        real_out = self.d_path.scores(real_in, y_real, with_logits=True)
        fake_out_sg, fake_out = (self.d_path.scores(x, y_in, with_logits=True) for x in (fake_in_sg, fake_in))
        d_loss = self.loss.d_loss(real_out.scores, fake_out_sg.scores)
        g_loss = self.loss.g_loss(fake_out.scores, real_out.scores)
        # 0 in value; its D gradients cancel exactly, leaving G's gradient of the G loss with D held fixed
        g_term = g_loss - self.loss.g_loss(fake_out_sg.scores, real_out.scores)
        g_term = self._acgan(g_term, fake_out, y_fake, "G") - self._acgan(
            0.0 * g_term, fake_out_sg, y_fake, "G"
        )
        if self.feature_matching is not None:  # the same stop-gradient form: D's gradients cancel
            fm = self.feature_matching
            distance = fm.distance(self.discriminator, real_in, fake_in, y_real, y_in)
            self.log("loss/G/feature_matching", distance.detach())
            g_term = fm.combine(
                g_term, distance - fm.distance(self.discriminator, real_in, fake_in_sg, y_real, y_in)
            )
        g_term = self._weight_penalties(g_term, "g")
        self.log("loss/D/main", d_loss)
        self.log("loss/G/main", g_loss.detach(), prog_bar=True)
        d_main = self._acgan(d_loss, real_out, y_real, "D")
        d_loss = self._weight_penalties(self._regularize(d_main, real_in, fake_in_sg, y_real), "d")
        loss = d_loss + self.simultaneous_g_weight * g_term
        self._check_finite(loss, "simultaneous", d_main + self.simultaneous_g_weight * g_term)
        d_opt.zero_grad(set_to_none=True)
        g_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._record_history("g", "d")
        self._finish_d_step_then_g(d_opt, g_opt, real_out.scores, fake_out_sg.scores)

    def fused_step(
        self, real: Tensor, g_opt: LightningOptimizer, d_opt: LightningOptimizer, labels: Tensor | None = None
    ) -> None:
        """The simultaneous update with a single D forward on [real; fake]."""
        y_fake = self.fake_labels(len(real))
        fake_in, y_in = self.d_path.prepare(
            self._generate(self.generator, self.noise(len(real)), y_fake), y_fake, self.rng
        )
        leaf = fake_in.detach().requires_grad_(
            True
        )  # D's graph ends here, G's (through the transforms) starts
        real_in, y_real = self.d_path.prepare(real, labels, self.rng)
        y_both = torch.cat([y_real, y_in]) if self.num_classes else None
        out = self.d_path.scores(torch.cat([real_in, leaf]), y_both, with_logits=True)
        real_scores, fake_scores = out.scores.split([len(real_in), len(leaf)])
        d_loss = self.loss.d_loss(real_scores, fake_scores)
        g_loss = self.loss.g_loss(fake_scores, real_scores)
        self.log("loss/D/main", d_loss)
        self.log("loss/G/main", g_loss, prog_bar=True)
        if out.class_logits is not None:
            real_logits, fake_logits = out.class_logits.split([len(real_in), len(leaf)])
            d_loss = self._acgan(d_loss, DOutput(real_scores, real_logits), y_real, "D")
            g_loss = self._acgan(g_loss, DOutput(fake_scores, fake_logits), y_fake, "G")
        if self.feature_matching is not None:
            distance = self.feature_matching.distance(self.discriminator, real_in, leaf, y_real, y_in)
            self.log("loss/G/feature_matching", distance.detach())
            g_loss = self.feature_matching.combine(g_loss, distance)
        d_main = d_loss
        d_loss = self._weight_penalties(self._regularize(d_main, real_in, leaf.detach(), y_real), "d")
        g_weights = self._weight_penalties(g_loss.new_zeros(()), "g")  # on G's weights, not its images
        self._check_finite(d_loss + g_loss + g_weights, "fused", d_main + g_loss + g_weights)
        # input-only backward: dL_G/d(fake images), no D weight gradients are formed (at the loss scale
        # under 16-mixed, then unscaled: manual_backward below scales G's backward itself)
        image_grad = unscaled_grad(
            self.simultaneous_g_weight * g_loss, leaf, grad_scaler(self.trainer), retain_graph=True
        )
        d_opt.zero_grad(set_to_none=True)
        g_opt.zero_grad(set_to_none=True)
        self.manual_backward(d_loss, inputs=list(self.discriminator.parameters()))
        self.manual_backward(fake_in, image_grad)  # chain rule through the transforms and G
        if g_weights.requires_grad:
            self.manual_backward(self.simultaneous_g_weight * g_weights)
        self._record_history("g", "d")
        self._finish_d_step_then_g(d_opt, g_opt, real_scores, fake_scores)

    def _finish_d_step_then_g(
        self, d_opt: LightningOptimizer, g_opt: LightningOptimizer, real_out: Tensor, fake_out: Tensor
    ) -> None:
        """D's step, then G's, from one backward. Lightning updates the AMP scale after D's step, so G's
        gradients (made at the old scale) are brought to the new one before G's unscale."""
        scaler = grad_scaler(self.trainer)
        scale_at_backward = scaler.get_scale() if scaler is not None else 1.0
        self._finish_d_step(d_opt, real_out, fake_out)
        rescale_gradients(g_opt.optimizer, scaler, scale_at_backward)
        self._step(g_opt, "G")

    def _check_finite(self, loss: Tensor, who: str, unpenalized: Tensor | None = None) -> None:
        """Stop the run on a non-finite loss. Under 16-mixed, a penalty whose input gradients overflowed
        at the loss scale is not divergence when the rest of the loss (``unpenalized``) is finite: its
        inf reaches D's gradients, and the GradScaler skips the step (counted) and halves its scale."""
        if torch.isfinite(loss).all():
            return
        scaler = grad_scaler(self.trainer)
        # below scale 1 the true input gradient itself overflows fp16: that is divergence too
        overflow = scaler is not None and unpenalized is not None and scaler.get_scale() >= 1.0
        if overflow and torch.isfinite(unpenalized).all():
            return
        raise TrainingDivergedError(
            f"the {who} loss became {loss.item()} at generator step {self.global_step}: the run "
            "diverged; its checkpoints were not touched. Start a new run from the last one's "
            "weights with lower learning rates (or a gradient penalty, or spectral norm): "
            "fit --config RUN_DIR/config.yaml --init_from RUN_DIR/checkpoints/last.ckpt "
            "--model.d_optimizer.init_args.lr ... (--ckpt_path resumes the same run, so it would "
            "refuse the changed config)"
        )

    # --- evaluation: D's view of held-out real data vs samples (FID & co. are callbacks) ----------
    def _eval_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, prefix: str) -> None:
        real, labels = batch
        # Own seeded noise: evaluation never consumes the training RNG, so it can't change the run.
        rng = torch.Generator(device=self.device).manual_seed(10_007 + batch_idx)
        z = self.draw_latents(len(real), rng)
        y_fake = self.balanced_labels(len(real)) if self.num_classes else None
        fake = self.sample(z, y_fake)
        if self.d_path.pack > 1 and len(real) % self.d_path.pack:  # a short last batch: drop the tail
            keep = len(real) - len(real) % self.d_path.pack
            if keep == 0:
                return
            real, fake = real[:keep], fake[:keep]
        real_out = self.d_path.run(real, labels if self.num_classes else None, rng)[0].scores
        fake_out = self.d_path.run(fake, y_fake, rng)[0].scores
        # sync_dist: epoch-level means over every rank's batches, so all ranks log (and compare) one value
        self.log_dict(
            {
                f"{prefix}/scores/real": real_out.mean(),
                f"{prefix}/scores/fake": fake_out.mean(),
                f"{prefix}/loss/D": self.loss.d_loss(real_out, fake_out),
            },
            batch_size=len(real_out),
            sync_dist=True,
        )

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    # --- checkpoint extras ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gan_lightning_format"] = CHECKPOINT_FORMAT
        if self._noise_rng is not None:
            checkpoint["noise_rng_state"] = self._noise_rng.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        migrate_state_dict(checkpoint, self.state_dict())  # an older release's checkpoint: names only
        for key in ("g_steps_skipped", "d_steps_skipped"):  # saved before AMP skips were counted
            checkpoint["state_dict"].setdefault(key, torch.zeros((), dtype=torch.long))
        self._noise_rng_state = checkpoint.get("noise_rng_state")
        self._noise_rng = None
