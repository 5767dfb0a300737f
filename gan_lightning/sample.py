"""``python -m gan_lightning sample --ckpt_path CKPT --num_samples N --out DIR``

Writes ``DIR/samples.npy`` (float32, data space: N x C x H x W in [-1, 1] for images, N x 2 for 2D
data) and, for images, ``DIR/grid.png``. Uses the EMA generator when the checkpoint has one.

``--interpolate N`` writes ``interpolation.png`` (one row per strip: N slerp steps between two seeded
latents) and ``interpolation.gif`` (the steps as frames, there and back); ``--walk N`` writes
``walk.png`` and ``walk.gif``, a closed circular walk of N frames (:mod:`gan_lightning.latents`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser

from gan_lightning.callbacks import image_grid, save_grid, save_scatter
from gan_lightning.checkpoints import CheckpointError, read_checkpoint
from gan_lightning.errors import ConfigError, GanLightningError
from gan_lightning.io import atomic_write
from gan_lightning.latents import circular_walk, interpolation
from gan_lightning.module import GANModule
from gan_lightning.nets.g_layers import random_at_sampling

MAX_FRAMES = 1000  # steps of one interpolation or walk (each is a generated image per strip)
MAX_PATH_IMAGES = 20_000  # strips x steps, all held in memory
GIF_FRAME_MS = 100


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
        z = module.draw_latents(min(batch_size, num_samples - start), g).to(module.device)
        y = labels[start : start + len(z)].to(module.device) if labels is not None else None
        out.append(module.sample(z, y).float().cpu())
    return torch.cat(out) if out else torch.empty(0, *module.data_shape)


@torch.no_grad()
def generate_from(
    module: GANModule, z: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 500
) -> torch.Tensor:
    """Samples in data space for the given latents (and labels), ``batch_size`` at a time."""
    out = []
    for start in range(0, len(z), batch_size):
        y = labels[start : start + batch_size].to(module.device) if labels is not None else None
        out.append(module.sample(z[start : start + batch_size].to(module.device), y).float().cpu())
    return torch.cat(out)


def latent_path(module: GANModule, kind: str, steps: int, strips: int, seed: int) -> torch.Tensor:
    """(strips, steps, latent_dim): per strip, a slerp between two seeded latents ("interpolate") or a
    circular walk through them ("walk"), both drawn from the model's prior."""
    g = torch.Generator().manual_seed(seed)
    z0, z1 = module.draw_latents(strips, g), module.draw_latents(strips, g)
    return interpolation(z0, z1, steps) if kind == "interpolate" else circular_walk(z0, z1, steps)


def save_gif(frames: list[torch.Tensor], path: Path, nrow: int) -> Path:
    """An animated GIF (looping) of image batches, each frame one grid as ``grid.png`` draws it."""
    from PIL import Image

    # image_grid's floats are k/255: round back to the bytes (as torchvision's save_image does)
    pics = [
        Image.fromarray(image_grid(f, nrow).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())
        for f in frames
    ]
    return atomic_write(
        path,
        lambda f: pics[0].save(
            f, format="GIF", save_all=True, append_images=pics[1:], duration=GIF_FRAME_MS, loop=0
        ),
    )


def write_path(
    module: GANModule,
    kind: str,
    steps: int,
    strips: int,
    seed: int,
    y: torch.Tensor | None,
    out_dir: Path,
    batch_size: int = 500,
) -> list[Path]:
    """``<kind>.png`` (one row of ``steps`` images per strip) and ``<kind>.gif`` (one frame per step,
    the strips side by side; an interpolation plays there and back)."""
    z = latent_path(module, kind, steps, strips, seed)
    labels = y.repeat_interleave(steps) if y is not None else None
    images = generate_from(module, z.flatten(0, 1), labels, batch_size).view(
        strips, steps, *module.data_shape
    )
    name = "interpolation" if kind == "interpolate" else "walk"
    order = list(range(steps))
    if kind == "interpolate":
        order += order[-2:0:-1]
    png = save_grid(images.flatten(0, 1), out_dir / f"{name}.png", nrow=steps)
    gif = save_gif([images[:, t] for t in order], out_dir / f"{name}.gif", nrow=strips)
    return [png, gif]


def check_path_args(interpolate: int | None, walk: int | None, strips: int, per_class: int | None) -> None:
    for flag, n in (("--interpolate", interpolate), ("--walk", walk)):
        if n is not None and not 2 <= n <= MAX_FRAMES:
            raise ConfigError(
                f"{flag} {n}: give the number of steps (frames), from 2 to {MAX_FRAMES}, e.g. {flag} 10"
            )
    if interpolate is None and walk is None:
        return
    if not 1 <= strips <= 256:
        raise ConfigError(f"--strips {strips}: give 1 to 256 strips (rows) of steps")
    steps = max(interpolate or 0, walk or 0)
    if strips * steps > MAX_PATH_IMAGES:
        raise ConfigError(
            f"--strips {strips} x {steps} steps is {strips * steps} images, more than {MAX_PATH_IMAGES} held "
            "in memory at once; use fewer strips or steps"
        )
    if per_class is not None:
        raise ConfigError("--per_class is for sample grids; with --interpolate/--walk use --labels K or none")


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
    truncation: float | None = None,
    interpolate: int | None = None,
    walk: int | None = None,
    strips: int = 8,
) -> Path:
    """Draw samples from a checkpoint (or, with ``interpolate`` / ``walk``, paths through latent space).

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
        truncation: override the prior's truncation threshold (every latent coordinate within
            [-truncation, truncation]; see :mod:`gan_lightning.latents`).
        interpolate: write ``interpolation.png`` / ``.gif``: this many slerp steps between two seeded
            latents per strip, instead of samples.
        walk: write ``walk.png`` / ``.gif``: a closed circular latent walk of this many frames per strip.
        strips: strips (rows) of an interpolation or walk, each from its own pair of latents.
    """
    if num_samples < 1:
        raise ConfigError(f"--num_samples must be >= 1, got {num_samples}")
    check_path_args(interpolate, walk, strips, per_class)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out_dir = Path(out)
    module = load_module(ckpt_path, device)
    check_output_dir(out_dir)
    if truncation is not None:
        module.latent = type(module.latent)(truncation, module.latent.psi)
    note = random_at_sampling(module.sampling_generator)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    if interpolate is not None or walk is not None:
        if len(module.data_shape) != 3:
            raise ConfigError("--interpolate/--walk draw image strips: this checkpoint's data are not images")
        y = sample_labels(module, strips, labels, None)
        written = [
            path
            for kind, steps in (("interpolate", interpolate), ("walk", walk))
            if steps is not None
            for path in write_path(module, kind, steps, strips, seed, y, out_dir, batch_size)
        ]
        print(f"wrote {', '.join(str(p) for p in written)}")
        return out_dir
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
