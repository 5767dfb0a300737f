"""Tiny fake datasets written in the exact on-disk layouts torchvision (and LSUN's LMDBs) use.

Each writer takes the ``root`` a data module is given and returns the number of train images it wrote.
The pixels are random; only the formats are real.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

RNG = np.random.default_rng(0)


def _pixels(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def skip_md5_checks(monkeypatch) -> None:
    """CIFAR and CelebA md5-check their files; fakes can't match, so existence is all we check."""
    import torchvision.datasets.celeba as celeba
    import torchvision.datasets.cifar as cifar

    for module in (cifar, celeba):
        monkeypatch.setattr(module, "check_integrity", lambda path, md5=None: Path(path).is_file())


# --- MNIST / Fashion-MNIST: big-endian idx files in <root>/<Class>/raw/ --------------------------------
def _write_idx(path: Path, array: np.ndarray) -> None:
    """idx format: magic (0, 0, type 0x08 = ubyte, ndim), then each dim as big-endian int32, then data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 12, n_test: int = 6) -> int:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", _pixels(n, 28, 28))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", RNG.integers(0, 10, size=n))
    return n_train


def write_fashion_mnist(root: Path) -> int:
    return write_mnist(root, folder="FashionMNIST")


# --- CIFAR: pickled dicts of flat (N, 3072) row-major CHW uint8 arrays ---------------------------------
def _write_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, per_batch: int = 3, n_test: int = 5) -> int:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        labels = RNG.integers(0, 10, n).tolist()
        _write_pickle(folder / name, {"batch_label": name, "data": _pixels(n, 3 * 32 * 32), "labels": labels})
    _write_pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return 5 * per_batch


def write_cifar100(root: Path, n_train: int = 14, n_test: int = 5) -> int:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = RNG.integers(0, 100, n).tolist()
        _write_pickle(
            folder / name,
            {
                "data": _pixels(n, 3 * 32 * 32),
                "fine_labels": labels,
                "coarse_labels": [y // 5 for y in labels],
            },
        )
    _write_pickle(
        folder / "meta",
        {
            "fine_label_names": [f"f{i}" for i in range(100)],
            "coarse_label_names": [f"c{i}" for i in range(20)],
        },
    )
    return n_train


# --- STL-10: raw uint8 (N, 3, 96, 96) column-major images, 1-based uint8 labels ------------------------
def write_stl10(root: Path, n_train: int = 4, n_unlabeled: int = 6, n_test: int = 3) -> int:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("unlabeled", n_unlabeled), ("test", n_test)):
        (folder / f"{name}_X.bin").write_bytes(_pixels(n, 3, 96, 96).tobytes())
        if name != "unlabeled":
            (folder / f"{name}_y.bin").write_bytes(RNG.integers(1, 11, n).astype(np.uint8).tobytes())
    (folder / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    return n_train + n_unlabeled


# --- CelebA: <root>/celeba/img_align_celeba/*.jpg and space-separated annotation files -----------------
def write_celeba(root: Path, partition: tuple[int, ...] = (0,) * 6 + (1,) * 2 + (2,) * 2) -> int:
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    for name in names:  # aligned CelebA is 178x218; a smaller portrait keeps the test fast
        Image.fromarray(_pixels(44, 36, 3)).save(folder / "img_align_celeba" / name)
    attrs = ["5_o_Clock_Shadow", "Smiling"]

    def table(header: str | None, rows: list[str]) -> str:
        head = f"{len(names)}\n{header}\n" if header is not None else ""
        return head + "".join(f"{n} {r}\n" for n, r in zip(names, rows, strict=True))

    (folder / "list_eval_partition.txt").write_text(table(None, [str(p) for p in partition]))
    (folder / "identity_CelebA.txt").write_text(table(None, [str(i % 3 + 1) for i in range(len(names))]))
    points = " ".join(f"{p}_x {p}_y" for p in ("lefteye", "righteye", "nose", "leftmouth", "rightmouth"))
    for name, header, row in (
        ("list_attr_celeba.txt", " ".join(attrs), "-1  1"),
        ("list_bbox_celeba.txt", "image_id x_1 y_1 width height", "1 2 30 40"),
        ("list_landmarks_align_celeba.txt", points, "10 20" + " 10 20" * 4),
    ):
        (folder / name).write_text(table(header, [row] * len(names)))
    return partition.count(0)


# --- LSUN: one LMDB per <category>_<split>, key = image id, value = encoded image ---------------------
def write_lsun(root: Path, classes: tuple[str, ...] = ("bedroom_train", "bedroom_val"), n: int = 6) -> int:
    import lmdb

    for c in classes:
        with lmdb.open(str(root / f"{c}_lmdb"), map_size=1 << 24) as env, env.begin(write=True) as txn:
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(_pixels(30 + i, 40, 3)).save(buf, format="WEBP")
                txn.put(hashlib.sha1(f"{c}/{i}".encode()).hexdigest().encode(), buf.getvalue())
    return n


WRITERS = {
    "mnist": write_mnist,
    "fashion_mnist": write_fashion_mnist,
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "stl10": write_stl10,
    "celeba": write_celeba,
    "lsun": write_lsun,
}


# --- plain image folders ----------------------------------------------------------------------------
def write_image(path: Path, mode: str, size: tuple[int, int] = (40, 30), fmt: str | None = None) -> Path:
    """A random image of PIL ``mode`` ("L", "RGB", "RGBA", ...) and (width, height) ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = len(Image.new(mode, (1, 1)).getbands())
    shape = (size[1], size[0]) if bands == 1 else (size[1], size[0], bands)
    im = Image.fromarray(_pixels(*shape))
    assert im.mode == mode, (im.mode, mode)
    im.save(path, format=fmt)
    return path


def write_corrupt(path: Path) -> Path:
    """A file with an image extension whose bytes are not an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    return path
