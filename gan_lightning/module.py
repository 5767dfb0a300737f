"""GANModule: the update loop. Everything else (loss family, schedule, regularizers, networks) is an
object it calls.

Units: one Lightning training step is one *generator* step. Lightning's ``global_step`` counts every
``optimizer.step()`` (Lightning #17958), so D steps are taken without advancing it (see
:func:`gan_lightning.updates._step_without_counting`): ``trainer.global_step``, ``max_steps``,
``log_every_n_steps``, ``val_check_interval``, ``ModelCheckpoint(every_n_train_steps)`` and the
``step=`` in checkpoint names all count generator steps. D steps are counted separately in ``d_steps_done``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gan_lightning.checkpoints import CHECKPOINT_FORMAT, migrate_state_dict
from gan_lightning.d_path import DiscriminatorPath, packed_shape
from gan_lightning.errors import ConfigError
from gan_lightning.growing import Growth
from gan_lightning.latents import LatentPrior, Normal
from gan_lightning.losses import GANLoss, NonSaturating
from gan_lightning.nets.g_layers import GLayer, set_generator_step
from gan_lightning.regularizers import DriftPenalty, Regularizer, WeightClipping
from gan_lightning.schedules import DSteps, FixedDSteps
from gan_lightning.tricks.g_objectives import FeatureMatching, HistoricalAveraging, UnrolledD
from gan_lightning.updates import UpdateSteps

NetworkFactory = Callable[[tuple[int, ...], int], nn.Module]  # (data_shape, num_classes); 0 = unconditional
OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
UpdateOrder = Literal["d_first", "g_first", "simultaneous", "fused"]
_NO_INPUT_GRAD = (DriftPenalty, WeightClipping)  # regularizers that never differentiate D w.r.t. its input


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


def skip_nvml_probe_without_cuda() -> None:
    """On a machine with no CUDA device, let ``torch.cuda.is_available()`` answer from the CUDA runtime.

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when imported, so that the check cannot poison a
    later fork. Then every ``is_available()`` probes NVML, and without a GPU the probe fails and is not
    cached: a ``dlopen`` of the missing NVML library, about 30 µs, in every Adam/AdamW step (its
    ``_accelerator_graph_capture_health_check``), 2-3 % of a small model's step on CPU
    (docs/overhead.md). With no device there is nothing for a fork to inherit, so the runtime check is
    both safe and cheap. Where a device exists the setting stays as Lightning made it.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and torch.cuda.device_count() == 0:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


