"""Image data sources: torchvision's datasets; folder.py (any folder of images) shares the helpers here.

Small datasets (MNIST, Fashion-MNIST, CIFAR) are decoded once into one uint8 tensor (:class:`TensorSamples`).
Large ones (STL-10, CelebA, LSUN, image folders) stay on disk and are decoded per sample. Either way a
sample is ``(uint8 (C, H, W), int64 label)``, label -1 where there is none; base.py does the [-1, 1].
"""

from __future__ import annotations

import bisect
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision import transforms as T

from gan_lightning.data.base import GANDataModule, TensorSamples
from gan_lightning.data.digits import split_indices
from gan_lightning.errors import ConfigError, DataError

DOWNLOAD_HINT = "or set data.init_args.download: true on a machine with network"
NATIVE_SIZE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "cifar100": 32, "stl10": 96}
# Where torchvision looks for each dataset (relative to ``root``) and the files it needs there.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "mnist": ("MNIST/raw", MNIST_FILES),
    "fashion_mnist": ("FashionMNIST/raw", MNIST_FILES),
    "cifar10": (
        "cifar-10-batches-py",
        (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
    ),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
    "stl10": ("stl10_binary", ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin")),
    "celeba": (
        "celeba",
        (
            "img_align_celeba/",
            "list_eval_partition.txt",
            "list_attr_celeba.txt",
            "identity_CelebA.txt",
            "list_bbox_celeba.txt",
            "list_landmarks_align_celeba.txt",
        ),
    ),
}
# What a failed load can raise: torchvision's "Dataset not found" (RuntimeError), URLError (an OSError),
# broken pickles and idx files (ValueError, EOFError, pickle.UnpicklingError, AssertionError, TypeError).
LOAD_ERRORS = (RuntimeError, OSError, ValueError, EOFError, AssertionError, TypeError, ImportError)
# What a broken image file can raise (PIL.UnidentifiedImageError is an OSError).
PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def show_dir(path: Path) -> str:
    """``path/``, plus where that is when relative (the working directory differs between machines)."""
    return f"{path}/" if path.is_absolute() else f"{path}/ (= {path.absolute()}/)"


def resize_uint8(x: Tensor, size: int, chunk: int = 4096) -> Tensor:
    """(N, C, h, w) uint8 -> (N, C, size, size) uint8: antialiased bilinear, in chunks to bound memory."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    out = torch.empty((*x.shape[:-2], size, size), dtype=torch.uint8)
    for i in range(0, len(x), chunk):
        y = F.interpolate(x[i : i + chunk].float(), size=(size, size), mode="bilinear", antialias=True)
        out[i : i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _high_depth_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit ("I;16*", and "I", PNG's 16-bit grayscale in some Pillow versions) and float ("F") images
    -> "L", scaled, never clipped: PIL's own ``convert("L")`` clips 16-bit values at 255, which turned
    97 % of a 16-bit PNG's pixels white. 16-bit: round(v / 257) (65535 -> 255); float: values in [0, 1]
    -> round(255 v). Anything else is refused rather than guessed."""
    a = np.asarray(im, dtype=np.float64)
    name = getattr(im, "filename", "") or "the image"
    if im.mode == "F":
        if not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise DataError(
                f"{name}: float image with values outside [0, 1] (min {a.min():.4g}, max {a.max():.4g}); "
                "convert it to 8- or 16-bit integers"
            )
        a = a * 255.0
    else:
        if a.min() < 0 or a.max() > 65535:
            raise DataError(
                f"{name}: {im.mode} image with values outside the 16-bit range [0, 65535] "
                f"(min {a.min():.0f}, max {a.max():.0f}); convert it to 8- or 16-bit"
            )
        a = a / 257.0
    return Image.fromarray(np.rint(a).astype(np.uint8), mode="L")


def to_mode(im: Image.Image, mode: str) -> Image.Image:
    """Convert to "L" or "RGB"; transparent images are composited onto white first (plain conversion
    would keep whatever colour the invisible pixels happen to hold); 16-bit and float images are scaled
    to 8 bits (:func:`_high_depth_to_8bit`)."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _high_depth_to_8bit(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return im.convert(mode)


def pil_pipeline(size: int, mode: str = "RGB") -> T.Compose:
    """PIL image -> uint8 (C, size, size): shorter side resized to ``size``, then center-cropped."""
    to_rgb = partial(to_mode, mode=mode)  # a partial, not a lambda: spawned DataLoader workers pickle it
    return T.Compose([to_rgb, T.Resize(size), T.CenterCrop(size), T.PILToTensor()])


def load_image(path: str, mode: str) -> Image.Image:
    """Decode ``path`` fully, converted to ``mode``; a broken file becomes a DataError naming it."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_mode(im, mode)
    except PIL_ERRORS as e:
        raise DataError(f"cannot read image {path} ({_first_line(e)}); replace or delete that file") from e


def _parallel(fn, items) -> list:
    """``map`` on threads: PIL decoding releases the GIL."""
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        return list(pool.map(fn, items))


class Labeled(Dataset):
    """A view of ``base`` (optionally through ``indices``) whose labels are int64 tensors, -1 for None.

    Deliberately without ``__getitems__`` (torch's ``Subset`` has one, and base.py would then skip collation).
    """

    def __init__(self, base: Dataset, indices: Tensor | None = None) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.base[int(self.indices[i]) if self.indices is not None else i]
        return x, torch.tensor(-1 if y is None else int(y), dtype=torch.long)


class STL10Binary(Dataset):
    """STL-10's ``*_X.bin`` files, memory-mapped: the 100k unlabeled images need not fit in RAM, and
    nothing is read (or md5-summed) up front. ``parts`` lists (images file, labels file or None)."""

    PIXELS = 3 * 96 * 96

    def __init__(self, folder: Path, parts: list[tuple[str, str | None]], size: int) -> None:
        self.files, self.size, labels, self.ends = [folder / x for x, _ in parts], size, [], []
        for (_, y_name), path in zip(parts, self.files, strict=True):
            n, rest = divmod(path.stat().st_size, self.PIXELS)
            if rest or n == 0:
                raise DataError(f"stl10: {path} is not a whole number of 96x96 RGB images; replace it")
            y = torch.full((n,), -1, dtype=torch.long)
            if y_name is not None:
                y = torch.from_numpy(np.fromfile(folder / y_name, dtype=np.uint8).astype(np.int64) - 1)
                if len(y) != n:
                    raise DataError(f"stl10: {folder / y_name} has {len(y)} labels, not {n}; replace it")
            labels.append(y)
            self.ends.append(n + (self.ends[-1] if self.ends else 0))
        self.labels = torch.cat(labels)
        self._maps: list[np.memmap] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}  # re-mapped in each worker, never pickled as data

    def __len__(self) -> int:
        return self.ends[-1]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if self._maps is None:
            self._maps = [np.memmap(f, np.uint8, "r").reshape(-1, 3, 96, 96) for f in self.files]
        part = bisect.bisect_right(self.ends, i)
        j = i - (self.ends[part - 1] if part else 0)
        x = torch.from_numpy(np.ascontiguousarray(self._maps[part][j].transpose(0, 2, 1)))  # column-major
        return resize_uint8(x[None], self.size)[0], self.labels[i]


