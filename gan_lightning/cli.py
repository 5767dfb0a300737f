"""Command line: ``python -m gan_lightning {fit,validate,test,sample,evaluate} ...``.

``fit``/``validate``/``test`` are LightningCLI (jsonargparse) subcommands; ``sample`` and ``evaluate``
are small jsonargparse parsers of their own (they need a checkpoint, not a Trainer). Errors that are
the user's to fix (a wrong key, a missing dataset, a size the network can't make, a diverged run) are
printed as one ``error:`` line, with no traceback, and exit with status 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.utilities import rank_zero_info

from gan_lightning import distributed, rundir  # noqa: F401  (distributed: registers ddp_all_reduce)
from gan_lightning.callbacks import GStepCheckpoint, SampleGrid
from gan_lightning.checkpoints import clean_checkpoint_dir, read_checkpoint, warm_start
from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import ConfigError, GanLightningError
from gan_lightning.evaluation import BestCheckpoint, GANMetrics
from gan_lightning.health import HealthMonitor
from gan_lightning.io import atomic_write_text
from gan_lightning.module import GANModule

_FILE_LOGGERS = ("lightning.pytorch.loggers.TensorBoardLogger", "lightning.pytorch.loggers.CSVLogger")


class GANSaveConfig(SaveConfigCallback):
    """Saves the full resolved config next to the run, and into W&B's run config when W&B is used.

    Lightning's callback raises when ``config.yaml`` already exists (W&B shares one log dir across
    runs, Lightning #7679); overwriting would clobber another run's record. Instead an existing file is
    kept and this run's config gets a numbered name.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a broadcast: every rank asks
        if trainer.is_global_zero:
            name, i = self.config_filename, 1
            while (log_dir / name).exists():
                name = f"{Path(self.config_filename).stem}.{i}{Path(self.config_filename).suffix}"
                i += 1
            self.config_filename = name
            # atomic, like every file the project writes (Lightning's parser.save writes in place)
            atomic_write_text(log_dir / name, self.parser.dump(self.config, skip_none=False))
            self.save_config(trainer, pl_module, stage)
        self.already_saved = trainer.strategy.broadcast(True)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:  # rank 0 only: no collectives in here
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.clone().as_dict(), allow_val_change=True)


