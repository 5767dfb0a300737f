"""DDP on two CPU processes (gloo): the run completes (no rank waits on a collective alone) and its
step counts are generator steps."""

import csv
import json

import pytest
import torch
from conftest import DIGITS_TINY, ROOT, run_cli_subprocess, tiny_args


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


@pytest.mark.slow
def test_ddp_metrics_sync_across_ranks_and_equal_a_single_process_evaluation(tmp_path):
    """Two ranks each score half of the samples (and extract half of the real features, then gather):
    the synced FID must equal one process scoring them all, computed from scratch with its own cache."""
    metric_args = [
        "--metrics.extractor",
        "support.RandomFeatures",
        "--metrics.num_fake",
        "300",
        "--metrics.num_real",
        "21",  # odd: the ranks' real shards differ in size; few, so double-counted reals show (1.5e-3 off)
        "--metrics.batch_size",
        "50",
        "--metrics.kid_subset_size",
        "20",
    ]
    args = [
        "fit",
        *DIGITS_TINY,
        *tiny_args(tmp_path, max_steps=4),
        *metric_args,
        "--trainer.val_check_interval",
        "4",
        "--trainer.check_val_every_n_epoch",
        "null",
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(tmp_path),
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp_find_unused_parameters_true",
    ]
    env = {"GAN_LIGHTNING_CACHE": str(tmp_path / "cache_ddp")}
    res = run_cli_subprocess(args, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    log_dir = tmp_path / "lightning_logs/version_0"
    with open(log_dir / "metrics.csv") as f:
        logged = [float(r["val/rand_fid"]) for r in csv.DictReader(f) if r.get("val/rand_fid")]
    assert len(logged) == 1
    out = tmp_path / "metrics.json"
    env = {"GAN_LIGHTNING_CACHE": str(tmp_path / "cache_single")}
    res = run_cli_subprocess(
        ["evaluate", "--ckpt_path", str(log_dir / "checkpoints/last.ckpt"), "--out", str(out)], env=env
    )
    assert res.returncode == 0, res.stderr[-3000:]
    single = json.loads(out.read_text())["metrics"]
    # float32 features of differently composed batches differ by ~1e-5 relative
    assert logged[0] == pytest.approx(single["rand_fid"], rel=2e-4)


def test_sync_batchnorm_converts_every_batchnorm_of_g_d_and_the_ema():
    """SyncBatchNorm (issue 11) is Lightning's ``trainer.sync_batchnorm``, which applies torch's
    ``convert_sync_batchnorm`` to the module: every BatchNorm of G, D and the EMA copy, the conditional
    BN's inner one included, becomes a SyncBatchNorm (it runs on GPUs only; on CPU, one error line)."""
    from gan_lightning.module import GANModule
    from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator

    module = GANModule(
        lambda s, k: DCGANGenerator(s, k, width=8),
        lambda s, k: DCGANDiscriminator(s, k, width=8),
        conditional=True,
        num_classes=10,
        data_shape=(1, 28, 28),
    )
    batchnorms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    before = sum(isinstance(m, batchnorms) for m in module.modules())
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    assert not any(isinstance(m, batchnorms) for m in converted.modules())
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()) == before > 0


def test_sync_batchnorm_on_cpu_is_one_error_line(tmp_path):
    res = run_cli_subprocess(
        ["fit", *DIGITS_TINY, *tiny_args(tmp_path, max_steps=1), "--trainer.sync_batchnorm", "true"]
    )
    assert res.returncode == 2 and "trainer.sync_batchnorm needs GPUs" in res.stderr
    assert "Traceback" not in res.stderr
