"""DDP on CPU processes (gloo) with ``ddp_all_reduce`` (:mod:`gan_lightning.distributed`): the ranks
stay bitwise identical and step exactly as one process on the same global batch, for every update order
and with a gradient penalty; runs complete and count generator steps; two simulated nodes train,
checkpoint on rank 0 and resume. ``ddp_find_unused_parameters_true`` still works."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp
from conftest import DIGITS_TINY, ROOT, run_cli_subprocess, tiny_args

RING = str(ROOT / "configs/toy/ring.yaml")
D_STEPS_2 = str(ROOT / "configs/schedule/d_steps_2.yaml")
GP1 = str(ROOT / "configs/regularizer/gp1.yaml")


def _why(res: subprocess.CompletedProcess) -> str:
    """A failed multi-process run's first traceback (the rank that failed first) and its last lines."""
    err = res.stderr
    first = err.find("Traceback")
    return (err[first : first + 3000] + "\n...\n" if first >= 0 else "") + err[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy,order,extra",
    [
        ("ddp_all_reduce", "simultaneous", ["--config", GP1]),
        ("ddp_find_unused_parameters_true", "d_first", ["--config", GP1]),
    ],
    ids=["all_reduce_simultaneous_gradient_penalty", "find_unused_gradient_penalty"],
)
def test_ddp_on_two_cpu_processes_trains_and_counts_generator_steps(tmp_path, strategy, order, extra):
    args = [
        "fit",
        "--config",
        RING,
        *tiny_args(tmp_path, max_steps=6),
        "--data.init_args.num_samples",
        "2000",
        "--data.init_args.batch_size",
        "32",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        strategy,
        "--config",
        D_STEPS_2,
        "--model.order",
        order,
        *extra,
    ]
    res = run_cli_subprocess(args, timeout=240)
    assert res.returncode == 0, _why(res)
    ckpt = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 6
    assert int(ckpt["state_dict"]["d_steps_done"]) == 12
    assert len(list((tmp_path / "lightning_logs/version_0/samples").iterdir())) == 2  # steps 3 and 6