class NullProfiler(PassThroughProfiler):
    """The Trainer's default profiler, minus its per-call generator: Lightning wraps each of a step's
    ~75 callback and module hook calls in ``profiler.profile()``, a ``@contextmanager`` that does nothing
    without a profiler but costs a generator each time (docs/overhead.md). ``nullcontext`` is the same
    nothing, at a fraction of the cost."""

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return contextlib.nullcontext(action_name)


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

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # no prefix matching: `--trainer.max_step 10` must not silently mean `--trainer.max_steps`
        kwargs.update(allow_abbrev=False, exit_on_error=False)
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        if cfg.get("init_from") and sub != "fit":
            raise ConfigError(f"--init_from is for fit (a new run from a checkpoint's weights), not {sub}")
        if cfg.get("ckpt_path"):
            if cfg.get("init_from"):
                raise ConfigError(
                    "give --ckpt_path (resume the same run) or --init_from (a new run from its weights), "
                    "not both"
                )
            self._check_same_model(sub, read_checkpoint(cfg.ckpt_path, mmap=True))
        elif cfg.get("init_from"):
            read_checkpoint(cfg.init_from, mmap=True)  # fail now, before any run directory exists

    def _check_same_model(self, sub: str, ckpt: dict[str, Any]) -> None:
        """Lightning replaces the model config with the checkpoint's hyperparameters when ``--ckpt_path``
        is given, silently dropping any model change on the command line. A resumed run must be the
        same run, so a change is refused instead (as mimicry does), naming the keys that differ."""
        hparams = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if k != "_instantiator"}
        if not hparams:
            return
        try:
            saved_cfg = self.parser.parse_object({sub: {"model": hparams}}, self.config.clone())
        except Exception as err:  # jsonargparse raises several types; all mean "not this model's config"
            raise ConfigError(
                f"--ckpt_path {self.config[sub].ckpt_path}: its model config does not fit this version of "
                f"gan_lightning ({_one_line(err)}); start a new run or use --init_from"
            ) from None
        given = _flatten(self.config[sub].model.clone().as_dict())
        saved = _flatten(saved_cfg[sub].model.clone().as_dict())
        changed = sorted(
            k
            for k in given.keys() | saved.keys()
            if k not in ("data_shape", "num_classes") and given.get(k) != saved.get(k)  # linked from data
        )
        if changed:
            diffs = ", ".join(
                f"model.{k} (checkpoint: {saved.get(k)!r}, given: {given.get(k)!r})" for k in changed
            )
            raise ConfigError(
                f"--ckpt_path {self.config[sub].ckpt_path} was trained with a different model config: "
                f"{diffs}; resume with the run's own config, or start a new run from its weights with "
                "--init_from instead of --ckpt_path"
            )

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.profiler) is PassThroughProfiler:  # no --trainer.profiler given
            trainer.profiler = NullProfiler()
        return trainer

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        if sub:
            _check_sync_batchnorm(self.config[sub].trainer)
            _claim_run_dir(self.config[sub].trainer)

    def before_fit(self) -> None:
        if self.config.fit.get("ckpt_path") and self.trainer.is_global_zero:
            clean_checkpoint_dir(Path(self.config.fit.ckpt_path).parent)  # the killed run's temporaries
        if self.config.fit.get("init_from"):
            loaded = warm_start(self.model, self.config.fit.init_from)
            rank_zero_info(f"warm start: {', '.join(loaded)} from {self.config.fit.init_from}")

    def after_fit(self) -> None:
        rank_zero_info(run_summary(self.trainer))
        _close_process_group()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.data_shape", "model.data_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_argument(
            "--init_from",
            type=str | None,
            default=None,
            help="fit: start a new run (with this config) from the network weights of this checkpoint",
        )
        parser.add_lightning_class_args(SampleGrid, "samples")
        parser.add_lightning_class_args(GStepCheckpoint, "checkpoint")
        parser.add_lightning_class_args(GANMetrics, "metrics")
        parser.add_lightning_class_args(BestCheckpoint, "best")
        parser.add_lightning_class_args(HealthMonitor, "health")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.every_n_train_steps": 500,
                "checkpoint.filename": "step={step:07d}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )


def _check_sync_batchnorm(trainer_cfg: Namespace) -> None:
    """SyncBatchNorm runs on GPUs only (torch raises deep inside the first forward otherwise)."""
    accelerator = str(trainer_cfg.get("accelerator") or "auto")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if trainer_cfg.get("sync_batchnorm") and on_cpu:
        raise ConfigError(
            "trainer.sync_batchnorm needs GPUs (torch's SyncBatchNorm has no CPU kernel); drop it on CPU: "
            "each process then normalizes with its own batch's statistics"
        )


def _claim_run_dir(trainer_cfg: Namespace) -> None:
    """Give a file logger with no fixed version a freshly claimed ``version_N`` (see :mod:`rundir`)."""
    logger = trainer_cfg.get("logger")
    root = trainer_cfg.get("default_root_dir") or os.getcwd()
    # A SLURM job logs to version_<job id>, as Lightning's default logger does: the id survives a
    # requeue, so the restarted job finds its own directory, and no other job shares it.
    job = SLURMEnvironment.job_id()
    if logger is None or logger is True:  # Lightning's default: TensorBoard in default_root_dir
        version = job if job is not None else rundir.run_version(Path(root) / "lightning_logs")
        trainer_cfg.logger = Namespace(
            class_path=_FILE_LOGGERS[0], init_args=Namespace(save_dir=root, version=version)
        )
        return
    first = logger[0] if isinstance(logger, list) and logger else logger
    if isinstance(first, Namespace) and first.get("class_path") in _FILE_LOGGERS:
        args = first.init_args
        if args.get("version") is None and job is not None:
            args.version = job
        elif args.get("version") is None:
            args.version = rundir.run_version(Path(args.get("save_dir") or root) / (args.get("name") or ""))


