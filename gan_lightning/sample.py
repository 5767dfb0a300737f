"""``python -m gan_lightning sample --ckpt_path CKPT --num_samples N --out DIR``

Writes ``DIR/samples.npy`` (float32, data space: N x C x H x W in [-1, 1] for images, N x 2 for 2D
data) and, for images, ``DIR/grid.png``. Uses the EMA generator when the checkpoint has one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser

from gan_lightning.callbacks import save_grid, save_scatter
from gan_lightning.checkpoints import CheckpointError, read_checkpoint
from gan_lightning.errors import ConfigError, GanLightningError
from gan_lightning.io import atomic_write
from gan_lightning.module import GANModule


def load_module(ckpt_path: str | Path, device: str | torch.device = "cpu") -> GANModule:
    """Rebuild the GANModule of a checkpoint from the config saved in it, never unpickling objects."""
    path = Path(ckpt_path)
    read_checkpoint(path, mmap=True)  # safe and cheap: refuses pickled objects, names a damaged file
    try:
        module = GANModule.load_from_checkpoint(path, map_location=device, weights_only=True)
    except GanLightningError:
        raise
    except Exception as err:  # a config this version cannot build (jsonargparse/Lightning raise many types)
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        raise CheckpointError(
            f"{path} cannot be rebuilt into a GANModule ({type(err).__name__}: {first}); pass a checkpoint "
            "written by fit with this version of gan_lightning"
        ) from None
    return module.eval()


def check_output_dir(out: Path, flag: str = "--out") -> None:
    """Fail before any work when ``out`` cannot be a directory we write into."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is an existing file; pass a directory (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # a real write: permissions, read-only mounts, quotas
            pass
    except OSError as err:
        raise ConfigError(
            f"{flag} {out} is not a writable directory ({err.strerror}); pass one that is"
        ) from None


def sample_labels(
    module: GANModule, num_samples: int, labels: int | None, per_class: int | None
) -> torch.Tensor | None:
    """The labels to sample with: one class, N per class, or class-balanced (None when unconditional)."""
    k = module.num_classes
    if not k:
        if labels is not None or per_class is not None:
            raise ConfigError("--labels/--per_class need a class-conditional model; this checkpoint's is not")
        return None
    if labels is not None:
        if not 0 <= labels < k:
            raise ConfigError(f"--labels {labels} is not a class of this model (0..{k - 1})")
        return torch.full((num_samples,), labels, dtype=torch.long)
    if per_class is not None:
        return torch.arange(k).repeat_interleave(per_class)
    return torch.arange(num_samples) % k


@torch.no_grad()
def generate(
    module: GANModule,
    num_samples: int,
    seed: int = 0,
    batch_size: int = 500,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """``num_samples`` samples in data space, deterministic given ``seed`` (and ``labels``)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, num_samples, batch_size):
        z = torch.randn(min(batch_size, num_samples - start), module.latent_dim, generator=g).to(
            module.device
        )
        y = labels[start : start + len(z)].to(module.device) if labels is not None else None
        out.append(module.sample(z, y).float().cpu())
    return torch.cat(out) if out else torch.empty(0, *module.data_shape)


def sample(
    ckpt_path: str,
    num_samples: int = 64,
    out: str = "samples",
    seed: int = 0,
    batch_size: int = 500,
    device: str = "auto",
    nrow: int = 8,
    labels: int | None = None,
    per_class: int | None = None,
) -> Path:
    """Draw samples from a checkpoint.

    Args:
        ckpt_path: a checkpoint written by ``fit``.
        num_samples: how many samples.
        out: output directory (created).
        seed: seed of the latent noise.
        batch_size: samples per forward pass.
        device: "auto" (GPU when there is one), "cpu" or "cuda".
        nrow: images per row of grid.png.
        labels: a class-conditional model samples this class only.
        per_class: a class-conditional model samples this many of each class (overrides num_samples).
    """
    if num_samples < 1:
        raise ConfigError(f"--num_samples must be >= 1, got {num_samples}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out_dir = Path(out)
    module = load_module(ckpt_path, device)
    check_output_dir(out_dir)
    y = sample_labels(module, num_samples, labels, per_class)
    if per_class is not None and y is not None:
        num_samples = len(y)
    samples = generate(module, num_samples, seed, batch_size, y)
    atomic_write(out_dir / "samples.npy", lambda f: np.save(f, samples.numpy().astype(np.float32)))
    if y is not None:
        atomic_write(out_dir / "labels.npy", lambda f: np.save(f, y.numpy()))
    if samples.dim() == 4:
        save_grid(samples[:256], out_dir / "grid.png", nrow)
    else:
        save_scatter(samples, out_dir / "scatter.png")
    print(f"wrote {num_samples} samples to {out_dir / 'samples.npy'}")
    return out_dir


def sample_main(argv: list[str]) -> None:
    parser = ArgumentParser(prog="python -m gan_lightning sample", exit_on_error=False, allow_abbrev=False)
    parser.add_function_arguments(sample)
    cfg = parser.parse_args(argv)
    sample(**cfg.as_dict())
