"""Command line: ``python -m gan_lightning {fit,validate,test,sample,evaluate} ...``.

``fit``/``validate``/``test`` are LightningCLI (jsonargparse) subcommands; ``sample`` and ``evaluate``
are small jsonargparse parsers of their own (they need a checkpoint, not a Trainer). Errors that are
the user's to fix (a wrong key, a missing dataset, a size the network can't make, a diverged run) are
printed as one ``error:`` line, with no traceback, and exit with status 2.
"""

from __future__ import annotations

import os
import re
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from gan_lightning.callbacks import GStepCheckpoint, SampleGrid
from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import ConfigError, GanLightningError
from gan_lightning.evaluation import BestCheckpoint, GANMetrics
from gan_lightning.module import GANModule


class GANSaveConfig(SaveConfigCallback):
    """Saves the full resolved config next to the run, and into W&B's run config when W&B is used.

    Lightning's callback raises when ``config.yaml`` already exists (W&B shares one log dir across
    runs, Lightning #7679); overwriting would clobber another run's record. Instead an existing file is
    kept and this run's config gets a numbered name.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        name = self.config_filename
        i = 1
        while (log_dir / name).exists() and not self.already_saved:
            name = f"{Path(self.config_filename).stem}.{i}{Path(self.config_filename).suffix}"
            i += 1
        self.config_filename = name
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:  # rank 0 only: no collectives in here
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.clone().as_dict(), allow_val_change=True)


class GANCLI(LightningCLI):
    """LightningCLI with the data shape linked from the data module to the networks, the sample grid,
    checkpoint, metrics and best-FID callbacks always present (``--samples.*``, ``--checkpoint.*``,
    ``--metrics.*``, ``--best.*``), and two optimizers configured on the model (``model.g_optimizer`` /
    ``model.d_optimizer``)."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", GANSaveConfig)
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False})
        super().__init__(
            GANModule,
            GANDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            args=args,
            run=run,
            **kwargs,
        )

    def _parse_ckpt_path(self) -> None:
        """Lightning replaces the model config with the checkpoint's hyperparameters when ``--ckpt_path``
        is given, silently dropping any model change on the command line. A resumed run must be the
        same run, so a change is refused instead (as mimicry does), naming the keys that differ."""
        sub = self.config.get("subcommand")
        if not sub or not self.config[sub].get("ckpt_path"):
            return
        given = _flatten(self.config[sub].model.clone().as_dict())
        super()._parse_ckpt_path()
        saved = _flatten(self.config[sub].model.clone().as_dict())
        changed = sorted(
            k for k in given.keys() | saved.keys() if k != "data_shape" and given.get(k) != saved.get(k)
        )
        if changed:
            diffs = ", ".join(
                f"model.{k} (checkpoint: {saved.get(k)!r}, given: {given.get(k)!r})" for k in changed
            )
            raise ConfigError(
                f"--ckpt_path {self.config[sub].ckpt_path} was trained with a different model config: "
                f"{diffs}; "
                "resume with the run's own config, or start a new run without --ckpt_path"
            )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.data_shape", "model.data_shape", apply_on="instantiate")
        parser.add_lightning_class_args(SampleGrid, "samples")
        parser.add_lightning_class_args(GStepCheckpoint, "checkpoint")
        parser.add_lightning_class_args(GANMetrics, "metrics")
        parser.add_lightning_class_args(BestCheckpoint, "best")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.every_n_train_steps": 500,
                "checkpoint.filename": "step={step:07d}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )


_NOISE = re.compile(
    r"^(Does not validate|Subtypes:|Errors:|Given value|Expected a <class 'NoneType'>|"
    r"Problem with given class_path)"
)


def _one_line(err: BaseException) -> str:
    """jsonargparse explains a bad nested value over many lines (union subtypes, the value dump); keep
    the full key and the first real reason, e.g. ``data.batch_size: Expected a <class 'int'>``."""
    text = str(err).strip()
    key = ".".join(re.findall(r'Parser key "([^"]+)"', text))
    lines = [re.sub(r'^Parser key "[^"]+":', "", ln.strip().lstrip("-")).strip() for ln in text.splitlines()]
    reasons = [ln for ln in lines if ln and not _NOISE.match(ln)]
    reason = reasons[0] if reasons else lines[0]
    named = re.search(r"(Option|Key) '[^']+' is not (accepted|expected)", reason)
    reason = named.group(0) if named else re.split(r"\.? Got value", reason)[0]
    return f"{key}: {reason}" if key else reason


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): list(tree) if isinstance(tree, tuple) else tree}


def _worker_message(text: str) -> str:
    """A DataLoader worker re-raises our error with its traceback folded into the message; keep the
    original one-line message (the last line, after the exception's name)."""
    if "Original Traceback" not in text:
        return text
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    return re.sub(r"^[\w.]*Error:\s*", "", last)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "sample":
            from gan_lightning.sample import sample_main

            sample_main(args[1:])
        elif args and args[0] == "evaluate":
            from gan_lightning.evaluate import evaluate_main

            evaluate_main(args[1:])
        else:
            GANCLI(args=argv)  # None: LightningCLI reads sys.argv itself
    except GanLightningError as err:
        print(f"error: {_worker_message(str(err))}", file=sys.stderr)
        sys.exit(2)
    except ArgumentError as err:
        print(
            f"error: {_one_line(err)}  (see --help, or --print_config for the full config)", file=sys.stderr
        )
        sys.exit(2)
    except ValueError as err:
        # jsonargparse re-raises an error from a class_path object's __init__ (e.g. our ConfigError) as a
        # ValueError listing the union's subtypes; anything else is a bug and keeps its traceback.
        if "Union subtypes" not in str(err) or os.environ.get("GAN_LIGHTNING_TRACEBACK"):
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)