def _close_process_group() -> None:
    """Every rank meets, then the process group closes, before the interpreter exits.

    Lightning only destroys it in an ``atexit`` hook, when a rank that finished first may already have
    torn its gloo pairs down: about one two-process CPU run in ten then aborted at exit with
    "terminate called without an active exception" (SIGABRT, exit -6) after a complete run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_summary(trainer: L.Trainer) -> str:
    """The one line ``fit`` ends with: where the run is, its last and best checkpoints, its last values."""
    parts = [f"done: {trainer.global_step} generator steps; run directory {trainer.log_dir}"]
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, GStepCheckpoint) and cb.last_model_path:
            parts.append(f"last checkpoint {cb.last_model_path}")
        elif isinstance(cb, BestCheckpoint) and cb.best_model_path:
            parts.append(f"best ({cb.monitor}) {cb.best_model_path}")
    metrics = trainer.callback_metrics
    keys = sorted(k for k in metrics if k.startswith("val/")) or sorted(k for k in metrics if "/main" in k)
    if keys:
        parts.append(", ".join(f"{k}={float(metrics[k]):.4g}" for k in keys[:8]))
    return "; ".join(parts)


_NOISE = re.compile(
    r"^(Does not validate|Subtypes:|Errors:|Given value|Expected a <class 'NoneType'>|"
    r"Problem with given class_path)"
)


def _one_line(err: BaseException) -> str:
    """jsonargparse explains a bad nested value over many lines (union subtypes, the value dump); keep
    the full key and the first real reason, e.g. ``data.batch_size: Expected a <class 'int'>``.

    jsonargparse has no structured form of these errors, so this reads its text: ``Parser key "..."``
    and the lines :data:`_NOISE` names. jsonargparse is pinned for it in pyproject.toml, and
    tests/test_versions.py feeds the installed version's own errors through this function."""
    text = str(err).strip()
    key = ".".join(re.findall(r'Parser key "([^"]+)"', text))
    lines = [re.sub(r'^Parser key "[^"]+":', "", ln.strip().lstrip("-")).strip() for ln in text.splitlines()]
    reasons = [ln for ln in lines if ln and not _NOISE.match(ln)]
    reason = reasons[0] if reasons else lines[0]
    named = re.search(r"(Option|Key) '[^']+' is not (accepted|expected)", reason)
    reason = named.group(0) if named else re.split(r"\.? Got value", reason)[0]
    return f"{key}: {reason}" if key else reason


def _chained(err: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of type ``kind`` in ``err``'s chain (``__cause__``, else ``__context__``)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _class_init_error(err: ValueError) -> str | None:
    """The one line for an error raised in a class_path object's ``__init__`` (e.g. our ConfigError),
    which jsonargparse re-raises as a ValueError over the union's subtypes: our error's own message
    where jsonargparse chained it (``raise ... from``; it chains the first subtype's error only), else its
    text through :func:`_one_line`. ``None`` for a ValueError jsonargparse did not raise: a bug, which
    keeps its traceback."""
    ours = _chained(err, GanLightningError)
    if ours is not None:
        return _worker_message(str(ours))
    return _one_line(err) if _raised_by_jsonargparse(err) else None


def _raised_by_jsonargparse(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is in the jsonargparse package."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("jsonargparse")


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


def _fail(message: str) -> None:
    """One ``error:`` line, exit 2; a run directory this process claimed and never trained in is removed."""
    rundir.release_failed()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if rundir.is_global_zero_process():
        rundir.reset()
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
        _fail(_worker_message(str(err)))
    except ArgumentError as err:
        _fail(f"{_one_line(err)}  (see --help, or --print_config for the full config)")
    except pickle.UnpicklingError as err:  # Lightning's own weights_only loads (a safety net)
        _fail(f"refused to load a checkpoint holding pickled objects ({str(err).splitlines()[0][:200]})")
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT) or os.environ.get("GAN_LIGHTNING_TRACEBACK"):
            raise
        where = Path(err.filename).parent if err.filename else "the run directory's device"
        _fail(
            f"no space left on the device holding {where}; the checkpoints already written are "
            "intact: free some space and resume with --ckpt_path LAST.ckpt"
        )
    except ValueError as err:
        message = _class_init_error(err)
        if message is None or os.environ.get("GAN_LIGHTNING_TRACEBACK"):
            raise
        _fail(message)
