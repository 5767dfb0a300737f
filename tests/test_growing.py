"""Progressive growing's training loop: the stage/alpha schedule, each stage's reals, the grids per stage,
and exact resume mid-fade and across a stage boundary."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, one_error_line, run_cli, run_cli_subprocess, tiny_args

from gan_lightning.checkpoints import read_checkpoint
from gan_lightning.errors import ConfigError
from gan_lightning.growing import Growth
from gan_lightning.nets import DCGANGenerator, PGGANDiscriminator, PGGANGenerator
from gan_lightning.sample import load_module


def bound(stage_steps, fade_steps=None, size=32) -> Growth:
    shape = (1, size, size)
    return Growth(stage_steps, fade_steps).bind(
        PGGANGenerator(shape, width=8), PGGANDiscriminator(shape, width=8)
    )


def test_alpha_and_stage_follow_the_schedule_step_by_step():
    growth = bound([3, 4, 2], [2, 0, 1], size=32)  # stages 4, 8, 16, 32 px; stage 2 does not fade
    assert growth.num_stages == 4 and growth.stage_ends() == [3, 7, 9]
    expected = (
        [(0, 1.0)] * 3 + [(1, 0.0), (1, 0.5), (1, 1.0), (1, 1.0)] + [(2, 1.0)] * 2 + [(3, 0.0), (3, 1.0)]
    )
    assert [growth.at(step) for step in range(11)] == expected
    assert growth.at(10**6) == (3, 1.0)


def test_fade_steps_default_to_half_of_each_stage():
    growth = bound(4, size=16)
    assert [growth.at(step) for step in range(10)] == [
        (0, 1.0), (0, 1.0), (0, 1.0), (0, 1.0),
        (1, 0.0), (1, 0.5), (1, 1.0), (1, 1.0),
        (2, 0.0), (2, 0.5),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: bound([3, 3], size=32), "stage_steps has 2 entries but the networks grow through 3"),
        (lambda: bound(4, [1, 5, 1], size=32), "stage 1 has 4 steps and a fade-in of 5"),
        (
            lambda: Growth(4).bind(DCGANGenerator((1, 32, 32)), PGGANDiscriminator((1, 32, 32))),
            "DCGANGenerator does not",
        ),
        (
            lambda: Growth(4).bind(PGGANGenerator((1, 32, 32)), PGGANDiscriminator((1, 16, 16))),
            "different numbers of stages",
        ),
    ],
)
def test_impossible_schedules_are_config_errors(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_reals_of_a_stage_are_box_filtered_and_crossfaded_as_g_is():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    four = Growth.reals(x, 0, 1.0)  # 8 -> 4: means of 2x2 blocks
    assert four[0, 0, 0, 0] == (0 + 1 + 8 + 9) / 4 and four.shape == (1, 1, 4, 4)
    assert torch.equal(Growth.reals(x, 1, 1.0), x)
    # stage 1 at alpha 0.25: lerp(nearest-up(pool(x)), x, 0.25); top-left pixel: 4.5 + 0.25 * (0 - 4.5)
    faded = Growth.reals(x, 1, 0.25)
    assert faded[0, 0, 0, 0].item() == pytest.approx(4.5 - 0.25 * 4.5)
    assert faded[0, 0, 1, 1].item() == pytest.approx(4.5 + 0.25 * (9 - 4.5))
    assert torch.equal(Growth.reals(x, 1, 0.0)[..., :2, :2], torch.full((1, 1, 2, 2), 4.5))


PGGAN_TINY = [
    "--config",
    str(ROOT / "configs/quickstart.yaml"),
    "--config",
    str(ROOT / "configs/model/pggan.yaml"),
    "--model.generator.init_args.width",
    "8",
    "--model.discriminator.init_args.width",
    "8",
    "--model.growth.init_args.stage_steps",
    "3",
    "--model.growth.init_args.fade_steps",
    "2",
    "--data.init_args.batch_size",
    "8",
]  # fmt: skip  (32 px digits: steps 0-2 at 4 px, 3-5 at 8 px fading over 3-4, 6-8 at 16 px, then 32 px)


def last(root):
    return read_checkpoint(root / "lightning_logs/version_0/checkpoints/last.ckpt")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [3, 4], ids=["at_a_stage_boundary", "mid_fade"])
def test_a_run_resumed_at_a_stage_boundary_or_mid_fade_equals_the_uninterrupted_run(tmp_path, stop):
    run_cli(["fit", *PGGAN_TINY, *tiny_args(tmp_path / "full", max_steps=10)])
    run_cli(["fit", *PGGAN_TINY, *tiny_args(tmp_path / "half", max_steps=stop)])
    half = tmp_path / "half/lightning_logs/version_0/checkpoints/last.ckpt"
    run_cli(["fit", *PGGAN_TINY, *tiny_args(tmp_path / "resumed", max_steps=10), "--ckpt_path", str(half)])
    full, resumed = last(tmp_path / "full")["state_dict"], last(tmp_path / "resumed")["state_dict"]
    assert full.keys() == resumed.keys()
    assert all(torch.equal(v, resumed[k]) for k, v in full.items())
    # and growing changed the networks stage by stage: the 16 px toRGB trained only from step 6 on
    first = torch.load(half, weights_only=True)["state_dict"]
    changed = not torch.equal(first["generator.to_rgb.2.weight"], full["generator.to_rgb.2.weight"])
    assert changed and torch.equal(first["generator.to_rgb.2.weight"], _initial_to_rgb(tmp_path))


def _initial_to_rgb(tmp_path):
    """The 16 px toRGB of a run stopped before its stage: its init (no gradient ever reached it)."""
    run_cli(["fit", *PGGAN_TINY, *tiny_args(tmp_path / "one", max_steps=1)])
    return last(tmp_path / "one")["state_dict"]["generator.to_rgb.2.weight"]


@pytest.mark.slow
def test_grids_are_written_per_stage_and_sample_uses_the_checkpoints_stage(tmp_path):
    run_cli(["fit", *PGGAN_TINY, *tiny_args(tmp_path, max_steps=7, **{"--samples.every_n_steps": "0"})])
    grids = sorted(p.name for p in (tmp_path / "lightning_logs/version_0/samples").iterdir())
    assert grids == ["step_0000003_4x4.png", "step_0000006_8x8.png", "step_0000007_16x16.png"]
    ckpt = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    module = load_module(ckpt)
    assert (module.generator.stage, module.generator.alpha) == (2, 0.0)  # step 7 trained stage 2 at alpha 0
    assert module.sampling_generator.stage == 2
    images = module.sample(torch.randn(2, module.latent_dim))
    assert images.shape == (2, 1, 32, 32)  # data-sized: nearest-upsampled from the stage's 16 px
    # at alpha 0, stage 2's output is the 8 px image upsampled: 2x2 blocks of equal pixels
    assert torch.equal(images[..., ::2, ::2], images[..., 1::2, 1::2])


@pytest.mark.slow
def test_growth_with_networks_that_do_not_grow_is_one_error_line(tmp_path):
    args = ["fit", "--config", str(ROOT / "configs/quickstart.yaml"), *tiny_args(tmp_path)]
    res = run_cli_subprocess([*args, "--model.growth", "gan_lightning.growing.Growth"])
    assert res.returncode == 2
    assert "model.growth needs networks that grow" in one_error_line(res)
