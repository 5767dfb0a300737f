"""The training-health monitor: its logged values equal hand-computed ones, it catches each injected failure
once (and stops the run when told to, keeping the last checkpoint), and it stays quiet on healthy runs."""

from __future__ import annotations

import logging
import math
from functools import partial

import lightning as L
import pytest
import torch
from conftest import DIGITS_TINY, ROOT, one_error_line, run_cli_subprocess, tiny_args

from gan_lightning.data import GaussianMixture2D
from gan_lightning.health import HealthMonitor, d_accuracy, grad_norm
from gan_lightning.losses import Hinge, LeastSquares, NonSaturating, RaGAN, Wasserstein
from gan_lightning.module import GANModule
from gan_lightning.nets import MLPDiscriminator, MLPGenerator
from gan_lightning.sample import load_module
from gan_lightning.schedules import FixedDSteps

# shrunken windows for runs of tens of steps (the defaults are sized for thousands)
FAST = dict(every_n_steps=1, d_loss_patience=5, d_accuracy_patience=10, trend_window=20)
RING = ["--config", str(ROOT / "configs/toy/ring.yaml"), "--data.init_args.num_samples", "2000"]


def ring_module(d_lr: float = 1e-3, **kwargs) -> GANModule:
    L.seed_everything(0, verbose=False)  # the networks' initial weights
    return GANModule(
        generator=partial(MLPGenerator, latent_dim=2, hidden=16, depth=2),
        discriminator=partial(MLPDiscriminator, hidden=16, depth=2),
        g_optimizer=partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)),
        d_optimizer=partial(torch.optim.Adam, lr=d_lr, betas=(0.5, 0.999)),
        ema_decay=None,
        data_shape=(2,),
        **kwargs,
    )


def fit(module: GANModule, max_steps: int, callbacks: list[L.Callback], **kwargs) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=callbacks,
        **kwargs,
    )
    trainer.fit(module, GaussianMixture2D(kind="ring", num_samples=1024, batch_size=64))
    return trainer


def health_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "health (" in ln]


# --- the values ----------------------------------------------------------------------------------------


def test_grad_norm_is_the_total_l2_norm_over_the_optimizer_parameters():
    a, b, frozen = (torch.nn.Parameter(torch.zeros(n)) for n in (2, 1, 3))
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])  # frozen has no gradient
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b, frozen]}], lr=0.1)
    assert grad_norm(opt).item() == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
    assert grad_norm(torch.optim.SGD([frozen], lr=0.1)) is None


@pytest.mark.parametrize(
    "loss,acc_real,acc_fake",
    [
        (NonSaturating(), 3 / 4, 2 / 4),  # logits: cut at 0
        (Hinge(), 3 / 4, 2 / 4),
        (LeastSquares(), 2 / 4, 4 / 4),  # targets (a, b) = (0, 1): cut at 0.5
        (LeastSquares(a=-1.0, b=1.0, c=0.0), 3 / 4, 2 / 4),  # cut at 0
        (Wasserstein(), 3 / 4, 3 / 4),  # no threshold: the midpoint (1.0 + -0.5) / 2 = 0.25 of the means
        (RaGAN(), 3 / 4, 3 / 4),
    ],
    ids=["non_saturating", "hinge", "lsgan_01", "lsgan_pm1", "wgan", "ragan"],
)
def test_d_accuracy_cuts_scores_at_the_family_decision_threshold(loss, acc_real, acc_fake):
    real = torch.tensor([2.0, 0.4, 1.6, 0.0])  # mean 1.0
    fake = torch.tensor([-1.0, 0.2, -1.6, 0.4])  # mean -0.5
    got = d_accuracy(real, fake, loss.decision_threshold)
    assert [x.item() for x in got] == [acc_real, acc_fake]


