"""SLURM: Lightning's detection and validation of the SLURM_* variables as our CLI builds the trainer,
the sbatch template (slurm/train.sbatch) run with a stand-in ``srun``, and, on a real cluster
(``sudo slurm/local_cluster.sh`` starts a one-node one), a training job, a DDP job and a job that is
signalled, requeued and resumed.

The real-cluster tests are ``slow`` and skip with the reason when no SLURM client or idle node is there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT, tiny_args
from lightning.fabric.plugins.environments import SLURMEnvironment

from gan_lightning.callbacks import GStepCheckpoint, SLURMRequeue
from gan_lightning.cli import GANCLI
from gan_lightning.distributed import AllReduceDDPStrategy

SBATCH = ROOT / "slurm" / "train.sbatch"
RING = ROOT / "configs" / "toy" / "ring.yaml"
SLURM_YAML = ROOT / "configs" / "trainer" / "slurm.yaml"

# What srun exports to each task of a 2-node x 2-task job, seen from the task with global rank 3.
TASK_ENV = {
    "SLURM_JOB_ID": "4321",
    "SLURM_JOB_NAME": "gan",
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_NNODES": "2",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURM_NODELIST": "gpu[07-08]",
}


@pytest.fixture
def no_slurm(monkeypatch):
    """No SLURM_* (or torch.distributed) variables, whatever the machine running the tests has."""
    for key in list(os.environ):
        if key.startswith("SLURM_") or key in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"):
            monkeypatch.delenv(key)
    # SLURMEnvironment sets MASTER_ADDR/MASTER_PORT when asked: let monkeypatch remove them afterwards.
    monkeypatch.setenv("MASTER_ADDR", "")
    monkeypatch.delenv("MASTER_ADDR")
    monkeypatch.setenv("MASTER_PORT", "")
    monkeypatch.delenv("MASTER_PORT")
    return monkeypatch


def slurm_task(monkeypatch, **changes: str | None) -> None:
    for key, value in {**TASK_ENV, **changes}.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


def build_trainer(tmp_path: Path, *extra: str):
    args = ["--config", str(SLURM_YAML), "--config", str(RING), *tiny_args(tmp_path), *extra]
    return GANCLI(args=args, run=False).trainer


# --- Lightning's SLURM detection, through our CLI ---------------------------------------------------


def test_slurm_is_detected_only_inside_srun_tasks(no_slurm):
    assert not SLURMEnvironment.detect()
    slurm_task(no_slurm)
    assert SLURMEnvironment.detect()
    no_slurm.delenv("SLURM_NTASKS")  # e.g. a batch script without --ntasks*: srun sets it for the tasks
    assert not SLURMEnvironment.detect()


def test_cli_trainer_takes_ranks_and_world_size_from_slurm(no_slurm, tmp_path):
    slurm_task(no_slurm)
    trainer = build_trainer(tmp_path, "--trainer.devices", "2", "--trainer.num_nodes", "2")
    env = trainer._accelerator_connector.cluster_environment
    # configs/trainer/slurm.yaml: our G-step-boundary requeue replaces Lightning's handler during fit
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue
    assert any(isinstance(cb, SLURMRequeue) for cb in trainer.callbacks)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)
    assert env.main_address == "gpu07"  # the first node of the allocation
    assert env.main_port == 15000 + 4321  # from the job id: the same on every task, and after a requeue
    # configs/trainer/slurm.yaml: DDP without the wrapper, each network's gradients averaged at its step
    assert isinstance(trainer.strategy, AllReduceDDPStrategy)
    assert not trainer.progress_bar_callback
    ckpt = next(cb for cb in trainer.callbacks if isinstance(cb, GStepCheckpoint))
    assert ckpt._enable_version_counter is False  # no stale last.ckpt next to a last-v1.ckpt after a requeue


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--trainer.devices", "1", "--trainer.num_nodes", "2"], r"devices=1.*--ntasks-per-node=2"),
        (["--trainer.devices", "2", "--trainer.num_nodes", "1"], r"num_nodes=1.*--nodes=2"),
    ],
    ids=["devices", "num_nodes"],
)
def test_ddp_settings_disagreeing_with_the_allocation_are_refused_at_fit(no_slurm, tmp_path, flags, message):
    """Lightning's SLURMEnvironment.validate_settings runs in the DDP launcher, when fit starts (not
    when the Trainer is built), and before any process group or data is set up."""
    slurm_task(no_slurm)
    cli = GANCLI(
        args=["--config", str(SLURM_YAML), "--config", str(RING), *tiny_args(tmp_path), *flags], run=False
    )
    with pytest.raises(ValueError, match=message):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert not (tmp_path / "lightning_logs").exists()


def test_without_ddp_lightning_validates_nothing_and_every_task_is_rank_0(no_slurm, tmp_path):
    """The trap slurm/train.sbatch closes by always passing --trainer.devices and a DDP strategy: with
    one device (configs/quickstart.yaml has ``devices: 1``) Lightning picks SingleDeviceStrategy, skips
    validate_settings, and each of the 4 tasks trains the same run alone, as rank 0 of 1, into the
    same directory."""
    slurm_task(no_slurm)
    trainer = GANCLI(
        args=["--config", str(RING), *tiny_args(tmp_path), "--trainer.devices", "1"], run=False
    ).trainer
    assert isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
    assert trainer.strategy.launcher is None  # where validate_settings would run
    assert (trainer.world_size, trainer.global_rank, trainer.is_global_zero) == (1, 0, True)


def test_ntasks_without_ntasks_per_node_is_refused(no_slurm, tmp_path):
    slurm_task(no_slurm, SLURM_NTASKS_PER_NODE=None, SLURM_NNODES="1", SLURM_JOB_NUM_NODES="1")
    with pytest.raises(RuntimeError, match="--ntasks-per-node=4"):
        build_trainer(tmp_path, "--trainer.devices", "4")


@pytest.mark.parametrize("name", ["bash", "interactive"])
def test_job_names_bash_and_interactive_bypass_slurm(no_slurm, tmp_path, name):
    slurm_task(no_slurm, SLURM_JOB_NAME=name)
    assert not SLURMEnvironment.detect()
    # No validation either: Lightning would start 2 processes of its own in each of the 4 tasks.
    trainer = build_trainer(tmp_path, "--trainer.devices", "2", "--trainer.num_nodes", "1")
    assert not isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
    assert trainer.global_rank == 0


@pytest.fixture
def scontrol_calls(tmp_path, monkeypatch) -> Path:
    """A stand-in ``scontrol`` first on PATH: a test must never requeue a real job of the same id."""
    bin_dir = tmp_path / "fake_scontrol"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


class SignalAt(L.Callback):
    """Sends SIGUSR1 to this process at the end of G step ``step``, as SLURM would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