class GANModule(UpdateSteps, L.LightningModule):
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
        compile_generator, compile_discriminator: run G's and D's training forwards through
            ``torch.compile`` (same weights; the EMA copy, sampling and the penalties' double backward stay
            eager, see :class:`~gan_lightning.d_path.DiscriminatorPath`).
        compile_options: keyword arguments of ``torch.compile`` (``mode``, ``backend``, ``dynamic``, ...).
        channels_last: G, its EMA copy and D (their 4-D weights), and the real batches, in channels-last
            memory format (faster convolutions on GPUs with tensor cores, and on many CPUs).
        growth: progressive growing's stage schedule (:class:`~gan_lightning.growing.Growth`), for
            networks that grow (PGGAN's); ``None``: the networks run at the data's size.
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
        compile_generator: bool = False,
        compile_discriminator: bool = False,
        compile_options: dict[str, Any] | None = None,
        channels_last: bool = False,
        growth: Growth | None = None,
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
        if channels_last and len(self.data_shape) != 3:
            raise ConfigError("model.channels_last is for image data (C, H, W); set it false for this data")
        self.channels_last = channels_last
        if channels_last:  # before the EMA copy is made, so that it inherits the format
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        # compiled forwards share the networks' weights; kept out of the module tree (not saved twice)
        wanted = {"g": (self.generator, compile_generator), "d": (self.discriminator, compile_discriminator)}
        for name, (net, on) in wanted.items():
            if on and any(parametrize.is_parametrized(m) for m in net.modules()):
                # spectral norm's in-place power iteration breaks the compiled graph's backward
                # ("modified by an inplace operation", torch 2.14): that network stays eager
                rank_zero_warn(
                    f"model.compile_{'generator' if name == 'g' else 'discriminator'}: this network uses "
                    "spectral norm (a parametrization), whose in-place power iteration torch.compile's "
                    "backward rejects; it runs uncompiled"
                )
                wanted[name] = (net, False)
        self._compiled = {
            name: torch.compile(net, **(compile_options or {})) for name, (net, on) in wanted.items() if on
        }
        if "d" in self._compiled and any(
            reg.weight and not isinstance(reg, _NO_INPUT_GRAD) for reg in regularizers or []
        ):
            rank_zero_warn(
                "model.compile_discriminator: the gradient penalties run D uncompiled (torch.compile cannot "
                "differentiate twice, PyTorch #91469); the loss's D forwards are compiled"
            )
        self.d_path = DiscriminatorPath(
            self.discriminator, self.d_transforms, pack, self.num_classes, compiled=self._compiled.get("d")
        )
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
        self.growth = growth.bind(self.generator, self.discriminator) if growth is not None else None
        if self.growth is not None:
            if replay is not None:
                raise ConfigError(
                    "model.replay keeps fakes of one size, so it cannot follow model.growth; drop one"
                )
            self._grow_to(*self.growth.at(0))
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
        self.step_values: dict[str, Tensor | float] = {}  # the last G step's logged values (see record)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets the module's _current_fx_name (a plain string) around each hook call, 36 times
        # per D-first G step; nn.Module's registry checks made that ~0.1 ms of a 7 ms MLP step (a private
        # name, pinned with lightning <2.7 and checked by tests/test_versions.py)
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # --- sampling ------------------------------------------------------------------------------
    @property
    def sampling_generator(self) -> nn.Module:
        """The EMA generator when there is one, else the raw generator."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    def balanced_labels(self, n: int) -> Tensor:
        """0, 1, ..., K-1, 0, 1, ...: class-balanced labels for sampling and metrics."""
        return torch.arange(n, device=self.device) % max(self.num_classes, 1)

    def _generate(self, g: nn.Module, z: Tensor, y: Tensor | None) -> Tensor:
        g = self._compiled.get("g", g) if g is self.generator else g  # training G: compiled when asked
        return g(z, y) if self.num_classes else g(z)

    def _grow_to(self, stage: int, alpha: float) -> None:
        """Run G, its EMA copy and D at ``stage`` with fade-in ``alpha`` (progressive growing)."""
        nets = [self.generator, self.discriminator]
        nets += [self.generator_ema.module] if self.generator_ema is not None else []
        for net in nets:
            net.stage, net.alpha = stage, alpha

    @torch.no_grad()
    def sample(self, z: Tensor, y: Tensor | None = None, native: bool = False) -> Tensor:
        """Samples in data space from noise ``z`` (eval mode, EMA weights when present). A conditional
        model takes labels ``y``; without them it samples class-balanced labels. While growing, samples
        are upsampled to the data's size (nearest), unless ``native`` asks for the stage's own size."""
        if self.num_classes and y is None:
            y = self.balanced_labels(len(z))
        g = self.sampling_generator
        was_training = g.training
        g.eval()
        try:
            x = self._generate(g, z, y.to(z.device) if y is not None else None)
        finally:
            g.train(was_training)
        return x if self.growth is None or native else Growth.full_size(x, self.data_shape[-1])

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
    def setup(self, stage: str) -> None:
        skip_nvml_probe_without_cuda()

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
        self.step_values = {}
        if self.channels_last:
            real_all = real_all.contiguous(memory_format=torch.channels_last)
        if self.growth is not None:  # this step's stage and fade-in, and the reals at its size
            stage, alpha = self.growth.at(self.global_step)
            self._grow_to(stage, alpha)
            real_all = Growth.reals(real_all, stage, alpha)
            self.record("growth/stage", float(stage))
            self.record("growth/alpha", alpha)
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
                self.record(key, value)
        self._log_step_values()

    # --- logging -------------------------------------------------------------------------------
    def record(self, name: str, value: Tensor | float) -> None:
        """Keep a value of this G step for the loggers (the last one wins, as in Lightning's per-step
        logging); :attr:`step_values` holds them all until the next step."""
        self.step_values[name] = value.detach() if isinstance(value, Tensor) else value

    def _log_step_values(self) -> None:
        """Hand the step's values to ``self.log`` once, and only on the G steps the loggers write
        (every ``log_every_n_steps``, Lightning's rule): each ``self.log`` call costs about as much as a
        small MLP's forward, and on the other steps Lightning drops its value (docs/overhead.md).
        G's loss also goes to the progress bar, when there is one, on every step."""
        trainer, values = self.trainer, dict(self.step_values)
        if trainer.progress_bar_callback is not None and "loss/G/main" in values:
            self.log("loss/G/main", values.pop("loss/G/main"), prog_bar=True)
        every = trainer.log_every_n_steps
        # global_step has counted this step's G update: the logger writes when it is a multiple
        due = every > 0 and self.global_step % every == 0
        if values and (due or trainer.should_stop or trainer.fast_dev_run):
            self.log_dict(values)

    def _lr_schedulers(self) -> list:
        schedulers = self.lr_schedulers()
        return [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]

    # --- evaluation: D's view of held-out real data vs samples (FID & co. are callbacks) ----------
    def _eval_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, prefix: str) -> None:
        real, labels = batch
        # Own seeded noise: evaluation never consumes the training RNG, so it can't change the run.
        rng = torch.Generator(device=self.device).manual_seed(10_007 + batch_idx)
        z = self.draw_latents(len(real), rng)
        y_fake = self.balanced_labels(len(real)) if self.num_classes else None
        fake = self.sample(z, y_fake, native=True)
        if self.growth is not None:  # D at the stage the last G step trained
            real = Growth.reals(real, self.generator.stage, self.generator.alpha)
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
        if self.growth is not None:  # the stage the last saved G step trained (sample, evaluate, resume)
            self._grow_to(*self.growth.at(max(int(checkpoint.get("global_step", 0)) - 1, 0)))