class Spy(L.Callback):
    """Placed after the monitor: records each optimizer step's gradients and the module's D scores, and
    what the monitor logged at each step."""

    def __init__(self) -> None:
        self.steps = {"G": 0, "D": 0}
        self.grads: dict[str, list[torch.Tensor]] = {}
        self.rows: list[dict] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        g_opt, d_opt = pl_module.optimizers(use_pl_optimizer=False)
        who = "G" if optimizer is g_opt else "D"
        self.steps[who] += 1
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.grads[who] = [p.grad.clone() for p in params if p.grad is not None]

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.global_step % 2:
            return  # the monitor checks every 2 steps in these tests
        real, fake = pl_module.last_d_scores
        by_hand = {
            # sqrt(sum of squares) over every parameter of the network, in float64
            f"grad_norm/{who}": math.sqrt(sum((g.double() ** 2).sum().item() for g in grads))
            for who, grads in self.grads.items()
        }
        cut = pl_module.loss.decision_threshold
        cut = (real.mean().item() + fake.mean().item()) / 2 if cut is None else cut
        by_hand["scores/acc_real"] = sum(x > cut for x in real.flatten().tolist()) / real.numel()
        by_hand["scores/acc_fake"] = sum(x < cut for x in fake.flatten().tolist()) / fake.numel()
        by_hand["scores/wasserstein"] = real.double().mean().item() - fake.double().mean().item()
        logged = {k: trainer.callback_metrics[k].item() for k in by_hand if k in trainer.callback_metrics}
        self.rows.append({"step": trainer.global_step, "by_hand": by_hand, "logged": logged})


@pytest.mark.parametrize("order", ["d_first", "g_first", "simultaneous", "fused"])
def test_logged_values_equal_hand_computed_ones_in_every_update_order(order):
    spy = Spy()
    module = ring_module(loss=Wasserstein(), order=order, schedule=FixedDSteps(2))
    trainer = fit(module, 4, [HealthMonitor(every_n_steps=2), spy])
    # on_before_optimizer_step ran inside every optimizer step, the uncounted D steps included
    assert spy.steps == {"G": 4, "D": int(module.d_steps_done)} and int(module.d_steps_done) == 8
    assert trainer.global_step == 4
    assert [row["step"] for row in spy.rows] == [2, 4]  # every_n_steps=2: the steps ending on G steps 2, 4
    for row in spy.rows:
        assert row["logged"].keys() == row["by_hand"].keys()
        for key, value in row["by_hand"].items():
            assert row["logged"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_the_wasserstein_estimate_is_logged_for_critics_only():
    spy = Spy()
    fit(ring_module(), 2, [HealthMonitor(every_n_steps=2), spy])
    assert "scores/acc_real" in spy.rows[-1]["logged"] and "scores/wasserstein" not in spy.rows[-1]["logged"]


# --- injected failures ---------------------------------------------------------------------------------


def test_a_d_with_100x_learning_rate_is_caught_each_warning_once(caplog):
    monitor = HealthMonitor(**FAST)
    with caplog.at_level(logging.WARNING, logger="gan_lightning.health"):
        fit(ring_module(d_lr=0.1), 30, [monitor])
    # D wins within 10 steps: from step 9 its loss is below 0.01 and it is right on every sample, while
    # G's loss climbs from 0.8 to 7
    assert monitor.fired == {"d_loss": 14, "d_accuracy": 19, "trend": 20}
    lines = health_lines(caplog.text)
    assert len(lines) == 3 and all(sum(f"health ({c})" in ln for ln in lines) == 1 for c in monitor.fired)
    assert "health (d_accuracy) at generator step 19: D has been right on every real" in caplog.text
    assert "lower D's learning rate" in caplog.text


def test_the_same_run_at_the_normal_learning_rate_stays_quiet(caplog):
    monitor = HealthMonitor(**FAST)
    with caplog.at_level(logging.WARNING, logger="gan_lightning.health"):
        fit(ring_module(d_lr=1e-3), 30, [monitor])
    assert monitor.fired == {} and not health_lines(caplog.text)


class ScaledLoss(NonSaturating):
    """The non-saturating loss times 1e6: Adam's steps are unchanged, the gradients are huge."""

    def d_loss(self, real_out, fake_out, generator=None):
        return 1e6 * super().d_loss(real_out, fake_out)


def test_an_exploding_gradient_is_caught_once_it_lasts_its_patience(caplog):
    monitor = HealthMonitor(grad_norm_patience=5)  # every_n_steps: the trainer's log_every_n_steps
    with caplog.at_level(logging.WARNING, logger="gan_lightning.health"):
        fit(ring_module(loss=ScaledLoss()), 16, [monitor], log_every_n_steps=5)
    assert monitor.fired == {"grad_norm": 10}  # above the limit at the checks of steps 5 and 10
    (line,) = health_lines(caplog.text)
    assert "health (grad_norm) at generator step 10: D's gradient norm has stayed above 100" in line
    assert "exploding gradients" in line


def test_a_nan_still_ends_with_the_divergence_error_and_an_intact_checkpoint(tmp_path):
    res = run_cli_subprocess(
        [
            "fit",
            *RING,
            *tiny_args(tmp_path / "run", max_steps=6),
            "--health.every_n_steps",
            "1",
            "--model.loss",
            "support.NaNAfterCalls",
            "--model.loss.init_args.calls",
            "4",
        ]
    )
    assert "D loss became nan at generator step 4" in one_error_line(res)
    assert not health_lines(res.stderr)
    last = load_module(tmp_path / "run/lightning_logs/version_0/checkpoints/last.ckpt")
    assert all(torch.isfinite(v.float()).all() for v in last.state_dict().values())


def test_the_stop_action_ends_the_run_with_one_error_line_and_keeps_the_last_checkpoint(tmp_path):
    res = run_cli_subprocess(
        [
            "fit",
            *RING,
            *tiny_args(tmp_path / "run", max_steps=6),  # checkpoints at G steps 3 and 6
            "--health.every_n_steps",
            "4",
            "--health.grad_norm_limit",
            "0",  # any gradient "explodes": the check fires at its first step, 4
            "--health.grad_norm_patience",
            "0",
            "--health.grad_norm_action",
            "stop",
        ]
    )
    assert "health (grad_norm) at generator step 4" in one_error_line(res)
    ckpts = tmp_path / "run/lightning_logs/version_0/checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step=0000003.ckpt"]  # no step 4
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 3
    assert load_module(ckpts / "last.ckpt").generator is not None  # loadable, as `sample` loads it