def one_task_cli(tmp_path: Path, ours: bool = False) -> GANCLI:
    """The ring on one task; ``ours``: with configs/trainer/slurm.yaml's requeue (strategy left auto)."""
    args = [
        *["--config", str(RING)],
        *(
            ["--config", str(ROOT / "configs/trainer/slurm.yaml"), "--trainer.strategy", "auto"]
            if ours
            else []
        ),
        *tiny_args(tmp_path, max_steps=6),
        "--data.init_args.num_samples",
        "2000",
    ]
    return GANCLI(args=args, run=False)


def test_sigusr1_saves_an_hpc_checkpoint_requeues_and_a_restart_resumes_from_it(
    no_slurm, tmp_path, scontrol_calls
):
    """Lightning's requeue, in process: the signal handler saves default_root_dir/hpc_ckpt_1.ckpt and
    calls ``scontrol requeue <job id>``; the restarted run (same default_root_dir, no ckpt_path) loads it."""
    slurm_task(no_slurm, SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1", SLURM_NNODES="1", SLURM_PROCID="0")
    no_slurm.setenv("SLURM_LOCALID", "0")
    no_slurm.setenv("SLURM_NODEID", "0")
    cli = one_task_cli(tmp_path)
    cli.trainer.callbacks.append(SignalAt(3))
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    assert torch.load(hpc, weights_only=False)["global_step"] == 3
    assert scontrol_calls.read_text().split() == ["requeue", "4321"]
    assert cli.trainer.global_step == 6  # the run goes on until SLURM stops it
    restarted = one_task_cli(tmp_path)
    restarted.trainer.fit(restarted.model, datamodule=restarted.datamodule)
    assert Path(restarted.trainer.ckpt_path) == hpc
    assert restarted.trainer.global_step == 6


def test_our_requeue_saves_at_a_generator_step_boundary_and_the_restart_continues_the_same_run(
    no_slurm, tmp_path, scontrol_calls
):
    """Lightning's handler saves wherever the signal lands: on the local cluster ``scancel --signal=USR1``
    once hit between the D and the G update (hpc_ckpt_1.ckpt: global_step 189, d_steps_done 190) and the
    resumed job ended with 501 D steps for 500 G steps. ``SLURMRequeue`` (configs/trainer/slurm.yaml)
    only sets a flag, then saves after the G step, requeues and stops. Here the signal arrives just
    before G step 4: mid-step."""
    slurm_task(no_slurm, SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1", SLURM_NNODES="1", SLURM_PROCID="0")
    no_slurm.setenv("SLURM_LOCALID", "0")
    no_slurm.setenv("SLURM_NODEID", "0")
    cli = one_task_cli(tmp_path, ours=True)
    g_step = cli.model.g_step

    def g_step_signalled(*args, **kwargs):
        if cli.model.global_step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)
        return g_step(*args, **kwargs)

    cli.model.g_step = g_step_signalled
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    hpc = torch.load(tmp_path / "hpc_ckpt_1.ckpt", weights_only=False)
    assert hpc["global_step"] == 4 and int(hpc["state_dict"]["d_steps_done"]) == 4  # a whole G step
    assert scontrol_calls.read_text().split() == ["requeue", "4321"]
    assert cli.trainer.global_step == 4  # stopped right after saving
    restarted = one_task_cli(tmp_path, ours=True)
    restarted.trainer.fit(restarted.model, datamodule=restarted.datamodule)
    assert Path(restarted.trainer.ckpt_path) == tmp_path / "hpc_ckpt_1.ckpt"
    assert restarted.trainer.global_step == 6 and int(restarted.model.d_steps_done) == 6


def test_dataloader_workers_ignore_the_requeue_signal():
    """SLURM signals every process of a step, DataLoader workers included. A forked worker inherits
    Lightning's SIGUSR1 handler and runs it on its fork-time copy of the trainer: on the local cluster
    (ring, ``--data.init_args.num_workers 1``) the worker's save raced the main process's and the
    requeued run resumed from ``hpc_ckpt_1.ckpt`` at global step 0, losing every step. Workers ignore
    SIGUSR1 (the ``worker_init_fn`` of GANDataModule's loaders)."""
    from gan_lightning.data import GaussianMixture2D

    dm = GaussianMixture2D(kind="ring", num_samples=512, batch_size=64, num_workers=1)
    dm.setup("fit")

    def handler(signum, frame):  # stands in for Lightning's _slurm_sigusr_handler_fn
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")

    marker = Path(os.environ.get("TMPDIR", "/tmp")) / f"slurm-sigusr1-{os.getpid()}"
    marker.unlink(missing_ok=True)
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        it = iter(dm.train_dataloader())
        next(it)
        worker = it._workers[0]
        os.kill(worker.pid, signal.SIGUSR1)
        time.sleep(1.0)
        ran_in = marker.read_text().split() if marker.exists() else []
        alive = worker.is_alive()
        it._shutdown_workers()
    finally:
        signal.signal(signal.SIGUSR1, previous)
        marker.unlink(missing_ok=True)
    assert alive, "the DataLoader worker died of SIGUSR1"
    assert ran_in == [], f"the requeue handler ran in the DataLoader worker (pid {ran_in})"


# --- slurm/train.sbatch with a stand-in srun ----------------------------------------------------------

FAKE_SRUN = """#!/bin/bash
exec "{python}" -c '
import json, os, sys
keep = ("WANDB_RUN_ID", "WANDB_NAME", "OMP_NUM_THREADS", "SRUN_CPUS_PER_TASK")
json.dump({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in keep}}, "cwd": os.getcwd()}},
          open(os.environ["FAKE_SRUN_OUT"], "w"))
sys.exit(int(os.environ.get("FAKE_SRUN_RC", "0")))
' "$@"
"""


def run_script(tmp_path: Path, args: list[str], srun: str = FAKE_SRUN, wait: bool = True, **env: str | None):
    """``bash slurm/train.sbatch ARGS`` as sbatch would start it, with ``srun`` (and ``squeue``) faked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(srun.format(python=sys.executable))
    (bin_dir / "squeue").write_text('#!/bin/bash\necho "${FAKE_TIME_LIMIT:-1-00:00:00}"\n')
    for tool in ("srun", "squeue"):
        (bin_dir / tool).chmod(0o755)
    submit = tmp_path / "submit"
    submit.mkdir(exist_ok=True)
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLURM_") and k not in ("RUN_DIR", "WANDB_RUN_ID")
    }
    full.update(
        TASK_ENV,
        SLURM_SUBMIT_DIR=str(submit),
        SLURM_CLUSTER_NAME="lab",
        SLURM_CPUS_PER_TASK="6",
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_SRUN_OUT=str(tmp_path / "srun.json"),
        PYTHON="python-of-the-job",
    )
    full.pop("OMP_NUM_THREADS", None)
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    cmd = ["bash", str(SBATCH), *args]
    if not wait:
        return subprocess.Popen(
            cmd, cwd=submit, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return subprocess.run(cmd, cwd=submit, env=full, capture_output=True, text=True, timeout=60)


def srun_call(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "srun.json").read_text())


def test_sbatch_script_sets_nodes_devices_and_a_run_dir_that_survives_requeues(tmp_path):
    res = run_script(tmp_path, ["--config", str(RING), "--trainer.max_steps", "7"])
    assert res.returncode == 0, res.stdout + res.stderr
    call = srun_call(tmp_path)
    run_dir = "runs/gan-4321"  # <job name>-<job id>: a requeued job keeps its id
    assert call["argv"] == [
        "--kill-on-bad-exit=1",
        "python-of-the-job",
        *["-m", "gan_lightning", "fit", "--config", "configs/trainer/slurm.yaml"],
        *["--config", str(RING), "--trainer.max_steps", "7"],  # the user's arguments, in between
        *["--trainer.num_nodes", "2", "--trainer.devices", "2"],
        *["--trainer.default_root_dir", run_dir, "--checkpoint.dirpath", f"{run_dir}/checkpoints"],
    ]
    assert call["cwd"] == str(tmp_path / "submit") and (tmp_path / "submit" / run_dir).is_dir()
    assert call["env"] == {
        "WANDB_RUN_ID": "lab-4321",  # a requeued run continues the same W&B run
        "WANDB_NAME": "gan-4321",
        "OMP_NUM_THREADS": "6",
        "SRUN_CPUS_PER_TASK": "6",  # srun no longer inherits --cpus-per-task (Slurm 22.05)
    }
    assert "warning" not in res.stdout


def test_sbatch_script_arguments_win_over_the_users_configs(no_slurm, tmp_path):
    """The command the script builds, parsed by our CLI inside task 3: ring.yaml's default_root_dir
    (runs/ring, shared by every job: a new job would resume from an old job's hpc checkpoint) is replaced
    by the job's own directory, and devices/num_nodes match the allocation."""
    run_dir = tmp_path / "run"
    res = run_script(tmp_path, ["--config", str(RING), "--trainer.devices", "1"], RUN_DIR=str(run_dir))
    assert res.returncode == 0, res.stdout + res.stderr
    argv = srun_call(tmp_path)["argv"]
    fit_args = argv[argv.index("fit") + 1 :]
    fit_args[1] = str(ROOT / fit_args[1])  # configs/trainer/slurm.yaml, relative to the submit dir
    slurm_task(no_slurm)
    trainer = GANCLI(args=fit_args, run=False).trainer
    assert Path(trainer.default_root_dir) == run_dir
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size, trainer.global_rank) == (2, 2, 4, 3)
    ckpt = next(cb for cb in trainer.callbacks if isinstance(cb, GStepCheckpoint))
    assert Path(ckpt.dirpath) == run_dir / "checkpoints"


def test_sbatch_script_resumes_from_the_newest_checkpoint_of_its_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    files = {name: run_dir / name for name in ("hpc_ckpt_1.ckpt", "hpc_ckpt_2.ckpt", "checkpoints/last.ckpt")}
    for i, name in enumerate(["hpc_ckpt_1.ckpt", "checkpoints/last.ckpt", "hpc_ckpt_2.ckpt"]):
        files[name].write_text("x")
        os.utime(files[name], (1e9 + i, 1e9 + i))
    # A warm start: without the script's --ckpt_path, every requeue would restart from this file.
    user_args = ["--config", str(RING), "--ckpt_path", "warm.ckpt"]
    res = run_script(tmp_path, user_args, RUN_DIR=str(run_dir), SLURM_RESTART_COUNT="2")
    assert res.returncode == 0, res.stdout + res.stderr
    argv = srun_call(tmp_path)["argv"]
    assert argv[-2:] == ["--ckpt_path", str(files["hpc_ckpt_2.ckpt"])]  # after the user's --ckpt_path
    assert f"resuming from {files['hpc_ckpt_2.ckpt']}" in res.stdout
    # Requeued without a signal (node failure): the hpc checkpoint is older than last.ckpt.
    os.utime(files["checkpoints/last.ckpt"], (1e9 + 9, 1e9 + 9))
    res = run_script(tmp_path, user_args, RUN_DIR=str(run_dir))
    assert srun_call(tmp_path)["argv"][-2:] == ["--ckpt_path", str(files["checkpoints/last.ckpt"])]


@pytest.mark.parametrize(
    "env,message",
    [
        ({"SLURM_JOB_NAME": "bash"}, "job name 'bash' makes Lightning ignore SLURM"),
        ({"SLURM_JOB_NAME": "interactive"}, "job name 'interactive'"),
        ({"SLURM_NTASKS_PER_NODE": None}, "request tasks with --ntasks-per-node"),
        ({"SLURM_NTASKS": "3"}, "SLURM_NTASKS=3 is not --nodes (2) x --ntasks-per-node (2)"),
        ({"SLURM_JOB_ID": None}, "not inside a SLURM job"),
    ],
    ids=["bash", "interactive", "ntasks", "ntasks_mismatch", "no_job"],
)
def test_sbatch_script_refuses_allocations_lightning_would_mishandle(tmp_path, env, message):
    res = run_script(tmp_path, ["--config", str(RING)], **env)
    assert res.returncode == 2
    assert message in res.stderr
    assert not (tmp_path / "srun.json").exists()


def test_sbatch_script_exits_with_the_status_of_srun_and_warns_of_short_time_limits(tmp_path):
    res = run_script(tmp_path, ["--config", str(RING)], FAKE_SRUN_RC="3", FAKE_TIME_LIMIT="5:00")
    assert res.returncode == 3
    assert "srun exited with status 3" in res.stdout
    assert "warning: time limit 5:00" in res.stdout


FORWARDING_SRUN = """#!/bin/bash
trap 'echo forwarded > "$FAKE_SRUN_OUT"; exit 0' USR1
touch "$FAKE_SRUN_OUT.started"
for _ in $(seq 300); do sleep 0.1; done
exit 1
"""


def test_sbatch_script_forwards_sigusr1_sent_to_the_batch_shell(tmp_path):
    """``--signal=B:USR1@90`` or ``scancel --batch --signal=USR1`` signal the batch shell only, which
    would die of it; the script passes it on to srun (which passes it on to the tasks)."""
    proc = run_script(tmp_path, ["--config", str(RING)], srun=FORWARDING_SRUN, wait=False)
    try:
        started = tmp_path / "srun.json.started"
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the stand-in srun never started"
        os.kill(proc.pid, signal.SIGUSR1)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "forwarding SIGUSR1 to the tasks" in out
    assert (tmp_path / "srun.json").read_text().strip() == "forwarded"


# --- a real one-node cluster (sudo slurm/local_cluster.sh) ------------------------------------------

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "DEADLINE"}