_LMDB_ENVS: dict[tuple[int, str], Any] = {}


def lmdb_env(path: str) -> Any:
    """One read-only LMDB environment per (process, path): LMDB refuses to open a path twice in a process,
    and an environment must not be used across a fork, so a forked DataLoader worker closes the one it
    inherited (only its own copy) and opens its own."""
    import lmdb

    key = (os.getpid(), path)
    if key not in _LMDB_ENVS:
        for inherited in [k for k in _LMDB_ENVS if k[1] == path]:
            _LMDB_ENVS.pop(inherited).close()
        _LMDB_ENVS[key] = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
    return _LMDB_ENVS[key]


class LmdbImages(Dataset):
    """LSUN's LMDB databases of encoded images, label = index of the database.

    Our own reader rather than torchvision's LSUNClass, which writes a key cache into the working directory
    and opens the environment before DataLoader workers fork. Keys are held as one numpy bytes array.
    """

    def __init__(self, paths: list[Path], transform: T.Compose) -> None:
        self.paths, self.transform, self.keys, self.ends = [str(p) for p in paths], transform, [], []
        for p in self.paths:
            with lmdb_env(p).begin() as txn:
                keys = np.array(list(txn.cursor().iternext(keys=True, values=False)))
            if len(keys) == 0:
                raise DataError(f"lsun: the database {p} is empty; replace it")
            self.keys.append(keys)
            self.ends.append(len(keys) + (self.ends[-1] if self.ends else 0))

    def __len__(self) -> int:
        return self.ends[-1]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        part = bisect.bisect_right(self.ends, i)
        key = bytes(self.keys[part][i - (self.ends[part - 1] if part else 0)])
        with lmdb_env(self.paths[part]).begin() as txn:
            buf = txn.get(key)
        try:
            with Image.open(io.BytesIO(buf)) as im:
                im.load()
                x = self.transform(im)
        except PIL_ERRORS as e:
            where = f"key {key!r} in {self.paths[part]}"
            raise DataError(f"lsun: cannot decode {where} ({_first_line(e)}); replace it") from e
        return x, torch.tensor(part, dtype=torch.long)