class GlobalBatchProbe(L.Callback):
    """Test-only (the CLI runs below load it with ``--trainer.callbacks``). Every draw of a step (the real
    batch, G's latents, the gradient penalty's interpolation weights) is this process's slice of one
    global draw split over ``ranks`` simulated ranks: a run on ``ranks`` processes and a run on one
    process with a ``ranks``-times larger batch see the same global batch, in the same pairing of reals,
    fakes and weights. Records the gradients every optimizer step is about to apply (after the
    all-reduce), and the module's final state, in ``out/rank{r}.pt``."""

    def __init__(self, out: str, ranks: int = 2) -> None:
        self.out, self.ranks = Path(out), ranks
        self.grads: list[tuple[str, torch.Tensor]] = []
        self.batches: list[torch.Tensor] = []
        self.draws = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        assert self.ranks % trainer.world_size == 0
        self.mine = self.ranks // trainer.world_size  # simulated ranks per process
        self.first = trainer.global_rank * self.mine

    def _slice(self, draw, n: int, rest: tuple[int, ...]) -> torch.Tensor:
        """This process's n rows of a global draw of ranks * n / mine rows (one block per simulated rank)."""
        self.draws += 1
        g = torch.Generator().manual_seed(self.draws)
        full = draw((self.ranks, n // self.mine, *rest), generator=g)
        return full[self.first : self.first + self.mine].reshape(n, *rest)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from gan_lightning import regularizers

        pl_module.noise = lambda n: self._slice(torch.randn, n, (pl_module.latent_dim,))
        regularizers._per_sample_uniform = lambda x, generator: self._slice(
            torch.rand, len(x), (1,) * (x.dim() - 1)
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        real = batch[0]
        k = pl_module.schedule.d_steps(trainer.global_step)
        g = torch.Generator().manual_seed(10_000 + trainer.global_step)
        full = torch.randn(self.ranks, k, len(real) // (k * self.mine), *real.shape[1:], generator=g)
        # D step j of the 1-process run reads the j-th slices of every simulated rank, in rank order
        real.copy_(full[self.first : self.first + self.mine].transpose(0, 1).reshape(real.shape))
        self.batches.append(real.clone())

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        who = "G" if optimizer is trainer.optimizers[0] else "D"
        self.grads.append((who, torch.cat([p.grad.reshape(-1) for p in params]).clone()))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = {k: v.clone() for k, v in pl_module.state_dict().items()}
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        scale = scaler.get_scale() if scaler is not None else None
        record = {"grads": self.grads, "batches": self.batches, "state": state, "scale": scale}
        torch.save(record, self.out / f"rank{trainer.global_rank}.pt")


def _probe_run(out: Path, devices: int, batch_size: int, order: str, extra: list[str]) -> list[dict]:
    """A 3-G-step ring run (2 D steps per G step, SGD) with the probe; its records, one per rank."""
    out.mkdir()
    sgd = json.dumps({"class_path": "torch.optim.SGD", "init_args": {"lr": 0.005}})
    probe = json.dumps([{"class_path": "test_distributed.GlobalBatchProbe", "init_args": {"out": str(out)}}])
    args = [
        "fit",
        "--config",
        RING,
        "--config",
        D_STEPS_2,
        *tiny_args(out, max_steps=3),
        "--samples.every_n_steps",
        "0",
        "--data.init_args.num_samples",
        "2000",
        "--data.init_args.batch_size",
        str(batch_size),
        "--model.g_optimizer",
        sgd,
        "--model.d_optimizer",
        sgd,
        "--model.order",
        order,
        "--trainer.callbacks",
        probe,
        "--trainer.devices",
        str(devices),
        *(["--trainer.strategy", "ddp_all_reduce"] if devices > 1 else []),
        *extra,
    ]
    res = run_cli_subprocess(args, timeout=240)
    assert res.returncode == 0, _why(res)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(devices)]


@pytest.mark.slow
@pytest.mark.parametrize("order", ["d_first", "g_first", "simultaneous", "fused"])
def test_two_ranks_stay_identical_and_step_as_one_process_on_the_global_batch_with_a_penalty(tmp_path, order):
    """The gradient penalty (a double backward) is on in every order: D's loss is main + penalty."""
    two = _probe_run(tmp_path / "two", devices=2, batch_size=8, order=order, extra=["--config", GP1])
    (one,) = _probe_run(tmp_path / "one", devices=1, batch_size=16, order=order, extra=["--config", GP1])
    # the ranks trained on different halves of the global batch...
    assert not torch.equal(two[0]["batches"][0], two[1]["batches"][0])
    assert torch.equal(
        torch.cat([two[0]["batches"][0][:8], two[1]["batches"][0][:8]]), one["batches"][0][:16]
    )
    # ...and still hold bitwise identical parameters and buffers after 3 G steps
    assert two[0]["state"].keys() == two[1]["state"].keys()
    for key, value in two[0]["state"].items():
        assert torch.equal(value, two[1]["state"][key]), key
    # every optimizer step applied the gradients of the 1-process run on the global batch
    steps = [who for who, _ in one["grads"]]
    assert [who for who, _ in two[0]["grads"]] == steps and steps.count("G") == 3
    for i, ((who, grad), (_, expected)) in enumerate(zip(two[0]["grads"], one["grads"])):
        assert grad.abs().max() > 0, (i, who)
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6, msg=f"step {i} ({who})")
    for key, value in one["state"].items():
        torch.testing.assert_close(two[0]["state"][key], value, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_batchnorm_statistics_and_the_ema_are_identical_on_every_rank(tmp_path):
    """The DCGAN's BatchNorms update their running statistics from each rank's own batch; they are
    broadcast from rank 0 after every step (DDP's broadcast_buffers), so the ranks' G, D and EMA G stay one
    model for sampling and metrics. Without the broadcast these buffers differ after one step."""
    probe = {"class_path": "test_distributed.GlobalBatchProbe", "init_args": {"out": str(tmp_path)}}
    args = ["fit", *DIGITS_TINY, *tiny_args(tmp_path, max_steps=3), "--trainer.limit_val_batches", "0"]
    args += ["--trainer.devices", "2", "--trainer.strategy", "ddp_all_reduce"]
    args += ["--trainer.callbacks", json.dumps([probe])]
    res = run_cli_subprocess(args, timeout=240)
    assert res.returncode == 0, _why(res)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False)["state"] for r in range(2)]
    stats = [key.split(".")[0] for key in ranks[0] if key.endswith("running_mean")]
    assert {"generator", "discriminator", "generator_ema"} <= set(stats)  # every network has BatchNorms
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key


@pytest.mark.slow
def test_under_fp16_the_ranks_skip_the_same_steps_and_stay_identical(tmp_path):
    """16-mixed (Lightning's plugin with a GradScaler, built for the CPU as tests/test_amp.py does): the
    ranks average the *scaled* gradients before the scaler's unscale and inf check, so an overflow on one
    rank is seen by all and every rank skips the same steps with one loss scale, as one process does."""
    plugin = {"class_path": "lightning.pytorch.plugins.MixedPrecision"}
    plugin["init_args"] = {"precision": "16-mixed", "device": "cpu"}
    extra = ["--config", GP1, "--trainer.plugins", json.dumps([plugin])]
    two = _probe_run(tmp_path / "two", devices=2, batch_size=8, order="d_first", extra=extra)
    (one,) = _probe_run(tmp_path / "one", devices=1, batch_size=16, order="d_first", extra=extra)
    for key, value in two[0]["state"].items():
        assert torch.equal(value, two[1]["state"][key]), key
    skipped = [int(one["state"][f"{who}_steps_skipped"]) for who in ("d", "g")]
    assert 0 < sum(skipped) < 6  # GP's input gradients overflow fp16 at the initial scale 2^16, then fit
    for rank in two:
        assert [int(rank["state"][f"{who}_steps_skipped"]) for who in ("d", "g")] == skipped
        assert rank["scale"] == one["scale"] == 2.0**16 / 2 ** sum(skipped)
    for key, value in one["state"].items():  # fp16 rounds a batch of 8 and one of 16 differently
        torch.testing.assert_close(two[0]["state"][key].float(), value.float(), rtol=1e-3, atol=1e-4, msg=key)


def _collectives_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from gan_lightning.distributed import all_reduce_gradients, broadcast_from_rank_zero

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    a, b, c = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
    a.grad = torch.full((3,), float(rank + 1))  # 1 and 2: mean 1.5
    if rank == 0:
        b.grad = torch.full((3,), 4.0)  # None on rank 1 counts as 0 there: mean 2, on both ranks
    frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
    all_reduce_gradients([a, b, c, frozen])
    # buffers of mixed dtypes and sizes, one non-contiguous: one byte broadcast must keep every offset aligned
    g = torch.Generator().manual_seed(rank)
    buffers = [
        torch.tensor(rank == 0),
        torch.randn(3, generator=g),
        torch.tensor(7 + rank, dtype=torch.int16),
        torch.randn(2, 2, dtype=torch.float64, generator=g).t(),
        torch.randint(0, 9, (3,), generator=g),
        torch.randn(5, generator=g).to(torch.bfloat16),
    ]
    broadcast_from_rank_zero(buffers)
    torch.save({"grads": [a.grad, b.grad, c.grad, frozen.grad], "buffers": buffers}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_gradients_average_over_ranks_and_buffers_become_rank_zeros_bit_for_bit(tmp_path):
    mp.spawn(_collectives_worker, args=(_free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for rank in ranks:
        a, b, c, frozen = rank["grads"]
        assert torch.equal(a, torch.full((3,), 1.5)) and torch.equal(b, torch.full((3,), 2.0))
        assert c is None and frozen is None  # None on every rank stays None
    g = torch.Generator().manual_seed(0)
    assert ranks[0]["buffers"][1].equal(torch.randn(3, generator=g))  # rank 0 kept its own
    for mine, rank_zeros in zip(ranks[1]["buffers"], ranks[0]["buffers"]):
        assert mine.dtype == rank_zeros.dtype and torch.equal(mine, rank_zeros)
    assert int(ranks[1]["buffers"][2]) == 7 and bool(ranks[1]["buffers"][0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# what a scheduler or launcher around the test run may have set: each simulated node gets only its own
_LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _launch_two_nodes(args: list[str], logs: Path, timeout: int = 300) -> list[str]:
    """``python -m gan_lightning ARGS`` as two single-process nodes on this machine, with the variables a
    generic cluster (Lightning's LightningEnvironment) sets: NODE_RANK, MASTER_ADDR, MASTER_PORT,
    WORLD_SIZE. No SLURM_* variable of the surrounding environment leaks in. Returns their stderr."""
    logs.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "TORCHELASTIC_", "GAN_LIGHTNING_RUN")) and k not in _LAUNCHER_VARS
    }
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    env.update(PYTHONWARNINGS="ignore", PYTHONPATH=path, MASTER_ADDR="127.0.0.1", WORLD_SIZE="2")
    env["MASTER_PORT"] = str(_free_port())
    procs, files = [], []
    for node in (0, 1):
        err = open(logs / f"node{node}.err", "w")
        files.append(err)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "gan_lightning", *args],
                cwd=ROOT,
                env={**env, "NODE_RANK": str(node)},
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        )
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in files:
            f.close()
    stderr = [(logs / f"node{node}.err").read_text() for node in (0, 1)]
    assert codes == [0, 0], "\n".join(s[-3000:] for s in stderr)
    return stderr


@pytest.mark.slow
def test_two_simulated_nodes_train_checkpoint_on_rank_zero_and_resume(tmp_path):
    base = [
        "fit",
        "--config",
        RING,
        *tiny_args(tmp_path, max_steps=4, **{"--checkpoint.every_n_train_steps": "4"}),
        "--samples.every_n_steps",
        "0",
        "--data.init_args.num_samples",
        "2000",
        "--data.init_args.batch_size",
        "16",
        "--trainer.num_nodes",
        "2",
        "--trainer.devices",
        "1",
        "--trainer.strategy",
        "ddp_all_reduce",
    ]
    stderr = _launch_two_nodes(base, tmp_path / "logs_first")
    for node in (0, 1):
        assert f"GLOBAL_RANK: {node}, MEMBER: {node + 1}/2" in stderr[node]
    runs = tmp_path / "lightning_logs"
    assert [d.name for d in runs.iterdir()] == ["version_0"]  # node 1 claimed no run directory
    ckpts = runs / "version_0/checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step=0000004.ckpt"]  # once, by rank 0
    first = torch.load(ckpts / "last.ckpt", weights_only=False)
    assert first["global_step"] == 4

    resume = [*base, "--trainer.max_steps", "8", "--ckpt_path", str(ckpts / "last.ckpt")]
    stderr = _launch_two_nodes(resume, tmp_path / "logs_resume")
    assert "Restoring states from the checkpoint" in stderr[0]  # rank 0 reports for both
    resumed = torch.load(runs / "version_1/checkpoints/last.ckpt", weights_only=False)
    assert resumed["global_step"] == 8 and int(resumed["state_dict"]["d_steps_done"]) == 8
    assert sorted(d.name for d in runs.iterdir()) == ["version_0", "version_1"]


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
        "ddp_all_reduce",
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
