"""Stacked MNIST (VEEGAN, PacGAN): three independently drawn digits as the R, G, B channels.

There are 10^3 = 1000 digit triples, i.e. 1000 modes; a sample's label is ``100 d0 + 10 d1 + d2``.
The digits are the embedded ones: train samples stack train-split digits, val/test samples stack
held-out digits, so no held-out digit ever reaches the discriminator.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from gan_lightning.data.base import GANDataModule
from gan_lightning.data.digits import digit_images, split_indices
from gan_lightning.errors import ConfigError

PLACE_VALUES = torch.tensor([100, 10, 1])


class StackedSamples(Dataset):
    """Samples built on demand from a digit pool: ``digits`` (M, 1, H, W) uint8 with ``digit_labels``
    (M,), and ``triples`` (N, 3) pool indices, one row per sample (channel c is digit ``triples[n, c]``).

    Storing the index triples instead of the images keeps 50,000 samples at 1.2 MB instead of 150 MB.
    """

    def __init__(self, digits: Tensor, digit_labels: Tensor, triples: Tensor) -> None:
        self.digits = digits
        self.triples = triples
        self.labels = (digit_labels[triples] * PLACE_VALUES).sum(1)

    def __len__(self) -> int:
        return len(self.triples)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.digits[self.triples[i], 0], self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.digits[self.triples[idx], 0], self.labels[idx]  # (B, 3) -> (B, 3, H, W)


class StackedDigits(GANDataModule):
    """Stacked MNIST from the 5,000 embedded digits: 3 x 28 x 28, or zero-padded to 3 x 32 x 32.

    The samples are drawn once, seeded by the data seed and the split, so they are the same on every
    call and every rank. The held-out samples serve as both the validation and the test split.

    Args:
        image_size: 28 (native) or 32 (padded with background, as DCGAN-32 expects).
        num_train: training samples (triples of train-split digits).
        num_val: validation/test samples (triples of held-out digits).
        val_size: digits held out from training, as in ``EmbeddedDigits``.
    """

    def __init__(
        self,
        image_size: int = 32,
        num_train: int = 50_000,
        num_val: int = 5_000,
        val_size: int = 500,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if image_size not in (28, 32):
            raise ConfigError(f"StackedDigits.image_size must be 28 or 32, got {image_size}")
        if num_train < 1 or num_val < 1:
            raise ConfigError(
                f"StackedDigits needs num_train and num_val >= 1, got {num_train} and {num_val}"
            )
        if not 0 < val_size < 5000:
            raise ConfigError(f"StackedDigits.val_size must be in 1..4999 (of 5,000 digits), got {val_size}")
        self.image_size = image_size
        self.num_train = num_train
        self.num_val = num_val
        self.val_size = val_size

    @property
    def num_classes(self) -> int:
        return 1000  # the digit triples

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    def build(self, split: str) -> Dataset:
        images, labels = digit_images(self.image_size)
        part = "train" if split == "train" else "val"
        idx = split_indices(len(images), self.val_size, self._seed())[part]
        # 2 * seed + part: a distinct stream per (seed, part); val and test share theirs
        g = torch.Generator().manual_seed(2 * self._seed() + (part == "val"))
        n = self.num_train if part == "train" else self.num_val
        triples = torch.randint(len(idx), (n, 3), generator=g)  # channels drawn independently
        return StackedSamples(images[idx].contiguous(), labels[idx].contiguous(), triples)