# --- healthy runs --------------------------------------------------------------------------------------


def test_a_short_digits_run_stays_quiet(tmp_path):
    res = run_cli_subprocess(
        [
            "fit",
            *DIGITS_TINY,
            *tiny_args(tmp_path / "run", max_steps=30),
            *[f"--health.{k}={v}" for k, v in FAST.items()],
        ]
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert not health_lines(res.stderr), health_lines(res.stderr)


def test_the_health_config_shows_exactly_the_code_defaults():
    import inspect

    import yaml

    shown = yaml.safe_load((ROOT / "configs/callbacks/health.yaml").read_text())["health"]
    defaults = {k: p.default for k, p in inspect.signature(HealthMonitor).parameters.items()}
    assert shown == defaults  # every setting, none stated differently from the code


@pytest.mark.slow
def test_a_stop_under_ddp_stops_every_rank_at_the_same_step(tmp_path):
    res = run_cli_subprocess(
        [
            "fit",
            *RING,
            *tiny_args(tmp_path, max_steps=6),
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp_find_unused_parameters_true",
            "--health.every_n_steps",
            "4",
            "--health.grad_norm_limit",
            "0",
            "--health.grad_norm_patience",
            "0",
            "--health.grad_norm_action",
            "stop",
        ],
        timeout=240,
    )
    assert res.returncode == 2, res.stderr[-3000:]
    assert "health (grad_norm) at generator step 4" in res.stderr and "Traceback" not in res.stderr
    ckpts = tmp_path / "lightning_logs/version_0/checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 3
