"""What the benchmarks share: a GAN built by the real CLI, with logging, sampling and checkpoints off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gan_lightning.cli import GANCLI

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