class _HeldOutSplit(GANDataModule):
    """Shared by the sources whose validation split is a seeded slice of the training data."""

    def _full_train(self) -> Dataset:
        raise NotImplementedError

    def _held_out(self, split: str, n_val_of: Callable[[int], int]) -> Dataset:
        """``split`` ("train" or "val") of the full training data, ``n_val_of(len(data))`` held out."""
        pending: dict[str, Dataset] = self.__dict__.setdefault("_pending", {})
        if split not in pending:  # read once, hand out both halves (setup builds train, then val)
            full = self._full_train()
            n = len(full)  # type: ignore[arg-type]
            n_val = n_val_of(n)
            if not 0 <= n_val < n:
                raise ConfigError(
                    f"the validation slice ({n_val}) must be smaller than the {n} training samples; "
                    "lower data.init_args.val_size / val_fraction"
                )
            for name, idx in split_indices(n, n_val, self._seed()).items():
                pending[name] = (
                    TensorSamples(full.data[idx].contiguous(), full.labels[idx].contiguous())
                    if isinstance(full, TensorSamples)
                    else Labeled(full, idx)
                )
        return pending.pop(split)


class TorchvisionImages(_HeldOutSplit):
    """A torchvision dataset: mnist, fashion_mnist, cifar10, cifar100, stl10, celeba or lsun.

    Splits: the dataset's own test split; validation is CelebA's "valid" split, else ``val_size`` samples
    held out of train by a seeded shuffle. STL-10 trains on "train+unlabeled" (105k images).

    Args:
        name: which dataset.
        root: the folder torchvision reads (``root/MNIST/raw``, ``root/cifar-10-batches-py``, ...).
        image_size: side of the square images; None = native (28, 32 or 96), 64 for celeba and lsun.
        download: let torchvision download missing files (not possible for LSUN).
        lsun_classes: LSUN databases to train on, ``<category>_train``; test reads ``<category>_val``.
        val_size: samples held out of train for validation (not used by celeba).
    """

    NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "stl10", "celeba", "lsun")

    def __init__(
        self,
        name: str,
        root: str = "data",
        image_size: int | None = None,
        download: bool = False,
        lsun_classes: list[str] | None = None,
        val_size: int = 5000,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if name not in self.NAMES:
            raise ConfigError(f"unknown dataset {name!r}; data.init_args.name must be one of {self.NAMES}")
        if image_size is not None and image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {image_size}")
        if val_size < 0:
            raise ConfigError(f"val_size must be >= 0, got {val_size}")
        self.name, self.root, self.download, self.val_size = name, Path(root), download, val_size
        self.image_size = image_size or NATIVE_SIZE.get(name, 64)
        self.lsun_classes = list(lsun_classes or ["bedroom_train"])

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (1 if self.name in ("mnist", "fashion_mnist") else 3, self.image_size, self.image_size)

    def build(self, split: str) -> Dataset:
        if split == "test" or self.name == "celeba":
            return self._load(split)
        return self._held_out(split, lambda n: self.val_size)

    def _full_train(self) -> Dataset:
        return self._load("train")

    def prepare_data(self) -> None:
        """Download here, not in setup: Lightning calls this on one process, setup on every rank."""
        if self.download and self.name in LAYOUT and self._missing():
            self._load("test")  # each torchvision class fetches the whole dataset, whatever the split

    # --- reading ---------------------------------------------------------------------------------
    def _missing(self) -> list[str]:
        folder, files = LAYOUT[self.name]
        return [f for f in files if not (self.root / folder / f).exists()]

    def _where(self) -> str:
        folder, files = LAYOUT[self.name]
        note = " (uncompressed: gunzip the .gz files)" if "mnist" in self.name else ""
        return f"{', '.join(files)}{note} in {show_dir(self.root / folder)}"

    def _call(self, make):
        """Run a torchvision constructor, turning its failures into one-line DataErrors."""
        missing = self._missing()
        if missing and not self.download:
            partial = len(missing) < len(LAYOUT[self.name][1])
            what = f"is incomplete (missing {', '.join(missing)})" if partial else "not found"
            raise DataError(f"{self.name} {what}: put {self._where()}, {DOWNLOAD_HINT}")
        try:
            return make(bool(missing))
        except LOAD_ERRORS as e:
            what = "downloading" if missing else "reading"
            raise DataError(
                f"{what} {self.name} failed ({_first_line(e)}): put {self._where()}"
                + (" yourself" if missing else f", {DOWNLOAD_HINT}")
            ) from e

    def _load(self, split: str) -> Dataset:
        root, train, size = str(self.root), split == "train", self.image_size
        if self.name in ("mnist", "fashion_mnist"):
            cls = tvd.MNIST if self.name == "mnist" else tvd.FashionMNIST
            ds = self._call(lambda dl: cls(root, train=train, download=dl))
            return TensorSamples(resize_uint8(ds.data.unsqueeze(1), size), ds.targets.long())
        if self.name in ("cifar10", "cifar100"):
            cls = tvd.CIFAR10 if self.name == "cifar10" else tvd.CIFAR100
            ds = self._call(lambda dl: cls(root, train=train, download=dl))
            x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            return TensorSamples(resize_uint8(x, size), torch.as_tensor(ds.targets, dtype=torch.long))
        if self.name == "stl10":
            self._call(lambda dl: dl and tvd.STL10(root, split="test", download=True))  # only to download
            parts = [("train_X.bin", "train_y.bin"), ("unlabeled_X.bin", None)]
            if not train:
                parts = [("test_X.bin", "test_y.bin")]
            return STL10Binary(self.root / LAYOUT["stl10"][0], parts, size)
        if self.name == "celeba":
            which = {"train": "train", "val": "valid", "test": "test"}[split]
            tf = pil_pipeline(size)
            return Labeled(self._call(lambda dl: tvd.CelebA(root, which, [], tf, download=dl)))
        return self._load_lsun(train)

    def _load_lsun(self, train: bool) -> Dataset:
        names = self.lsun_classes if train else [c.rsplit("_", 1)[0] + "_val" for c in self.lsun_classes]
        missing = [show_dir(self.root / f"{c}_lmdb") for c in names if not (self.root / f"{c}_lmdb").is_dir()]
        if missing:
            raise DataError(
                f"lsun not found: put the LMDB folder(s) {', '.join(missing)} (each holding "
                "data.mdb); torchvision cannot download LSUN: get it with the LSUN project's download.py"
            )
        try:
            import lmdb
        except ImportError as e:
            raise DataError("lsun needs the 'lmdb' package; run: pip install lmdb") from e
        try:
            return LmdbImages([self.root / f"{c}_lmdb" for c in names], pil_pipeline(self.image_size))
        except lmdb.Error as e:
            raise DataError(f"reading lsun in {self.root} failed ({_first_line(e)}); replace it") from e
