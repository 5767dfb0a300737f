"""Run directories: each run claims its own ``version_N`` atomically, and a run that fails before its
first generator step leaves nothing behind.

Lightning's TensorBoard/CSV loggers pick ``version_N`` by listing the folder, so two runs started at the
same moment on one root can both take ``version_0``, and their configs, checkpoints and grids mix.
Here the CLI claims the folder with an exclusive ``mkdir`` (retrying on the next number) and passes the
version to the logger, on global rank 0 only; the other ranks learn the directory by Lightning's usual
broadcast of ``trainer.log_dir``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

_VERSION = re.compile(r"version_(\d+)")
_ENV = "GAN_LIGHTNING_RUN_VERSION"  # passed to the DDP processes Lightning launches from this one


@dataclass
class Claim:
    folder: Path
    started: bool = False  # set once a generator step is done: from then on the run's files are kept
    released: bool = field(default=False, repr=False)


_claims: list[Claim] = []


def is_global_zero_process() -> bool:
    """Before any Trainer exists: rank 0 as launchers (torchrun, SLURM, Lightning's DDP) set it."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def claim_version(parent: str | Path) -> int:
    """Create ``parent/version_N`` exclusively, N one past the highest existing, and return N."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for d in parent.iterdir() if (m := _VERSION.fullmatch(d.name))]
    n = max(taken, default=-1) + 1
    while True:
        try:
            (parent / f"version_{n}").mkdir()
        except FileExistsError:  # another run took it between the listing and the mkdir
            n += 1
            continue
        _claims.append(Claim(parent / f"version_{n}"))
        os.environ[_ENV] = str(n)
        return n


def run_version(parent: str | Path) -> int | None:
    """Rank 0 claims a new version; the processes it launches read it from the environment."""
    if is_global_zero_process():
        return claim_version(parent)
    given = os.environ.get(_ENV)
    return int(given) if given is not None else None


def mark_started() -> None:
    for claim in _claims:
        claim.started = True


def release_failed() -> list[Path]:
    """Remove the folders this process claimed, when the run failed before its first generator step.
    Only folders this process created are touched; one holding a checkpoint is always kept."""
    removed = []
    for claim in _claims:
        if claim.started or claim.released or not claim.folder.is_dir():
            continue
        if any(claim.folder.rglob("*.ckpt")):
            continue
        shutil.rmtree(claim.folder, ignore_errors=True)
        claim.released = True
        removed.append(claim.folder)
    os.environ.pop(_ENV, None)
    return removed


def reset() -> None:
    """Forget this process's claims (between runs in one process, e.g. in tests)."""
    _claims.clear()
    os.environ.pop(_ENV, None)
