"""Callbacks that work with any logger: sample grids from the fixed noise, saved as PNG files next to
the run and sent to W&B or TensorBoard when one is configured."""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torchvision.utils import make_grid, save_image

from gan_lightning import rundir
from gan_lightning.checkpoints import KeyedCheckpoint, clean_checkpoint_dir, install_atomic_checkpoint_io
from gan_lightning.data.base import to_uint8
from gan_lightning.io import atomic_write, remove_stale_temporaries


def image_grid(images: Tensor, nrow: int = 8) -> Tensor:
    """(N, C, H, W) in [-1, 1] -> one uint8 (3 or 1, H', W') grid."""
    return make_grid(to_uint8(images).float() / 255.0, nrow=nrow, padding=2, pad_value=1.0)


def save_grid(images: Tensor, path: str | Path, nrow: int = 8) -> Path:
    grid = image_grid(images, nrow)
    return atomic_write(path, lambda f: save_image(grid, f, format="png"))


def save_scatter(points: Tensor, path: str | Path, reference: Tensor | None = None) -> Path:
    """2D samples (N, 2) as a scatter plot, with optional reference points (e.g. the mixture means)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    pts = points.detach().cpu().float()
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=30, marker="x", c="red")
    ax.set_aspect("equal")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


class SampleGrid(L.Callback):
    """Every ``every_n_steps`` generator steps (and at the end of fit), samples G (EMA when present)
    on the module's fixed noise and writes ``<log_dir>/samples/step_XXXXXXX.png``; also logs the image
    to W&B / TensorBoard loggers. 2D data gets a scatter plot of ``num_points`` samples instead.

    While a model grows (``model.growth``), a grid is also written at the end of every stage, and every
    grid's name gives the resolution G ran at: ``step_XXXXXXX_16x16.png`` (upsampled to the data's size).
    """

    def __init__(self, every_n_steps: int = 500, nrow: int = 8, num_points: int = 2500) -> None:
        self.every_n_steps = every_n_steps
        self.nrow = nrow
        self.num_points = num_points
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        step = trainer.global_step
        growth = getattr(pl_module, "growth", None)
        stage_end = growth is not None and step in growth.stage_ends()
        periodic = self.every_n_steps > 0 and step % self.every_n_steps == 0
        if (periodic or stage_end) and step != self._last_step:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_step:
            self.write(trainer, pl_module)

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        self._last_step = trainer.global_step
        # trainer.log_dir broadcasts from rank 0 (a collective): every rank must ask, not rank 0 alone.
        return self._write(trainer, pl_module, Path(trainer.log_dir or trainer.default_root_dir))

    @rank_zero_only
    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, log_dir: Path) -> Path:
        # Rank 0 only is safe here: sampling is eval mode (no SyncBN collective) and no metric is computed.
        step = trainer.global_step
        name = f"step_{step:07d}"
        if getattr(pl_module, "growth", None) is not None:
            res = 4 * 2**pl_module.generator.stage
            name += f"_{res}x{res}"
        out = log_dir / "samples" / f"{name}.png"
        if len(pl_module.data_shape) == 3:
            path = save_grid(
                pl_module.sample(pl_module.fixed_noise, pl_module.fixed_labels).cpu(), out, self.nrow
            )
        else:
            g = torch.Generator(device=pl_module.device).manual_seed(0)
            z = pl_module.draw_latents(self.num_points, g)
            means = getattr(trainer.datamodule, "means", None)
            path = save_scatter(pl_module.sample(z).cpu(), out, means)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # step = G steps, the same x-axis as the scalars (one training step is one G step)
                logger.log_image("samples", images=[str(path)], step=step, caption=[f"G step {step}"])
            elif isinstance(logger, TensorBoardLogger):
                import numpy as np
                from PIL import Image

                img = np.asarray(Image.open(path).convert("RGB"))
                logger.experiment.add_image("samples", img, global_step=step, dataformats="HWC")
        return path


class GStepCheckpoint(KeyedCheckpoint):
    """ModelCheckpoint for a GANModule, where ``trainer.global_step`` counts generator steps.

    Lightning 2.6's manual-optimization branch of ``on_train_batch_end`` warns on every save that no
    "pre-optimization state" was stored (irrelevant here: a G-step boundary *is* a consistent state)
    and silently ignores ``train_time_interval`` (Lightning #21699). This override applies both the step
    and the time intervals, and also saves ``last.ckpt`` when training ends between two periodic saves,
    so no generator step is lost.

    When to save is decided here, from the arguments this class keeps and public Trainer state. Saving
    itself is ModelCheckpoint's (top-k bookkeeping, ``last.ckpt``, versions, logger notification), which
    has no public entry point: ``_save_topk_checkpoint``, ``_save_last_checkpoint`` and
    ``_last_global_step_saved`` are the only private members used, pinned in pyproject.toml and checked by
    tests/test_versions.py.

    It also puts :class:`~gan_lightning.checkpoints.AtomicCheckpointIO` in place (same-directory temporary
    file, fsync, rename), and removes the temporary files a killed run left in its directory.
    """

    def __init__(
        self,
        *args: Any,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args, every_n_train_steps=every_n_train_steps, train_time_interval=train_time_interval, **kwargs
        )
        self.every_n_train_steps = every_n_train_steps or 0  # 0: not by steps, as in ModelCheckpoint
        self.train_time_interval = train_time_interval
        self._time_of_last_save: float | None = None
        self._save_after_validation = False  # a due save whose monitored value only validation logs

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        install_atomic_checkpoint_io(trainer)
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero:
            clean_checkpoint_dir(self.dirpath)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._time_of_last_save = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        rundir.mark_started()  # a generator step is done: this run's directory is kept from now on
        if self._skip(trainer):
            return
        step_due = self.every_n_train_steps >= 1 and trainer.global_step % self.every_n_train_steps == 0
        time_due = False
        if self.train_time_interval is not None:
            last, interval = self._time_of_last_save, self.train_time_interval.total_seconds()
            time_due = last is not None and time.monotonic() - last >= interval
            time_due = trainer.strategy.broadcast(time_due)  # rank 0 decides: no rank waits alone
        if not (step_due or time_due):
            return
        if self.monitor is not None and self.monitor not in self._candidates(trainer):
            self._save_after_validation = True
            return
        self._save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._save_after_validation and not self._skip(trainer):
            self._save_after_validation = False
            self._save(trainer)
            return
        super().on_validation_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._candidates(trainer))

    def _skip(self, trainer: L.Trainer) -> bool:
        """Not fitting, a sanity check or a fast_dev_run, or this step is saved already."""
        return (
            bool(trainer.fast_dev_run)
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or self._last_global_step_saved == trainer.global_step
        )

    @staticmethod
    def _candidates(trainer: L.Trainer) -> dict[str, Tensor]:
        """The values a filename or ``monitor`` may name: the logged metrics, the epoch and the step."""
        values = copy.deepcopy(trainer.callback_metrics)
        values["epoch"] = torch.tensor(trainer.current_epoch)
        values["step"] = torch.tensor(trainer.global_step)
        return values

    def _save(self, trainer: L.Trainer) -> None:
        candidates = self._candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
        self._time_of_last_save = time.monotonic()


_HPC_CKPT = re.compile(r"hpc_ckpt_(\d+)\.ckpt")


def hpc_save_path(root: str | Path) -> str:
    """``root/hpc_ckpt_<N+1>.ckpt``, N the highest number already there (0 if none): the name under which
    Lightning's own SLURM requeue saves, and that a restarted fit with no ``ckpt_path`` loads (the highest
    N in ``default_root_dir``). tests/test_versions.py checks it against Lightning's private original."""
    fs = get_filesystem(str(root))
    names = [os.path.basename(str(p)) for p in fs.ls(str(root), detail=False)] if fs.isdir(str(root)) else []
    numbers = [int(m.group(1)) for m in map(_HPC_CKPT.fullmatch, names) if m]
    return os.path.join(str(root), f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt")


class SLURMRequeue(L.Callback):
    """SLURM requeue at a generator-step boundary: on SIGUSR1 (``#SBATCH --signal=SIGUSR1@90``), save
    ``default_root_dir/hpc_ckpt_N.ckpt`` after the current G step, run ``scontrol requeue`` and stop.

    In ``configs/trainer/slurm.yaml``. For the fit it replaces the SIGUSR1 handler that Lightning's
    SLURMEnvironment installed: that one saves inside the signal handler, wherever the step is, and
    between a D and a G update the checkpoint holds one D step too many, so the resumed run is not the
    same run (seen on the local cluster). Forked DataLoader workers inherit handlers: ours does nothing
    outside the main process, and GANDataModule's workers ignore SIGUSR1 anyway.

    Args:
        check_every_n_steps: how often the ranks agree on whether the signal came (one all-reduce).
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._pid: int | None = None
        self._signalled = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if os.getpid() == self._pid:  # a forked DataLoader worker does nothing
            self._signalled = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pid, self._signalled = os.getpid(), False
        if trainer.is_global_zero:  # a requeued job: the killed one may have left a partial hpc save
            remove_stale_temporaries(trainer.default_root_dir, "hpc_ckpt_*.ckpt")
        self._previous = signal.signal(signal.SIGUSR1, self._handler)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.check_every_n_steps:
            return
        # every rank takes part, so all of them save and stop at the same generator step
        if not trainer.strategy.reduce_boolean_decision(self._signalled, all=False):
            return
        path = hpc_save_path(trainer.default_root_dir)
        trainer.save_checkpoint(path)
        if trainer.is_global_zero and "SLURM_JOB_ID" in os.environ:
            array = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
            rc = subprocess.call(["scontrol", "requeue", job])
            print(
                f"SLURMRequeue: saved {path} at generator step {trainer.global_step}; requeue {job}: rc={rc}"
            )
        trainer.should_stop = True
