"""DDP on two CPU processes (gloo): the run completes (no rank waits on a collective alone) and its
step counts are generator steps."""

import pytest
import torch
from conftest import ROOT, run_cli_subprocess, tiny_args


@pytest.mark.slow
@pytest.mark.parametrize(
    "order,extra",
    [
        ("d_first", []),
        ("simultaneous", []),
        ("d_first", ["--config", str(ROOT / "configs/regularizer/gp1.yaml")]),
    ],
    ids=["d_first", "simultaneous", "gradient_penalty"],
)
def test_ddp_on_two_cpu_processes_trains_and_counts_generator_steps(tmp_path, order, extra):
    args = [
        "fit",
        "--config",
        str(ROOT / "configs/toy/ring.yaml"),
        *tiny_args(tmp_path, max_steps=6),
        "--data.init_args.num_samples",
        "2000",
        "--data.init_args.batch_size",
        "32",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp_find_unused_parameters_true",
        "--config",
        str(ROOT / "configs/schedule/d_steps_2.yaml"),
        "--model.order",
        order,
        *extra,
    ]
    res = run_cli_subprocess(args, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 6
    assert int(ckpt["state_dict"]["d_steps_done"]) == 12
    assert len(list((tmp_path / "lightning_logs/version_0/samples").iterdir())) == 2  # steps 3 and 6
