"""Labels end to end and the one way into D."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DIGITS_TINY, ROOT, run_cli, run_cli_subprocess, tiny_args
from test_module import toy_data, toy_module, trainer
from torch import nn

from gan_lightning.checkpoints import read_checkpoint
from gan_lightning.d_path import DiscriminatorPath, pack
from gan_lightning.errors import ConfigError
from gan_lightning.regularizers import R1, GradientPenalty


class Offset(nn.Module):
    """A D-input transform that shifts every input far from the data (x + 1000)."""

    def forward(self, x, generator=None):
        return x + 1000.0


class SeesOnlyTransformed(nn.Module):
    """Wraps D: records the smallest input value of every forward."""

    def __init__(self, d):
        super().__init__()
        self.d, self.seen = d, []

    def forward(self, x, y=None):
        self.seen.append(float(x.detach().min()))
        return self.d(x)


@pytest.mark.parametrize("order", ["d_first", "g_first", "simultaneous", "fused"])
def test_every_d_forward_of_every_order_and_penalty_goes_through_the_transforms(tmp_path, order):
    module = toy_module(
        order=order, regularizers=[R1(weight=1.0), GradientPenalty(weight=1.0)], d_transforms=[Offset()]
    )
    spy = SeesOnlyTransformed(module.discriminator)
    module.d_path = DiscriminatorPath(spy, module.d_transforms)
    trainer(tmp_path, max_steps=2).fit(module, toy_data())
    assert len(spy.seen) >= 2 * 3  # the loss's forwards and both penalties', on each step
    assert min(spy.seen) > 900  # none of them saw an untransformed input


def test_packing_groups_consecutive_samples_along_channels_and_penalties_see_packed_inputs(tmp_path):
    x = torch.arange(4 * 2 * 1 * 1, dtype=torch.float).reshape(4, 2, 1, 1)
    assert pack(x, 2).shape == (2, 4, 1, 1) and pack(x, 2)[1].flatten().tolist() == [4, 5, 6, 7]
    with pytest.raises(ConfigError, match="cannot be packed in groups of 3"):
        pack(x, 3)
    module = toy_module(pack=2, regularizers=[GradientPenalty(weight=1.0)])
    assert module.discriminator.net[0].in_features == 4  # D's first layer sees m * 2 features
    spy = SeesOnlyTransformed(module.discriminator)
    shapes = []
    spy.forward = lambda x, y=None: shapes.append(tuple(x.shape)) or module.discriminator(x)
    module.d_path = DiscriminatorPath(spy, module.d_transforms, pack=2)
    trainer(tmp_path, max_steps=1).fit(module, toy_data())
    assert set(shapes) == {(16, 4)}  # batch 32 -> 16 packed pairs, for the loss and the interpolates


def test_a_conditional_model_on_unlabeled_data_is_a_clear_error():
    with pytest.raises(ConfigError, match="no class labels"):
        toy_module(conditional=True, num_classes=0)


def test_conditional_networks_get_the_labels_and_the_fixed_grid_has_one_row_per_class():
    from functools import partial

    from gan_lightning.module import GANModule
    from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator

    m = GANModule(
        generator=partial(DCGANGenerator, latent_dim=8, width=8),
        discriminator=partial(DCGANDiscriminator, width=8),
        conditional=True,
        num_classes=10,
        num_fixed_samples=80,
        data_shape=(1, 28, 28),
    )
    assert m.fixed_labels.view(10, 8).tolist() == [[c] * 8 for c in range(10)]
    z = torch.randn(4, 8)
    a = m.sample(z, torch.tensor([0, 0, 0, 0]))
    b = m.sample(z, torch.tensor([7, 7, 7, 7]))
    assert not torch.allclose(a, b)  # the label changes G's output for the same z


@pytest.mark.slow
def test_conditional_digits_train_and_sample_asks_for_a_class(tmp_path):
    cfg = [
        *DIGITS_TINY,
        "--config",
        str(ROOT / "configs/experiment/conditional_digits.yaml"),
        "--model.generator.init_args.width",
        "8",
        "--model.discriminator.init_args.width",
        "8",
    ]
    run_cli(["fit", *cfg, *tiny_args(tmp_path / "run", max_steps=3)])
    ckpt = tmp_path / "run/lightning_logs/version_0/checkpoints/last.ckpt"
    res = run_cli_subprocess(
        [
            "sample",
            "--ckpt_path",
            str(ckpt),
            "--labels",
            "3",
            "--num_samples",
            "6",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert np.load(tmp_path / "s/labels.npy").tolist() == [3] * 6
    res = run_cli_subprocess(
        ["sample", "--ckpt_path", str(ckpt), "--per_class", "2", "--out", str(tmp_path / "p")]
    )
    assert res.returncode == 0 and np.load(tmp_path / "p/samples.npy").shape == (20, 1, 28, 28)
    bad = run_cli_subprocess(
        ["sample", "--ckpt_path", str(ckpt), "--labels", "12", "--out", str(tmp_path / "q")]
    )
    assert bad.returncode == 2 and "not a class of this model" in bad.stderr


def test_conditional_fit_on_the_unlabeled_ring_fails_in_one_line(tmp_path):
    res = run_cli_subprocess(
        [
            "fit",
            "--config",
            str(ROOT / "configs/toy/ring.yaml"),
            *tiny_args(tmp_path),
            "--model.conditional",
            "true",
        ]
    )
    assert (
        res.returncode == 2
        and "error: model.conditional is true but the data has no class labels" in res.stderr
    )


@pytest.mark.slow
def test_d_side_tricks_compose_in_one_run_and_log_their_values(tmp_path):
    tricks = ROOT / "configs/tricks"
    cfg = [
        *DIGITS_TINY,
        "--config",
        str(tricks / "adaptive_diffaugment.yaml"),
        "--config",
        str(tricks / "pacgan2.yaml"),
        "--config",
        str(tricks / "experience_replay.yaml"),
        "--config",
        str(tricks / "label_smoothing.yaml"),
        "--config",
        str(ROOT / "configs/regularizer/r1.yaml"),
    ]
    run_cli(
        [
            "fit",
            *cfg,
            *tiny_args(tmp_path, max_steps=5),
            "--trainer.logger",
            "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.log_every_n_steps",
            "1",
        ]
    )
    metrics = (tmp_path / "lightning_logs/version_0/metrics.csv").read_text().splitlines()[0]
    assert "augment/p" in metrics and "loss/D/r1" in metrics


@pytest.mark.slow
def test_a_resumed_conditional_run_with_adaptive_augmentation_and_instance_noise_is_the_same_run(tmp_path):
    """Labels, DiffAugment's adaptive p (target -1: it rises every step) and instance noise's sigma in
    play: 2 + 2 steps == 4 steps."""
    transforms = (
        "[{class_path: gan_lightning.tricks.DiffAugment, init_args: {adaptive: true, target: -1.0, "
        "adjust_every: 1, speed_kimg: 0.05}}, "
        "{class_path: gan_lightning.tricks.InstanceNoise, init_args: {anneal_steps: 3}}]"
    )
    cfg = [*DIGITS_TINY, "--config", str(ROOT / "configs/experiment/conditional_digits.yaml")]
    cfg += ["--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8"]
    cfg += ["--model.d_transforms", transforms]
    run_cli(["fit", *cfg, *tiny_args(tmp_path / "full", max_steps=4)])
    run_cli(["fit", *cfg, *tiny_args(tmp_path / "half", max_steps=2)])
    half = tmp_path / "half/lightning_logs/version_0/checkpoints/last.ckpt"
    run_cli(["fit", *cfg, *tiny_args(tmp_path / "resumed", max_steps=4), "--ckpt_path", str(half)])
    first, full, resumed = (
        read_checkpoint(tmp_path / f"{name}/lightning_logs/version_0/checkpoints/last.ckpt")["state_dict"]
        for name in ("half", "full", "resumed")
    )
    assert full.keys() == resumed.keys()
    assert all(torch.equal(v, resumed[k]) for k, v in full.items())
    p = "d_transforms.0.p"
    assert float(full[p]) > 0 and float(full[p]) != float(first[p])  # p moved, in both halves
