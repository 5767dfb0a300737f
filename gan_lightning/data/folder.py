"""Any folder of images, flat or one subfolder per class, decoded per sample or once into memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision import transforms as T

from gan_lightning.data.base import TensorSamples
from gan_lightning.data.images import _HeldOutSplit, _parallel, load_image, show_dir
from gan_lightning.errors import ConfigError, DataError


class FolderImages(Dataset):
    """Image files decoded on access: (uint8 (C, size, size), int64 label)."""

    def __init__(self, paths: np.ndarray, labels: Tensor, size: int, mode: str) -> None:
        self.paths, self.labels, self.mode = paths, labels, mode
        self.transform = T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.transform(load_image(str(self.paths[i]), self.mode)), self.labels[i]


class ImageFolderImages(_HeldOutSplit):
    """Any folder of images: flat (unlabeled, label -1) or one subfolder per class (labels as torchvision's
    ImageFolder: sorted folder names). Images are resized on the shorter side, then center-cropped.

    Args:
        root: the folder.
        image_size: side of the square images.
        channels: 1 (grayscale) or 3 (RGB); transparent images are composited onto white.
        val_fraction: share held out (seeded) for validation; the test split is the same held-out set.
        in_memory: decode everything once at setup into a uint8 tensor (fast epochs, costs RAM).
        verify: decode every file at setup and name all the unreadable ones, instead of failing mid-run.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 64,
        channels: int = 3,
        val_fraction: float = 0.05,
        in_memory: bool = False,
        verify: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        if image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {image_size}")
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.root, self.image_size, self.channels = Path(root), image_size, channels
        self.val_fraction, self.in_memory, self.verify = val_fraction, in_memory, verify

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    def build(self, split: str) -> Dataset:
        if split == "test" and "val" in self.splits:
            return self.splits["val"]
        frac = self.val_fraction
        n_val_of = (lambda n: max(1, round(n * frac))) if frac else (lambda n: 0)
        return self._held_out("train" if split == "train" else "val", n_val_of)

    def scan(self) -> tuple[np.ndarray, Tensor]:
        """(paths, labels) of every image under root, sorted; flat folders are unlabeled."""
        root, ext = self.root, tvd.folder.IMG_EXTENSIONS
        if not root.is_dir():
            raise DataError(f"image folder {show_dir(root)} does not exist; set data.init_args.root to it")
        if any(f.is_file() and f.suffix.lower() in ext for f in root.iterdir()):
            paths = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in ext)
            samples = [(p, -1) for p in paths]
        else:
            classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
            index = {c: i for i, c in enumerate(classes)}
            samples = tvd.folder.make_dataset(root, index, ext, allow_empty=True) if classes else []
        if not samples:
            raise DataError(
                f"no images found in {root} (accepted extensions: {' '.join(ext)}); put image files in it "
                "or in one subfolder per class"
            )
        return np.array([p for p, _ in samples]), torch.tensor([y for _, y in samples], dtype=torch.long)

    def _full_train(self) -> Dataset:
        paths, labels = self.scan()
        ds = FolderImages(paths, labels, self.image_size, "L" if self.channels == 1 else "RGB")
        if not (self.in_memory or self.verify):
            return ds

        def decode(i: int) -> Tensor | bool:  # the image if we keep it, else True; False: unreadable
            try:
                x = ds[i][0]
            except DataError:
                return False
            return x if self.in_memory else True

        images = _parallel(decode, range(len(ds)))
        bad = [str(p) for p, x in zip(paths, images, strict=True) if x is False]
        if bad:
            shown = ", ".join(bad[:20]) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
            raise DataError(f"{len(bad)} unreadable image(s) in {self.root}: {shown}; replace or delete them")
        return TensorSamples(torch.stack(images), labels) if self.in_memory else ds
