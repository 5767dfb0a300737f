"""Update orders, schedules, regularizers and LR schedulers inside the real training loop."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from test_module import Spy, toy_data, toy_module, trainer

from gan_lightning.losses import RSGAN, Hinge, NonSaturating, RaGAN, RaLSGAN, Wasserstein
from gan_lightning.module import GANModule
from gan_lightning.regularizers import R1, GradientPenalty, WeightClipping
from gan_lightning.schedules import FixedDSteps, WGANSchedule
from gan_lightning.tricks.g_objectives import UnrolledD

ZERO_LR = partial(torch.optim.SGD, lr=0.0)  # gradients are formed, weights stay put ("D held fixed")


class GradientProbe(GANModule):
    """One training step that computes the gradients of every update order on the same real batch and
    the same noise, with lr 0 so no update changes the weights the next one sees."""

    grads: dict

    def training_step(self, batch, batch_idx):
        real, _ = batch
        g_opt, d_opt = self.optimizers()
        z = torch.randn(len(real), self.latent_dim, generator=torch.Generator().manual_seed(7))
        self.noise = lambda n: z  # every update below sees the same fake batch

        def snap():
            return [p.grad.clone() for p in self.generator.parameters()], [
                p.grad.clone() for p in self.discriminator.parameters()
            ]

        self.d_step(real, d_opt)
        d_grads = [p.grad.clone() for p in self.discriminator.parameters()]
        self.g_step(real, g_opt)
        g_grads = [p.grad.clone() for p in self.generator.parameters()]
        self.grads = {"alternating": (g_grads, d_grads)}
        self.simultaneous_step(real, g_opt, d_opt)
        self.grads["simultaneous"] = snap()
        self.fused_step(real, g_opt, d_opt)
        self.grads["fused"] = snap()


FAMILIES = [NonSaturating(), Hinge(), Wasserstein(), RSGAN(), RaGAN(), RaLSGAN()]


@pytest.mark.parametrize("loss", FAMILIES, ids=repr)
def test_simultaneous_and_fused_steps_match_alternating_gradients_with_d_held_fixed(tmp_path, loss):
    module = toy_module(GradientProbe, loss=loss, g_optimizer=ZERO_LR, d_optimizer=ZERO_LR, ema_decay=None)
    trainer(tmp_path, max_steps=1).fit(module, toy_data())
    g_ref, d_ref = module.grads["alternating"]
    assert any(g.abs().sum() > 0 for g in g_ref) and any(d.abs().sum() > 0 for d in d_ref)
    for order in ("simultaneous", "fused"):
        g, d = module.grads[order]
        for a, b in zip(g_ref + d_ref, g + d):
            assert torch.allclose(a, b, atol=1e-6, rtol=0), order


def test_g_first_updates_g_before_d(tmp_path):
    module = toy_module(Spy, schedule=FixedDSteps(2), order="g_first")
    module.changed = []
    trainer(tmp_path, max_steps=2).fit(module, toy_data())
    assert module.changed == [("G step", True, False), ("D step", False, True), ("D step", False, True)] * 2


@pytest.mark.parametrize("order", ["simultaneous", "fused"])
def test_one_backward_orders_update_both_networks_and_count_one_g_step(tmp_path, order):
    module = toy_module(order=order, schedule=FixedDSteps(2))
    g0 = [p.clone() for p in module.generator.parameters()]
    d0 = [p.clone() for p in module.discriminator.parameters()]
    t = trainer(tmp_path, max_steps=4)
    t.fit(module, toy_data())
    assert t.global_step == 4 and int(module.d_steps_done) == 8
    assert not all(torch.equal(a, b) for a, b in zip(g0, module.generator.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(d0, module.discriminator.parameters()))


def test_wgan_schedule_drives_the_number_of_d_steps(tmp_path):
    schedule = WGANSchedule(n_critic=2, burst_d_steps=4, burst_first_g_steps=2, burst_every=5)
    module = toy_module(schedule=schedule, loss=Wasserstein(), regularizers=[WeightClipping(0.05)])
    trainer(tmp_path, max_steps=7).fit(module, toy_data())
    # G steps 0, 1 (first two) and 5 (every 5th) are bursts of 4; the others take 2
    assert int(module.d_steps_done) == schedule.total_d_steps(7) == 4 + 4 + 2 + 2 + 2 + 4 + 2


def test_weight_clipping_keeps_every_critic_weight_within_c_during_training(tmp_path):
    module = toy_module(loss=Wasserstein(), regularizers=[WeightClipping(0.01)])
    trainer(tmp_path, max_steps=5).fit(module, toy_data())
    assert max(p.abs().max().item() for p in module.discriminator.parameters()) <= 0.01


class CountingR1(R1):
    calls: list

    def penalty(self, discriminator, real, fake, generator=None, scaler=None):
        self.calls.append(1)
        return super().penalty(discriminator, real, fake, generator, scaler)


def test_lazy_regularizer_runs_every_n_d_steps_in_the_loop(tmp_path):
    reg = CountingR1(weight=1.0, every=4)
    reg.calls = []
    module = toy_module(regularizers=[reg], schedule=FixedDSteps(2))
    trainer(tmp_path, max_steps=8).fit(module, toy_data())
    assert len(reg.calls) == 16 // 4  # D steps 0, 4, 8, 12


def test_lr_schedulers_step_once_per_generator_step_and_ttur_keeps_separate_rates(tmp_path):
    module = toy_module(
        g_optimizer=partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.9)),
        d_optimizer=partial(torch.optim.Adam, lr=4e-3, betas=(0.5, 0.99)),
        g_lr_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
        d_lr_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.1),
        schedule=FixedDSteps(3),
    )
    trainer(tmp_path, max_steps=4).fit(module, toy_data())
    g_opt, d_opt = (o.optimizer for o in module.optimizers())
    assert g_opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**4)
    assert d_opt.param_groups[0]["lr"] == pytest.approx(4e-3 * 0.1**2)  # per G step, not per D step
    assert g_opt.param_groups[0]["betas"] == (0.0, 0.9) and d_opt.param_groups[0]["betas"] == (0.5, 0.99)


def _critic_grad_norm_on_interpolates(tmp_path, regularizers) -> float:
    module = toy_module(
        loss=Wasserstein(),
        regularizers=regularizers,
        schedule=FixedDSteps(5),
        d_optimizer=partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.9)),
        g_optimizer=ZERO_LR,  # a fixed generator: the critic converges against a fixed fake distribution
        ema_decay=None,
    )
    L.seed_everything(0)
    trainer(tmp_path, max_steps=60).fit(module, toy_data())
    real = toy_data(seed=1)
    real.setup("fit")
    x = real.splits["train"].data[:256]
    fake = module.generator(torch.randn(256, module.latent_dim)).detach()
    x_hat = GradientPenalty().interpolate(x, fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(module.discriminator(x_hat).sum(), x_hat)
    return grad.norm(dim=1).mean().item()


def test_wgan_gp_in_the_loop_pulls_critic_gradient_norm_toward_one(tmp_path):
    with_gp = _critic_grad_norm_on_interpolates(tmp_path / "gp", [GradientPenalty(weight=10.0)])
    without = _critic_grad_norm_on_interpolates(tmp_path / "plain", [])
    assert abs(with_gp - 1.0) < 0.2, with_gp  # measured 0.98
    assert without > 3.0, without  # measured 7.0: the unconstrained critic's slope keeps growing


class DStepGradients(GANModule):
    """One D step on a fresh module: which networks got a gradient (then the G step that ends the step)."""

    def training_step(self, batch, batch_idx):
        real, _ = batch
        g_opt, d_opt = self.optimizers()
        self.d_step(real, d_opt)
        self.seen = (
            [p.grad for p in self.generator.parameters()],
            [p.grad for p in self.discriminator.parameters()],
        )
        self.g_step(real, g_opt)


def test_a_d_step_forms_no_generator_gradient_and_leaves_nothing_frozen(tmp_path):
    module = toy_module(DStepGradients, ema_decay=None)
    trainer(tmp_path, max_steps=1).fit(module, toy_data())
    g_grads, d_grads = module.seen
    assert all(g is None for g in g_grads)
    assert all(d is not None and d.abs().sum() > 0 for d in d_grads)
    assert all(p.requires_grad for p in module.generator.parameters())  # nothing left frozen


class RecordsItsRNG(NonSaturating):
    """Random real targets (a per-sample draw), recording the RNG each D loss draws them from."""

    def d_loss(self, real_out, fake_out, generator=None):
        self.rngs.append(generator)
        return super().d_loss(real_out, fake_out, generator)


class GPRecordsItsRNG(GradientPenalty):
    def penalty(self, discriminator, real, fake, generator=None, scaler=None):
        self.rngs.append(generator)
        return super().penalty(discriminator, real, fake, generator, scaler)


@pytest.mark.parametrize("order", ["d_first", "g_first", "simultaneous", "fused", "unrolled"])
def test_random_targets_and_penalties_draw_from_the_modules_checkpointed_rng_in_every_order(tmp_path, order):
    """Until they became call arguments, the D loss got the module's RNG only from ``d_step``: the
    simultaneous and fused orders drew label-smoothing targets from the global RNG, which a resume does
    not restore."""
    loss, gp = RecordsItsRNG(real_target_range=(0.7, 1.2)), GPRecordsItsRNG(weight=1.0)
    loss.rngs, gp.rngs = [], []
    extra = {"unrolled": UnrolledD(k=1)} if order == "unrolled" else {"order": order}
    module = toy_module(loss=loss, regularizers=[gp], **extra)
    trainer(tmp_path, max_steps=2).fit(module, toy_data())
    assert len(loss.rngs) >= 2 and len(gp.rngs) == 2
    assert all(rng is module.rng for rng in loss.rngs + gp.rngs)
