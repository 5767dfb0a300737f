"""The data contract: datasets hold uint8 images (or float 2D points); batches become float in [-1,1]
only once they are on the device, so the loader never moves floats it doesn't have to.

One Lightning training step is one *generator* step. Its batch holds ``k * batch_size`` real samples,
where ``k`` is the number of D steps the schedule asks for at that G step: each D step gets its own
fresh ``batch_size`` slice. :class:`StepBatchSampler` makes those batches from one endless, seeded
stream of indices, positioned from the trainer's step count, so a resumed run draws exactly the
batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from gan_lightning.errors import ConfigError
from gan_lightning.schedules import DSteps, FixedDSteps


def to_unit_range(x: Tensor) -> Tensor:
    """uint8 in [0, 255] -> float32 in [-1, 1]. The one place this conversion happens."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x: Tensor) -> Tensor:
    """float in [-1, 1] -> uint8 in [0, 255] (clamped, rounded). The inverse of :func:`to_unit_range`."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)


class TensorSamples(Dataset):
    """A whole dataset held in memory: ``data`` (N, ...) uint8 images or float points, ``labels`` (N,).

    ``__getitems__`` returns a ready batch, so the loader does one index op per batch instead of
    ``batch_size`` ``__getitem__`` calls and a stack.
    """

    def __init__(self, data: Tensor, labels: Tensor | None = None) -> None:
        self.data = data
        self.labels = labels if labels is not None else torch.full((len(data),), -1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.data[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.data[idx], self.labels[idx]


def _already_batched(batch: Any) -> Any:
    return batch


def _ignore_requeue_signal(worker_id: int) -> None:
    # SLURM signals every process of a step; a forked worker would run the requeue handler it inherited
    # on its stale copy of the trainer (and save it over the real checkpoint).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


class SeededShuffleSampler(Sampler[int]):
    """A fresh permutation per pass, determined by (seed, pass): the stream is reproducible and
    resumable. Same interface as DistributedSampler (``set_epoch``), which Lightning swaps in under DDP.
    """

    def __init__(self, data_source: Dataset, seed: int = 0) -> None:
        self.num_samples = len(data_source)  # type: ignore[arg-type]
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist())


class StepBatchSampler(BatchSampler):
    """Yields, for each generator step g, the indices of ``d_steps(g)`` fresh real batches.

    The index stream is endless: pass p of the sampler (``set_epoch(p)``) follows pass p-1, with the
    incomplete tail of each pass dropped. Iteration starts where the trainer is (``current_step()``
    G steps done), so resuming continues the stream instead of restarting the epoch.
    A Lightning "epoch" is one pass over the data.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool = True,  # always True; kept so Lightning can re-instantiate it with a DDP sampler
        schedule: DSteps | None = None,
        current_step: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last=True)
        self.schedule = schedule or FixedDSteps(1)
        self.current_step = current_step or (lambda: 0)
        self.batches_per_pass = len(sampler) // batch_size  # type: ignore[arg-type]
        if self.batches_per_pass == 0:
            raise ConfigError(
                f"batch_size {batch_size} is larger than the {len(sampler)} samples per process; "  # type: ignore[arg-type]
                "lower data.init_args.batch_size"
            )

    def _pass_batches(self, p: int) -> list[list[int]]:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(p)
        idx = list(self.sampler)
        b = self.batch_size
        return [idx[i * b : (i + 1) * b] for i in range(self.batches_per_pass)]

    def position(self) -> dict[str, int]:
        """Where the stream stands: G steps done, D batches drawn, and the pass and batch they give."""
        g = self.current_step()
        d = self.schedule.total_d_steps(g)
        return {"generator_step": g, "d_batches": d, "pass": d // self.batches_per_pass}

    def __iter__(self) -> Iterator[list[int]]:
        g = self.current_step()
        d = self.schedule.total_d_steps(g)
        expected = getattr(self, "resume_position", None)
        if expected is not None and expected["generator_step"] == g:
            self.resume_position = None
            if expected["d_batches"] != d:
                raise ConfigError(
                    f"the checkpoint's data stream stood at {expected['d_batches']} D batches after {g} G "
                    f"steps, but this run's schedule gives {d}: resume with the run's own schedule"
                )
        p, offset = divmod(d, self.batches_per_pass)
        batches = self._pass_batches(p)
        for _ in range(len(self)):
            step: list[int] = []
            for _ in range(self.schedule.d_steps(g)):
                if offset == len(batches):
                    p, offset = p + 1, 0
                    batches = self._pass_batches(p)
                step += batches[offset]
                offset += 1
            yield step
            g += 1

    def __len__(self) -> int:
        """G steps in one pass over the data, counted from where the trainer is now (at least 1)."""
        g, n, d = self.current_step(), 0, 0
        while True:
            k = self.schedule.d_steps(g + n)
            if n > 0 and d + k > self.batches_per_pass:
                return n
            d, n = d + k, n + 1


class StepDataLoader(DataLoader):
    """A DataLoader over a :class:`StepBatchSampler`, resumable in Lightning's sense (``state_dict`` /
    ``load_state_dict``): the sampler is positioned from the trainer's step count, and the saved position
    is checked against it on resume, so Lightning's "dataloader is not resumable" warning would be false."""

    def state_dict(self) -> dict[str, int]:
        sampler = self.batch_sampler
        return sampler.position() if isinstance(sampler, StepBatchSampler) else {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if isinstance(self.batch_sampler, StepBatchSampler) and state:
            self.batch_sampler.resume_position = dict(state)


class GANDataModule(L.LightningDataModule):
    """Base class of every data source. Subclasses implement :meth:`build` and set ``data_shape``.

    Args:
        batch_size: real samples per D step, per process.
        num_workers: DataLoader workers (0 is fastest for the in-memory sources).
        seed: seed of the train/val split and of the shuffling; ``None`` takes the ``seed_everything``
            seed, as Lightning's DistributedSampler does.
    """

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.splits: dict[str, Dataset] = {}

    # --- what a source provides -------------------------------------------------------------
    @property
    def data_shape(self) -> tuple[int, ...]:
        """(C, H, W) for images, (2,) for points. Linked to the networks by the CLI."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Classes the labels of this source range over (0: unlabeled). Linked to the model by the CLI."""
        return 0

    def build(self, split: str) -> Dataset:
        """Return the dataset of ``split`` ("train", "val" or "test")."""
        raise NotImplementedError

    # --- Lightning hooks ---------------------------------------------------------------------
    def _seed(self) -> int:
        return self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "fit", ())
        for split in needed:
            if split not in self.splits:
                self.splits[split] = self.build(split)

    def _loader(self, dataset: Dataset, batch_sampler: BatchSampler) -> DataLoader:
        loader = StepDataLoader if isinstance(batch_sampler, StepBatchSampler) else DataLoader
        return loader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=self.num_workers,
            collate_fn=_already_batched if hasattr(dataset, "__getitems__") else None,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_ignore_requeue_signal if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.splits["train"]
        trainer = self.trainer
        schedule = getattr(trainer.lightning_module, "schedule", None) if trainer else None
        sampler = SeededShuffleSampler(dataset, seed=self._seed())
        step_sampler = StepBatchSampler(
            sampler,
            self.batch_size,
            schedule=schedule,
            current_step=(lambda: trainer.global_step) if trainer else None,
        )
        return self._loader(dataset, step_sampler)

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self.splits[split]
        batches = BatchSampler(range(len(dataset)), self.batch_size, drop_last=False)  # type: ignore[arg-type]
        return self._loader(dataset, batches)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        if x.dtype == torch.uint8:
            x = to_unit_range(x)
        return x, y
