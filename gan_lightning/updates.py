"""The update steps of :class:`~gan_lightning.module.GANModule`: one D step, one G step, and the joint
(simultaneous, fused) updates, with the penalties, the ACGAN terms, the G-side objectives and the
precision plugin's steps they share. A mixin, so the module's file holds its set-up, sampling and loop
and this one what a step does (every method reads the module's attributes through ``self``).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import Strategy
from torch import Tensor

from gan_lightning.d_path import DOutput
from gan_lightning.errors import ConfigError, TrainingDivergedError
from gan_lightning.nets.layers import orthogonal_penalty
from gan_lightning.precision import grad_scaler, rescale_gradients, step_was_skipped, unscaled_grad


def _step_without_counting(strategy: Strategy, opt: LightningOptimizer) -> None:
    """``opt.step()`` without advancing ``trainer.global_step``, so that it counts G steps only.

    ``LightningOptimizer.step`` counts a step around the strategy's ``optimizer_step``; calling that public
    ``Strategy.optimizer_step`` directly runs the same precision plugin (the AMP scaler's unscale, inf
    check and step), the ``on_before_optimizer_step`` hooks and the strategy, without the count.
    """
    strategy.optimizer_step(opt.optimizer, closure=lambda: None)


class UpdateSteps:
    """D, G and joint update steps; mixed into GANModule (see the module docstring there)."""

    def _regularize(self, loss: Tensor, real: Tensor, fake: Tensor, y: Tensor | None) -> Tensor:
        """Add the due regularizers' scaled penalties to the D loss (and log each). ``real`` and ``fake``
        are D's prepared inputs (see :mod:`gan_lightning.d_path`), ``y`` the real labels."""
        if not self.regularizers:
            return loss
        d_step = int(self.d_steps_done)  # a host sync: only when some regularizer asks
        for reg in self.regularizers:
            if reg.is_due(d_step):
                term = reg.scaled_penalty(
                    self.d_path.scorer(y), real, fake, self.rng, grad_scaler(self.trainer)
                )
                self.record(f"loss/D/{type(reg).__name__.lower()}", term)
                loss = loss + term
        return loss

    def _acgan(self, loss: Tensor, out: DOutput, y: Tensor | None, who: str) -> Tensor:
        """ACGAN (Odena et al. 2017): + weight * cross-entropy of the auxiliary classifier (reals for D,
        fakes for G)."""
        if out.class_logits is None or y is None:
            return loss
        term = F.cross_entropy(out.class_logits, y)
        self.record(f"loss/{who}/acgan", term)
        return loss + self.acgan_weight * term

    def _weight_penalties(self, loss: Tensor, name: str) -> Tensor:
        """+ the penalties on the weights of G ("g") or D ("d"), each logged: historical averaging, and
        BigGAN's orthogonal regularization on G."""
        net = self.generator if name == "g" else self.discriminator
        penalty = self.historical_averaging.penalty(name, net) if self.historical_averaging else None
        if penalty is not None:
            self.record(f"loss/{name.upper()}/historical_averaging", penalty)
            loss = loss + penalty
        if name == "g" and self.g_orthogonal_reg:
            term = orthogonal_penalty(self.generator)
            self.record("loss/G/orthogonal", term)
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
            self.record(f"amp/skipped_steps/{who}", count.float())

    def _finish_d_step(self, d_opt: LightningOptimizer, real_out: Tensor, fake_out: Tensor) -> None:
        self._step(d_opt, "D")
        for reg in self.regularizers:
            reg.after_d_step(self.discriminator)
        self.d_steps_done.add_(1)  # in place: `+=` re-registers the buffer through Module.__setattr__
        real_scores, fake_scores = real_out.detach(), fake_out.detach()
        for transform in self.d_transforms:
            if hasattr(transform, "observe_real_scores"):
                transform.observe_real_scores(real_scores)
        self.last_d_scores = (real_scores, fake_scores)  # read by HealthMonitor (D's accuracy)
        self.record("scores/real", real_scores.mean())
        self.record("scores/fake", fake_scores.mean())

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
        # G frozen under autocast only. Its fakes are made under no_grad anyway, but with G's weights
        # requiring grad, autocast caches their bf16 copies made here without autograd history, and torch
        # 2.6 (the lowest declared) reuses them in the G step: its loss then has no grad (tests/test_amp.py,
        # CI's lowest job). In full precision the toggle would only cost time (docs/overhead.md)
        autocast = torch.is_autocast_enabled(self.device.type)
        with self.toggled_optimizer(d_opt) if autocast else contextlib.nullcontext():
            fake, y_fake = self._fakes_for_d(len(real))
            real_out, real_in, y_real = self.d_path.run(real, labels, self.rng, with_logits=True)
            fake_out, fake_in, _ = self.d_path.run(fake, y_fake, self.rng)
            loss = self.loss.d_loss(real_out.scores, fake_out.scores, self.rng)
            self.record("loss/D/main", loss)
            main = self._acgan(loss, real_out, y_real, "D")
            loss = self._weight_penalties(self._regularize(main, real_in, fake_in, y_real), "d")
            self._check_finite(loss, "D", main)
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            self._record_history("d")
            self._finish_d_step(d_opt, real_out.scores, fake_out.scores)

    def g_step(self, real: Tensor, g_opt: LightningOptimizer, labels: Tensor | None = None) -> None:
        """One G update. ``real`` is only read by relativistic losses, feature matching and the unrolled
        look-ahead."""
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
            self.record("loss/G/main", loss)
            if self.unrolled is not None:
                d_opt = self.optimizers()[1].optimizer
                loss = self.unrolled.g_loss(
                    self.discriminator,
                    d_opt,
                    functools.partial(self.loss.d_loss, generator=self.rng),
                    self.loss.g_loss,
                    real_in,
                    fake_in,
                    y_real,
                    y_in,
                )
                self.record("loss/G/unrolled", loss)
            if self.feature_matching is not None:
                distance = self.feature_matching.distance(self.discriminator, real_in, fake_in, y_real, y_in)
                self.record("loss/G/feature_matching", distance)
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
        d_loss = self.loss.d_loss(real_out.scores, fake_out_sg.scores, self.rng)
        g_loss = self.loss.g_loss(fake_out.scores, real_out.scores)
        # 0 in value; its D gradients cancel exactly, leaving G's gradient of the G loss with D held fixed
        g_term = g_loss - self.loss.g_loss(fake_out_sg.scores, real_out.scores)
        if fake_out.class_logits is not None:
            g_term = self._acgan(g_term, fake_out, y_fake, "G") - self._acgan(
                0.0 * g_term, fake_out_sg, y_fake, "G"
            )
        if self.feature_matching is not None:  # the same stop-gradient form: D's gradients cancel
            fm = self.feature_matching
            distance = fm.distance(self.discriminator, real_in, fake_in, y_real, y_in)
            self.record("loss/G/feature_matching", distance)
            g_term = fm.combine(
                g_term, distance - fm.distance(self.discriminator, real_in, fake_in_sg, y_real, y_in)
            )
        g_term = self._weight_penalties(g_term, "g")
        self.record("loss/D/main", d_loss)
        self.record("loss/G/main", g_loss)
        d_main = self._acgan(d_loss, real_out, y_real, "D")
        d_loss = self._weight_penalties(self._regularize(d_main, real_in, fake_in_sg, y_real), "d")
        weight = self.simultaneous_g_weight
        g_term = g_term if weight == 1.0 else weight * g_term
        loss = d_loss + g_term
        self._check_finite(loss, "simultaneous", lambda: d_main + g_term)
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
        d_loss = self.loss.d_loss(real_scores, fake_scores, self.rng)
        g_loss = self.loss.g_loss(fake_scores, real_scores)
        self.record("loss/D/main", d_loss)
        self.record("loss/G/main", g_loss)
        if out.class_logits is not None:
            real_logits, fake_logits = out.class_logits.split([len(real_in), len(leaf)])
            d_loss = self._acgan(d_loss, DOutput(real_scores, real_logits), y_real, "D")
            g_loss = self._acgan(g_loss, DOutput(fake_scores, fake_logits), y_fake, "G")
        if self.feature_matching is not None:
            distance = self.feature_matching.distance(self.discriminator, real_in, leaf, y_real, y_in)
            self.record("loss/G/feature_matching", distance)
            g_loss = self.feature_matching.combine(g_loss, distance)
        d_main = d_loss
        d_loss = self._weight_penalties(self._regularize(d_main, real_in, leaf.detach(), y_real), "d")
        g_weights = self._weight_penalties(g_loss.new_zeros(()), "g")  # on G's weights, not its images
        self._check_finite(d_loss + g_loss + g_weights, "fused", lambda: d_main + g_loss + g_weights)
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

    def _check_finite(
        self, loss: Tensor, who: str, unpenalized: Tensor | Callable[[], Tensor] | None = None
    ) -> None:
        """Stop the run on a non-finite loss. Under 16-mixed, a penalty whose input gradients overflowed
        at the loss scale is not divergence when the rest of the loss (``unpenalized``, or a function
        that makes it, called only then) is finite: its inf reaches D's gradients, and the GradScaler
        skips the step (counted) and halves its scale."""
        # the loss is a scalar: one read (a host sync, as any check is) instead of isfinite + all
        if math.isfinite(loss.item()):
            return
        scaler = grad_scaler(self.trainer)
        # below scale 1 the true input gradient itself overflows fp16: that is divergence too
        overflow = scaler is not None and unpenalized is not None and scaler.get_scale() >= 1.0
        if overflow and math.isfinite((unpenalized() if callable(unpenalized) else unpenalized).item()):
            return
        raise TrainingDivergedError(
            f"the {who} loss became {loss.item()} at generator step {self.global_step}: the run "
            "diverged; its checkpoints were not touched. Start a new run from the last one's "
            "weights with lower learning rates (or a gradient penalty, or spectral norm): "
            "fit --config RUN_DIR/config.yaml --init_from RUN_DIR/checkpoints/last.ckpt "
            "--model.d_optimizer.init_args.lr ... (--ckpt_path resumes the same run, so it would "
            "refuse the changed config)"
        )