def _cluster_problem() -> str | None:
    for tool in ("sbatch", "sinfo", "squeue", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            return f"`{tool}` not on PATH: start a one-node cluster with `sudo slurm/local_cluster.sh`"
    res = subprocess.run(["sinfo", "-h", "-o", "%t %c"], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        return f"sinfo failed ({res.stderr.strip()}): is slurmctld running? `sudo slurm/local_cluster.sh`"
    if not any(line.split()[0] in ("idle", "mix") for line in res.stdout.splitlines() if line.strip()):
        return f"no idle SLURM node (sinfo: {res.stdout.strip()!r})"
    return None


@pytest.fixture(scope="module")
def cluster() -> int:
    """The number of CPUs of the (first) idle node."""
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)
    out = subprocess.run(["sinfo", "-h", "-t", "idle,mix", "-o", "%c"], capture_output=True, text=True).stdout
    return int(out.split()[0])


class Job:
    def __init__(self, tmp_path: Path, name: str, fit_args: list[str], tasks: int = 1) -> None:
        self.run_dir = tmp_path / "run"
        env = dict(
            os.environ,
            RUN_DIR=str(self.run_dir),
            PYTHON=sys.executable,
            OMP_NUM_THREADS="1",
            WANDB_MODE="offline",
            WANDB_SILENT="true",
            PYTHONWARNINGS="ignore",
        )
        cmd = [
            "sbatch",
            "--parsable",
            f"--job-name={name}",
            f"--ntasks-per-node={tasks}",
            "--gpus-per-node=0",
            "--cpus-per-task=1",
            "--time=10",  # a stuck job ends by itself (shorter limits get a warning)
            f"--output={tmp_path}/%x-%j.out",
            str(SBATCH),
            *["--config", str(RING), "--trainer.enable_model_summary", "false"],
            *["--trainer.val_check_interval", "null", "--trainer.check_val_every_n_epoch", "null"],
            *["--trainer.limit_val_batches", "0", "--trainer.log_every_n_steps", "50"],
            *fit_args,
        ]
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        self.id = res.stdout.strip().split(";")[0]
        self.log = tmp_path / f"{name}-{self.id}.out"

    def info(self) -> dict[str, str]:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", self.id], capture_output=True, text=True
        ).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def queued(self) -> bool:
        out = subprocess.run(
            ["squeue", "-h", "-j", self.id, "-o", "%T"], capture_output=True, text=True
        ).stdout
        return bool(out.strip())

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_for(self, predicate, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.cancel()
                pytest.fail(f"job {self.id}: no {what} after {timeout:.0f}s; log:\n{self.text()[-3000:]}")
            time.sleep(0.5)

    def wait(self, timeout: float) -> dict[str, str]:
        self.wait_for(lambda: not self.queued() and self.info().get("JobState") in TERMINAL, "end", timeout)
        return self.info()

    def cancel(self) -> None:
        subprocess.run(["scancel", self.id], capture_output=True)


def load(path: Path) -> dict:
    return torch.load(path, weights_only=False, map_location="cpu")


@pytest.mark.slow
def test_sbatch_job_trains_to_max_steps_with_a_fixed_wandb_id(cluster, tmp_path):
    job = Job(
        tmp_path,
        "gan-test",
        [
            *["--trainer.max_steps", "200", "--checkpoint.every_n_train_steps", "100"],
            *["--samples.every_n_steps", "100"],
            *["--config", str(ROOT / "configs/logger/wandb.yaml"), "--trainer.logger.init_args.save_dir"],
            str(tmp_path / "run"),
        ],
    )
    info = job.wait(timeout=120)
    log = job.text()
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "0"), log[-3000:]
    assert "SLURM auto-requeueing enabled" in log  # SLURMEnvironment was detected inside the real task
    assert "srun exited with status 0" in log
    last = load(job.run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 200 and int(last["state_dict"]["d_steps_done"]) == 200
    assert (job.run_dir / "checkpoints" / "step=0000200.ckpt").exists()
    wandb_id = re.search(r"W&B id (\S+)", log).group(1)
    assert wandb_id.endswith(f"-{job.id}")  # <cluster name>-<job id>
    runs = [p.name for p in (job.run_dir / "wandb").glob("offline-run-*")]
    assert len(runs) == 1 and runs[0].endswith(f"-{wandb_id}"), runs


@pytest.mark.slow
def test_sigusr1_saves_an_hpc_checkpoint_requeues_and_the_job_resumes_to_max_steps(cluster, tmp_path):
    max_steps = 500
    job = Job(
        tmp_path,
        "gan-requeue",
        [
            *["--trainer.max_steps", str(max_steps), "--samples.every_n_steps", "100"],
            # no periodic checkpoint: the requeued run must resume from the hpc one
            *["--checkpoint.every_n_train_steps", str(max_steps)],
        ],
    )
    samples = job.run_dir / "lightning_logs" / f"version_{job.id}" / "samples"  # log dir: version = job id
    job.wait_for(lambda: (samples / "step_0000100.png").exists(), "training progress", timeout=90)
    subprocess.run(["scancel", "--signal=USR1", job.id], check=True)  # what --signal=SIGUSR1@90 sends
    info = job.wait(timeout=150)
    log = job.text()
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), log[-4000:]
    hpc = job.run_dir / "hpc_ckpt_1.ckpt"
    for line in [
        "SLURMRequeue: saved ",
        f"requeue {job.id}: rc=0",
        f"job {job.id} (gan-requeue) on",
        ", restart 1,",
        "resuming from ",
        "Restored all states from the checkpoint at ",
        f"`Trainer.fit` stopped: `max_steps={max_steps}` reached.",
    ]:
        assert line in log, f"{line!r} not in the job's log:\n{log[-4000:]}"
    saved_at = load(hpc)["global_step"]
    assert 100 <= saved_at < max_steps
    # SLURMRequeue stops the run after saving, so last.ckpt (written at train end, and the newer file that
    # train.sbatch picks) holds the same G step as the hpc checkpoint
    resumed_from = re.search(r"Restored all states from the checkpoint at (\S+)", log).group(1)
    assert Path(resumed_from) in (hpc, job.run_dir / "checkpoints" / "last.ckpt")
    assert int(load(hpc)["state_dict"]["d_steps_done"]) == saved_at  # saved at a G-step boundary
    last = load(job.run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == max_steps and int(last["state_dict"]["d_steps_done"]) == max_steps
    assert not list((job.run_dir / "checkpoints").glob("last-v*.ckpt"))
    # one log dir across the requeue; the second run's config gets a numbered name instead of clashing
    log_dir = samples.parent
    assert (log_dir / "config.yaml").exists() and (log_dir / "config.1.yaml").exists()
    print(f"job {job.id}: hpc_ckpt_1.ckpt at G step {saved_at}, finished at {last['global_step']}")


@pytest.mark.slow
def test_two_task_ddp_job_on_cpu(cluster, tmp_path):
    if cluster < 2:
        pytest.skip(f"the SLURM node has {cluster} CPU(s); a 2-task job needs 2")
    job = Job(
        tmp_path,
        "gan-ddp",
        [
            *["--trainer.max_steps", "100", "--checkpoint.every_n_train_steps", "100"],
            *["--samples.every_n_steps", "100"],
            *["--data.init_args.num_samples", "4000", "--data.init_args.batch_size", "64"],
        ],
        tasks=2,
    )
    info = job.wait(timeout=150)
    log = job.text()
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    last = load(job.run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 100 and int(last["state_dict"]["d_steps_done"]) == 100
