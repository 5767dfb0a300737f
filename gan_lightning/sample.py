"""``python -m gan_lightning sample --ckpt_path CKPT --num_samples N --out DIR``

Writes ``DIR/samples.npy`` (float32, data space: N x C x H x W in [-1, 1] for images, N x 2 for 2D
data) and, for images, ``DIR/grid.png``. Uses the EMA generator when the checkpoint has one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser

from gan_lightning.callbacks import save_grid, save_scatter
from gan_lightning.errors import ConfigError
from gan_lightning.module import GANModule


def load_module(ckpt_path: str | Path, device: str | torch.device = "cpu") -> GANModule:
    """Rebuild the GANModule of a checkpoint from the config saved in it."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist; pass the path of a .ckpt file written by `fit`")
    try:
        module = GANModule.load_from_checkpoint(path, map_location=device, weights_only=False)
    except (RuntimeError, KeyError, EOFError) as err:
        raise ConfigError(
            f"{path} is not a readable gan_lightning checkpoint ({type(err).__name__}: {err})"
        ) from None
    return module.eval()


@torch.no_grad()
def generate(module: GANModule, num_samples: int, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """``num_samples`` samples in data space, deterministic given ``seed``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, num_samples, batch_size):
        z = torch.randn(min(batch_size, num_samples - start), module.latent_dim, generator=g).to(
            module.device
        )
        out.append(module.sample(z).float().cpu())
    return torch.cat(out) if out else torch.empty(0, *module.data_shape)


def sample(
    ckpt_path: str,
    num_samples: int = 64,
    out: str = "samples",
    seed: int = 0,
    batch_size: int = 500,
    device: str = "auto",
    nrow: int = 8,
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
    """
    if num_samples < 1:
        raise ConfigError(f"--num_samples must be >= 1, got {num_samples}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    module = load_module(ckpt_path, device)
    samples = generate(module, num_samples, seed, batch_size)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "samples.npy", samples.numpy().astype(np.float32))
    if samples.dim() == 4:
        save_grid(samples[:256], out_dir / "grid.png", nrow)
    else:
        save_scatter(samples, out_dir / "scatter.png")
    print(f"wrote {num_samples} samples to {out_dir / 'samples.npy'}")
    return out_dir


def sample_main(argv: list[str]) -> None:
    parser = ArgumentParser(prog="python -m gan_lightning sample", exit_on_error=False)
    parser.add_function_arguments(sample)
    cfg = parser.parse_args(argv)
    sample(**cfg.as_dict())
