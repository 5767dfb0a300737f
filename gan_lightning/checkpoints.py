"""Checkpoints in and out, safely.

* **Reading** a user-given file never unpickles arbitrary objects: :func:`read_checkpoint` uses
  ``torch.load(weights_only=True)`` (tensors, numbers, strings and containers only; a checkpoint that
  carries a pickled object is refused, its ``__reduce__`` never runs) and turns every way a file can be
  bad (missing, empty, truncated, random bytes, not ours) into one :class:`CheckpointError` line.
  gan_lightning's own checkpoints need no allow-listed globals: the RNG states, EMA and the counters are
  tensors, the configs are plain dicts. :data:`SAFE_GLOBALS` is where a type would be added.
* **Writing** goes through :class:`AtomicCheckpointIO`, Lightning's public ``CheckpointIO`` plug-in point:
  a temporary file in the checkpoint's own directory, fsync, rename (see :mod:`gan_lightning.io`).
  Lightning's ``TorchCheckpointIO`` writes the temporary file in ``$TMPDIR`` and moves it, which across
  filesystems (a run on NFS/Lustre, ``$TMPDIR`` on local disk) is a copy into the final name: a kill or a
  full disk then leaves a partial ``last.ckpt``.
* **Older checkpoints** (:func:`migrate_state_dict`): a checkpoint written before the networks gained
  their heads and label inputs (format 1, no ``gan_lightning_format`` key) has the same tensors in the
  same order under other names; they are renamed by position, never guessed by shape alone.
* **Warm starts** (:func:`warm_start`): a new run with a new config whose networks start from a
  checkpoint's weights (``fit --init_from CKPT``), e.g. after a divergence, with lower learning rates.
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from gan_lightning.errors import GanLightningError
from gan_lightning.io import atomic_write, remove_stale_temporaries

# Types beyond tensors and plain containers that gan_lightning's checkpoints hold: none today. A new
# checkpointed type goes here (and into torch.serialization.add_safe_globals below), never weights_only=False.
SAFE_GLOBALS: list[Any] = []
if SAFE_GLOBALS:
    torch.serialization.add_safe_globals(SAFE_GLOBALS)

_NETWORK_PREFIXES = ("generator.", "discriminator.", "generator_ema.")
# 1: up to the first landed release (D's last linear inside ``body``, no ``fixed_labels``);
# 2: networks with heads (``D.head``) and label inputs. Written into every checkpoint by GANModule.
CHECKPOINT_FORMAT = 2
_NETWORKS = ("generator.", "discriminator.", "generator_ema.module.")


class CheckpointError(GanLightningError):
    """A checkpoint file that is missing, damaged, not gan_lightning's, or unsafe to load."""


def read_checkpoint(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict, loaded without running any code it may carry."""
    fix = "use an earlier one (e.g. checkpoints/step=*.ckpt)"
    ckpt = load_file(path, "checkpoint", fix, map_location=map_location, mmap=mmap)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} is not a gan_lightning checkpoint (no state_dict); pass one written by fit"
        )
    return ckpt


def load_file(
    path: str | Path,
    kind: str,
    fix: str,
    map_location: Any = "cpu",
    mmap: bool = False,
    data: bytes | None = None,
) -> Any:
    """``torch.load(weights_only=True)`` of a file a user may have handed us (a checkpoint, weights, a
    cache), after checking its CRC-32s; every way it can be bad is one :class:`CheckpointError` that names
    ``path``, what it should be (``kind``) and ``fix``. ``data``: the file's bytes, already read (e.g. to
    hash exactly what is loaded)."""
    path = Path(path)
    if data is None and not path.is_file():
        raise CheckpointError(f"{kind} {path} does not exist; pass the path of an existing file")
    size = len(data) if data is not None else path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{kind} {path} is empty (0 bytes), e.g. from an interrupted copy; {fix}")
    source = io.BytesIO(data) if data is not None else path
    _check_crc(source, f"{kind} {path}", size, fix)
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        with warnings.catch_warnings():
            # a damaged legacy file reads as some "pickle protocol 240"; the error line below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(
                source, map_location=map_location, weights_only=True, mmap=mmap and data is None
            )
    except pickle.UnpicklingError as err:
        if "WeightsUnpickler" in str(err) or "weights_only" in str(err):
            raise CheckpointError(
                f"refused to load {kind} {path}: it holds a pickled object that could run code "
                f"({_unsafe_reason(str(err))}); gan_lightning's files hold tensors and plain values only, "
                "so this file was not written by it or was tampered with"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable {kind} ({size} bytes; {_first_line(err)}); {fix}"
        ) from None
    except Exception as err:
        # The weights-only unpickler runs no code, so whatever it raises on random bytes (IndexError,
        # struct.error, TypeError, ... besides the usual EOFError/RuntimeError) means a damaged file.
        raise CheckpointError(
            f"{path} is not a readable {kind} ({size} bytes; {_first_line(err)}): it is truncated or "
            f"damaged; {fix}"
        ) from None


def _check_crc(source: Path | io.BytesIO, what: str, size: int, fix: str) -> None:
    """Refuse a zip checkpoint whose stored CRC-32s do not match its bytes (a flipped bit on disk or in a
    copy). torch.load does not check them, so such a file would load, with silently wrong weights."""
    if not zipfile.is_zipfile(source):
        return  # a legacy or damaged file: torch.load names the problem
    try:
        with zipfile.ZipFile(source) as archive:
            damaged = archive.testzip()  # reads every entry once: about 1 s per GB
    except Exception as err:  # a damaged central directory, a truncated entry, ...
        raise CheckpointError(f"{what} is damaged ({size} bytes; {_first_line(err)}); {fix}") from None
    if damaged is not None:
        raise CheckpointError(
            f"{what} is damaged ({size} bytes; entry {damaged} fails its CRC-32 check, e.g. a bad copy or "
            f"disk); {fix}"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _unsafe_reason(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("WeightsUnpickler error:"):
            return line.removeprefix("WeightsUnpickler error:").strip().rstrip(".")
    return "unsupported global"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic in the checkpoint's own directory."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(
            path
        ):  # remote (fsspec) paths: Lightning's transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()  # serialized first: a full disk then fails in write() with ENOSPC
        torch.save(checkpoint, buffer)
        atomic_write(path, lambda f: f.write(buffer.getbuffer()))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        if "://" in str(path) or not get_filesystem(path).isfile(str(path)):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return read_checkpoint(path, map_location=map_location)


def install_atomic_checkpoint_io(trainer: Any) -> None:
    """Put :class:`AtomicCheckpointIO` in place of Lightning's default ``TorchCheckpointIO`` (a user's own
    CheckpointIO, e.g. AsyncCheckpointIO, is left alone), and delete the temporary files a killed run
    left in its checkpoint directory."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()


class KeyedCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``state_key`` is computed once, at setup, instead of on every read.

    Lightning reads each callback's ``state_key`` for each hook it calls (8 per G step), and
    ModelCheckpoint's formats the repr of a dict every time (docs/overhead.md). The key is the same
    string: before setup it is recomputed on each read, as in ModelCheckpoint, so settings changed until
    then (BestCheckpoint picks its monitor in setup) are in it, and checkpoints keep their keys.
    """

    _setup_state_key: str | None = None

    @property
    def state_key(self) -> str:
        return self._setup_state_key or super().state_key

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._setup_state_key = super().state_key  # ModelCheckpoint's own, from the settings now


def clean_checkpoint_dir(folder: str | Path | None) -> None:
    if folder is not None and "://" not in str(folder):
        remove_stale_temporaries(folder)


def migrate_state_dict(checkpoint: dict[str, Any], own: dict[str, torch.Tensor]) -> list[str]:
    """Bring a format-1 checkpoint's ``state_dict`` to this version's names, in place; returns the
    networks renamed. ``own``: the state dict of the module it is loaded into.

    Format 1 differs only in names (e.g. DCGAN D's final linear was ``body.6``, now ``head.linear``): per
    network, when the key sets differ but the tensors' shapes agree one for one in order, the keys are
    renamed by position. Buffers format 1 lacked (``fixed_labels``) keep the module's own values. Anything
    else is left for the strict load to report.
    """
    if checkpoint.get("gan_lightning_format", 1) >= 2:
        return []
    state = checkpoint["state_dict"]
    renamed = []
    for prefix in _NETWORKS:
        old = [k for k in state if k.startswith(prefix)]
        new = [k for k in own if k.startswith(prefix)]
        if set(old) == set(new) or len(old) != len(new):
            continue
        if any(state[a].shape != own[b].shape for a, b in zip(old, new)):
            continue
        moved = {b: state.pop(a) for a, b in zip(old, new)}
        state.update(moved)
        renamed.append(prefix.rstrip("."))
    for key, value in own.items():
        if key not in state and not key.startswith(_NETWORK_PREFIXES):
            state[key] = value.clone()
    checkpoint["gan_lightning_format"] = CHECKPOINT_FORMAT
    return renamed


def warm_start(module: nn.Module, path: str | Path) -> list[str]:
    """Copy the network weights (G, D and the EMA of G) of the checkpoint at ``path`` into ``module``.

    Optimizer states, step counters and RNG states are not copied: this is a new run, with its own config
    (e.g. lower learning rates), that starts from those weights. Returns the networks loaded.
    """
    checkpoint = read_checkpoint(path)
    own = module.state_dict()
    migrate_state_dict(checkpoint, own)
    state = checkpoint["state_dict"]
    wanted = {k for k in own if k.startswith(_NETWORK_PREFIXES)}
    source = {k: v for k, v in state.items() if k.startswith(_NETWORK_PREFIXES)}
    if not any(k.startswith("generator_ema.") for k in source):  # no EMA there: the new EMA starts at its G
        source.update(
            {
                "generator_ema.module." + k[len("generator.") :]: v
                for k, v in state.items()
                if k.startswith("generator.")
            }
        )
        source.pop("generator_ema.n_averaged", None)
    if not any(k.startswith("generator_ema.") for k in wanted):  # no EMA here: the checkpoint's is not needed
        source = {k: v for k, v in source.items() if not k.startswith("generator_ema.")}
    missing = sorted(k for k in wanted - source.keys() if k != "generator_ema.n_averaged")
    extra = sorted(source.keys() - wanted)
    shape = sorted(k for k in wanted & source.keys() if own[k].shape != source[k].shape)
    if missing or extra or shape:
        example = (shape or missing or extra)[0]
        raise CheckpointError(
            f"--init_from {path}: its networks do not match this run's ({len(missing)} missing, "
            f"{len(shape)} of another shape, {len(extra)} unexpected tensors, e.g. {example}); keep the "
            "generator/discriminator settings of the checkpoint's run and change only the rest"
        )
    with torch.no_grad():
        for k in wanted & source.keys():
            own[k].copy_(source[k])
    return sorted({k.split(".")[0] for k in source})
