"""What the benchmarks share: a GAN built by the real CLI, with logging, sampling and checkpoints off."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

from gan_lightning.cli import GANCLI
from gan_lightning.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
QUIET = {
    "--trainer.enable_progress_bar": "false",
    "--trainer.enable_model_summary": "false",
    "--trainer.logger": "false",
    "--trainer.limit_val_batches": "0",
    "--samples.every_n_steps": "0",
    "--checkpoint.every_n_train_steps": "0",
    "--checkpoint.save_last": "false",
}


def build(configs: list[str], overrides: dict[str, str], **cli_kwargs: Any) -> GANCLI:
    """``GANCLI`` (not run) from config files under configs/ plus flag overrides, quieted for timing."""
    args = [x for c in configs for x in ("--config", str(ROOT / "configs" / c))]
    args += [x for kv in {**QUIET, **overrides}.items() for x in kv]
    return GANCLI(args=args, run=False, **cli_kwargs)


def load_runs(path: Path) -> dict:
    """The finished runs a study keeps in ``path`` (``<out>/results.json``), by key; {} before the first."""
    return json.loads(path.read_text()) if path.is_file() else {}


def save_run(path: Path, key: str, row: Any) -> dict:
    """Add one finished run to ``path`` and return every run there. Locked, since several processes may
    share a study, and written atomically (gan_lightning.io: a temporary file in the same directory, then
    renamed), so a killed study never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = load_runs(path)
        runs[key] = row
        atomic_write_text(path, json.dumps(runs, indent=1))
    return runs
