"""``python -m gan_lightning evaluate --ckpt_path CKPT [--metrics.* ...] [--out metrics.json]``

Runs :class:`~gan_lightning.evaluation.GANMetrics` on a checkpoint's generator (EMA when present) and
writes the results as JSON. The data and the metrics settings come from the run's own ``config.yaml``
(found next to the checkpoint, or given with ``--run_config``); any ``--data.*`` / ``--metrics.*`` flag
overrides them, e.g. ``--metrics.extractor gan_lightning.metrics.InceptionV3 --metrics.num_fake 50000``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentParser

from gan_lightning.checkpoints import read_checkpoint
from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import GANMetrics, finite_or_none
from gan_lightning.io import atomic_write_text
from gan_lightning.sample import check_output_dir, load_module


def find_run_config(ckpt_path: Path) -> Path | None:
    """``<log_dir>/config.yaml`` for a checkpoint at ``<log_dir>/checkpoints/x.ckpt`` (or beside it)."""
    for folder in (ckpt_path.parent.parent, ckpt_path.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def build_parser(defaults: dict[str, Any]) -> ArgumentParser:
    parser = ArgumentParser(prog="python -m gan_lightning evaluate", exit_on_error=False, allow_abbrev=False)
    parser.add_argument("--ckpt_path", type=str, required=True, help="a checkpoint written by fit")
    parser.add_argument("--run_config", type=str | None, default=None, help="the run's config.yaml")
    parser.add_argument("--out", type=str, default="metrics.json", help="where the JSON goes")
    parser.add_argument("--device", type=str, default="auto", help='"auto", "cpu" or "cuda"')
    parser.add_argument("--seed_everything", type=int | None, default=None, help="the run's seed")
    parser.add_subclass_arguments(GANDataModule, "data", required=False)
    parser.add_class_arguments(GANMetrics, "metrics")
    parser.set_defaults(defaults)
    return parser


def evaluate_main(argv: list[str]) -> dict[str, Any]:
    ckpt = _flag(argv, "--ckpt_path")
    given = _flag(argv, "--run_config")
    run_config = Path(given) if given else find_run_config(Path(ckpt)) if ckpt else None
    defaults: dict[str, Any] = {}
    if run_config is not None:
        if not run_config.is_file():
            raise ConfigError(f"--run_config {run_config} does not exist; pass the run's config.yaml")
        saved = yaml.safe_load(run_config.read_text()) or {}
        defaults = {k: saved[k] for k in ("data", "metrics", "seed_everything") if saved.get(k) is not None}
    parser = build_parser(defaults)
    cfg = parser.parse_args(argv)
    if cfg.get("data") is None:
        raise ConfigError(
            "evaluate needs the data the model was trained on: no config.yaml was found next to the "
            "checkpoint; pass --run_config RUN_DIR/config.yaml or --data"
        )
    init = parser.instantiate_classes(cfg)
    return evaluate(init.ckpt_path, init.data, init.metrics, init.out, init.device, init.seed_everything)


def evaluate(
    ckpt_path: str,
    datamodule: GANDataModule,
    metrics: GANMetrics,
    out: str | Path = "metrics.json",
    device: str = "auto",
    seed: int | None = None,
) -> dict[str, Any]:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if seed is not None:
        os.environ["PL_GLOBAL_SEED"] = str(seed)  # the data split depends on the run's seed
    read_checkpoint(ckpt_path, mmap=True)  # a bad checkpoint fails before anything is created
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; pass the path of the JSON file to write")
    check_output_dir(out.parent, f"--out {out}: its folder")  # before the evaluation's work, not after
    module = load_module(ckpt_path, device)
    if metrics.extractor is None and len(module.data_shape) == 3:
        raise ConfigError(
            "no feature extractor for image metrics; pass --metrics.extractor "
            "gan_lightning.metrics.InceptionV3 (standard FID) or gan_lightning.metrics.DigitFeatures"
        )
    results = metrics.evaluate(module, datamodule)
    # mmap: only the step is read here, the tensors were loaded once by load_module
    step = read_checkpoint(ckpt_path, mmap=True).get("global_step", -1)
    report = {
        "checkpoint": str(ckpt_path),
        "generator_step": int(step),
        "extractor": getattr(metrics.extractor, "name", None),
        "num_fake": metrics.num_fake if len(module.data_shape) == 3 else metrics.num_points,
        "real_split": metrics.real_split,
        "seconds": round(metrics.last_seconds, 3),
        "metrics": {k: finite_or_none(v) for k, v in results.items()},
    }
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}: " + ", ".join(f"{k}={v:.4g}" for k, v in results.items()))
    return report
