"""The experiment sweep: every loss family fragment on every base (ring, grid, digits), and every
schedule / regularizer fragment on the digits, runs a few generator steps through the real CLI."""

from __future__ import annotations

import pytest
import torch
from conftest import DIGITS_TINY, ROOT, run_cli, tiny_args

LOSSES = sorted((ROOT / "configs/loss").glob("*.yaml"))
OTHERS = sorted([*(ROOT / "configs/schedule").glob("*.yaml"), *(ROOT / "configs/regularizer").glob("*.yaml")])
TOY = [
    "--trainer.limit_val_batches",
    "1",
    "--data.init_args.num_samples",
    "1000",
    "--data.init_args.batch_size",
    "32",
]
BASES = {
    "ring": ["--config", str(ROOT / "configs/toy/ring.yaml"), *TOY],
    "grid": ["--config", str(ROOT / "configs/toy/grid.yaml"), *TOY],
    "digits": DIGITS_TINY,
}


def _run(tmp_path, base: list[str], fragment, max_steps: int = 2) -> dict:
    run_cli(["fit", *base, *tiny_args(tmp_path, max_steps=max_steps), "--config", str(fragment)])
    ckpt = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == max_steps
    return ckpt


@pytest.mark.slow
@pytest.mark.parametrize("base", list(BASES))
@pytest.mark.parametrize("fragment", LOSSES, ids=lambda p: p.stem)
def test_every_loss_family_trains_on_every_base(tmp_path, base, fragment):
    ckpt = _run(tmp_path, BASES[base], fragment)
    assert all(torch.isfinite(v.float()).all() for v in ckpt["state_dict"].values())


@pytest.mark.slow
@pytest.mark.parametrize("fragment", OTHERS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_schedule_and_regularizer_trains_on_digits(tmp_path, fragment):
    _run(tmp_path, DIGITS_TINY, fragment)


def test_wgan_original_schedule_takes_100_critic_steps_per_early_g_step(tmp_path):
    base = ["--config", str(ROOT / "configs/toy/ring.yaml"), *TOY]
    run_cli(
        [
            "fit",
            *base,
            *tiny_args(tmp_path, max_steps=2),
            "--config",
            str(ROOT / "configs/loss/wgan.yaml"),
            "--config",
            str(ROOT / "configs/schedule/wgan_original.yaml"),
        ]
    )
    ckpt = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=False)
    assert int(ckpt["state_dict"]["d_steps_done"]) == 200
