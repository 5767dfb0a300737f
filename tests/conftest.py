"""Shared fixtures: a shrunken config for CLI runs (tiny nets, few steps), and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Real features and classifier weights go to a fresh cache per session: tests never read or write ~/.cache.
os.environ["GAN_LIGHTNING_CACHE"] = tempfile.mkdtemp(prefix="gan-lightning-cache-")


def tiny_args(root: Path, max_steps: int = 6, **extra: str) -> list[str]:
    """Overrides that shrink any image config to seconds on a CPU: width-8 nets, 28x28, batch 16."""
    args = {
        "--trainer.max_steps": str(max_steps),
        "--trainer.default_root_dir": str(root),
        "--trainer.enable_progress_bar": "false",
        "--trainer.enable_model_summary": "false",
        "--trainer.accelerator": "cpu",
        "--trainer.val_check_interval": "null",
        "--trainer.check_val_every_n_epoch": "1",
        "--trainer.limit_val_batches": "2",
        "--trainer.num_sanity_val_steps": "0",
        "--samples.every_n_steps": "3",
        "--checkpoint.every_n_train_steps": "3",
        "--metrics.num_fake": "200",  # configs with metrics (the quickstart's digit FID) evaluate cheaply
        "--metrics.num_real": "500",
        "--metrics.kid_subset_size": "100",
    }
    args.update(extra)
    return [x for kv in args.items() for x in kv]


DIGITS_TINY = [
    "--config",
    str(ROOT / "configs" / "quickstart.yaml"),
    "--model.generator.init_args.width",
    "8",
    "--model.discriminator.init_args.width",
    "8",
    "--data.init_args.image_size",
    "28",
    "--data.init_args.batch_size",
    "16",
]


def run_cli(args: list[str]) -> None:
    """Run ``python -m gan_lightning ARGS`` in this process."""
    from gan_lightning.cli import main

    main(args)


def run_cli_subprocess(
    args: list[str], timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": path, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gan_lightning", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def digits_tiny() -> list[str]:
    return list(DIGITS_TINY)


def one_error_line(res: subprocess.CompletedProcess) -> str:
    """The failed command's one ``error:`` line, after checking exit status 2 and no traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr[-3000:]
    return lines[0]
