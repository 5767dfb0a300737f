"""TorchvisionImages and ImageFolderImages on tiny fake datasets: offline, CPU, a few seconds."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from fixtures_data import WRITERS, skip_md5_checks, write_corrupt, write_image, write_lsun, write_stl10
from PIL import Image

from gan_lightning.data.folder import ImageFolderImages
from gan_lightning.data.images import TorchvisionImages
from gan_lightning.errors import ConfigError, DataError

# name -> (channels, native size, folder torchvision reads under root)
SPECS = {
    "mnist": (1, 28, "MNIST/raw"),
    "fashion_mnist": (1, 28, "FashionMNIST/raw"),
    "cifar10": (3, 32, "cifar-10-batches-py"),
    "cifar100": (3, 32, "cifar-100-python"),
    "stl10": (3, 96, "stl10_binary"),
    "celeba": (3, 64, "celeba"),
    "lsun": (3, 64, "bedroom_train_lmdb"),
}


def first_batch(dm, split: str = "train"):
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    return dm.on_after_batch_transfer(next(iter(loader)), 0)


def check_batch(x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert x.dtype == torch.float32 and tuple(x.shape) == shape
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    assert y.dtype == torch.int64 and tuple(y.shape) == shape[:1]


# --- torchvision datasets ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SPECS))
def test_torchvision_native_size(name, tmp_path, monkeypatch):
    skip_md5_checks(monkeypatch)
    n_train = WRITERS[name](tmp_path)
    dm = TorchvisionImages(name, root=str(tmp_path), val_size=2, batch_size=2, seed=0)
    channels, size, _ = SPECS[name]
    assert dm.data_shape == (channels, size, size)
    dm.setup("fit")
    dm.setup("test")
    x, y = dm.splits["train"][0]
    x2, y2 = pickle.loads(pickle.dumps(dm.splits["train"]))[0]  # as a spawned DataLoader worker gets it
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.dtype == torch.uint8 and tuple(x.shape) == dm.data_shape and y.dtype == torch.int64
    if name == "celeba":  # its own partition: 6 train, 2 valid, 2 test
        assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    else:
        assert len(dm.splits["train"]) == n_train - 2 and len(dm.splits["val"]) == 2
    for split in ("train", "val", "test"):
        check_batch(*first_batch(dm, split), (2, *dm.data_shape))


@pytest.mark.parametrize("name", ["mnist", "cifar100", "stl10", "celeba", "lsun"])
def test_torchvision_resized(name, tmp_path, monkeypatch):
    skip_md5_checks(monkeypatch)
    WRITERS[name](tmp_path)
    dm = TorchvisionImages(name, root=str(tmp_path), image_size=16, val_size=1, batch_size=3)
    dm.setup("fit")
    check_batch(*first_batch(dm), (3, SPECS[name][0], 16, 16))


def test_held_out_split_is_seeded_and_disjoint(tmp_path):
    WRITERS["mnist"](tmp_path)

    def splits(seed):
        dm = TorchvisionImages("mnist", root=str(tmp_path), val_size=4, seed=seed)
        dm.setup("fit")
        return dm.splits["train"].data, dm.splits["val"].data

    (train, val), (train2, val2) = splits(1), splits(1)
    assert torch.equal(val, val2) and torch.equal(train, train2)
    assert not torch.equal(val, splits(2)[1])
    everything = {bytes(im.numpy()) for im in torch.cat([train, val])}
    assert len(everything) == 12  # nothing lost, nothing duplicated


def test_stl10_memmap_matches_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets.stl10 as stl10

    monkeypatch.setattr(stl10, "check_integrity", lambda path, md5=None: Path(path).is_file())
    write_stl10(tmp_path)
    reference = stl10.STL10(str(tmp_path), split="test")
    dm = TorchvisionImages("stl10", root=str(tmp_path))
    dm.setup("test")
    for i in range(len(reference)):
        image, label = reference[i]
        x, y = dm.splits["test"][i]
        assert np.array_equal(x.permute(1, 2, 0).numpy(), np.asarray(image)) and int(y) == label
    dm.val_size = 2
    dm.setup("fit")  # train+unlabeled: the unlabeled images carry label -1
    labels = [int(dm.splits[s][i][1]) for s in ("train", "val") for i in range(len(dm.splits[s]))]
    assert labels.count(-1) == 6 and len(labels) == 10


def test_lsun_classes_are_labels_and_workers_can_read(tmp_path):
    write_lsun(tmp_path, ("bedroom_train", "church_outdoor_train"), n=4)
    dm = TorchvisionImages(
        "lsun",
        root=str(tmp_path),
        lsun_classes=["bedroom_train", "church_outdoor_train"],
        image_size=8,
        val_size=0,
        batch_size=8,
        num_workers=1,
    )
    dm.setup("fit")
    x, y = first_batch(dm)
    check_batch(x, y, (8, 3, 8, 8))
    assert sorted(y.tolist()) == [0] * 4 + [1] * 4
    assert not list(Path.cwd().glob("_cache_*"))  # unlike torchvision's LSUNClass, no key cache in the cwd
    again = TorchvisionImages("lsun", root=str(tmp_path), lsun_classes=["church_outdoor_train"], val_size=1)
    again.setup("fit")  # the same database, opened again in this process
    assert len(again.splits["train"]) == 3 and again.splits["train"][0][0].shape == (3, 64, 64)


@pytest.mark.parametrize("name", list(SPECS))
def test_torchvision_missing_files(name, tmp_path):
    dm = TorchvisionImages(name, root=str(tmp_path / "data"))
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert "\n" not in msg and name in msg and str(tmp_path / "data" / SPECS[name][2]) in msg
    if name != "lsun":
        assert "data.init_args.download: true" in msg


def test_partial_mnist_names_missing_file_and_deletes_nothing(tmp_path):
    WRITERS["mnist"](tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte").unlink()
    before = sorted(raw.iterdir())
    with pytest.raises(DataError, match="mnist is incomplete .missing t10k-labels-idx1-ubyte"):
        TorchvisionImages("mnist", root=str(tmp_path)).setup("fit")
    assert sorted(raw.iterdir()) == before


@pytest.mark.parametrize("name,module", [("mnist", "mnist"), ("cifar10", "cifar")])
def test_download_failing_offline(name, module, tmp_path, monkeypatch):
    import importlib

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    tv_module = importlib.import_module(f"torchvision.datasets.{module}")
    monkeypatch.setattr(tv_module, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match=f"downloading {name} failed") as err:
        TorchvisionImages(name, root=str(tmp_path), download=True).setup("fit")
    assert "\n" not in str(err.value) and str(tmp_path / SPECS[name][2]) in str(err.value)


def test_prepare_data_downloads_then_setup_reads(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as mnist

    calls = []

    def fake_download(url, download_root, filename, md5):  # stands in for the network
        calls.append(filename)
        if not (Path(download_root) / "train-images-idx3-ubyte").exists():
            WRITERS["mnist"](tmp_path)

    monkeypatch.setattr(mnist, "download_and_extract_archive", fake_download)
    dm = TorchvisionImages("mnist", root=str(tmp_path), download=True, val_size=2, batch_size=2)
    dm.prepare_data()
    assert len(calls) == 4
    dm.setup("fit")
    dm.prepare_data()  # files present: no second download
    assert len(calls) == 4 and len(dm.splits["train"]) == 10


def test_cifar_failing_md5_is_a_read_error(tmp_path):
    WRITERS["cifar10"](tmp_path)  # real check_integrity: the fake files fail their md5
    with pytest.raises(DataError, match="reading cifar10 failed .*corrupted") as err:
        TorchvisionImages("cifar10", root=str(tmp_path)).setup("fit")
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_1").is_file()


def test_torchvision_bad_args(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset"):
        TorchvisionImages("imagenet")
    WRITERS["mnist"](tmp_path)
    with pytest.raises(ConfigError, match="validation slice"):
        TorchvisionImages("mnist", root=str(tmp_path), val_size=12).setup("fit")


# --- image folders ----------------------------------------------------------------------------------
def mixed_folder(root: Path) -> None:
    write_image(root / "gray.png", "L", (40, 30))
    write_image(root / "rgb.png", "RGB", (30, 50))
    write_image(root / "rgb.jpg", "RGB", (50, 30), fmt="JPEG")
    write_image(root / "rgba.png", "RGBA", (24, 24))
    write_image(root / "nested" / "more.bmp", "RGB", (20, 20))
    (root / "notes.txt").write_text("not an image")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("in_memory", [False, True])
def test_flat_folder_is_unlabeled(tmp_path, channels, in_memory):
    mixed_folder(tmp_path)
    dm = ImageFolderImages(
        str(tmp_path), image_size=16, channels=channels, val_fraction=0.25, in_memory=in_memory, batch_size=3
    )
    dm.setup("fit")
    assert len(dm.splits["train"]) == 4 and len(dm.splits["val"]) == 1
    x, y = first_batch(dm)
    check_batch(x, y, (3, channels, 16, 16))
    assert (y == -1).all()


def test_class_subfolders_are_labels(tmp_path):
    for i in range(3):
        write_image(tmp_path / "cats" / f"{i}.png", "RGBA")
        write_image(tmp_path / "dogs" / f"{i}.png", "L")
    (tmp_path / ".hidden").mkdir()
    dm = ImageFolderImages(str(tmp_path), image_size=8, channels=1, val_fraction=0, batch_size=6)
    dm.setup("fit")
    x, y = first_batch(dm)
    check_batch(x, y, (6, 1, 8, 8))
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]


def test_lazy_and_in_memory_agree(tmp_path):
    mixed_folder(tmp_path)
    a, b = (ImageFolderImages(str(tmp_path), image_size=12, in_memory=m, seed=3) for m in (False, True))
    a.setup("fit")
    b.setup("fit")
    lazy = torch.stack([a.splits["train"][i][0] for i in range(len(a.splits["train"]))])
    assert torch.equal(lazy, b.splits["train"].data)


def test_resize_shorter_side_then_center_crop(tmp_path):
    stripes = np.zeros((16, 32, 3), np.uint8)  # 32 wide: green | 24 red columns | blue
    stripes[:, :4, 1] = stripes[:, 4:28, 0] = stripes[:, 28:, 2] = 255
    Image.fromarray(stripes).save(tmp_path / "wide.png")
    dm = ImageFolderImages(str(tmp_path), image_size=8, val_fraction=0)
    dm.setup("fit")
    x, _ = dm.splits["train"][0]
    assert x.shape == (3, 8, 8)
    assert (x[0] == 255).all() and (x[1:] == 0).all()  # only the red middle survives the crop


def test_transparency_is_composited_on_white(tmp_path):
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("LA", (10, 10), (0, 0)).save(tmp_path / "clear_gray.png")
    for channels in (1, 3):
        dm = ImageFolderImages(str(tmp_path), image_size=10, channels=channels, val_fraction=0)
        dm.setup("fit")
        for i in range(2):
            assert (dm.splits["train"][i][0] == 255).all()


def test_corrupt_file_named_when_loaded_and_kept(tmp_path):
    mixed_folder(tmp_path)
    bad = write_corrupt(tmp_path / "broken.png")
    dm = ImageFolderImages(str(tmp_path), image_size=8, val_fraction=0, batch_size=6)
    dm.setup("fit")  # lazy: nothing decoded yet
    assert len(dm.splits["train"]) == 6  # one batch holds every file, the broken one included
    with pytest.raises(DataError) as err:
        first_batch(dm)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert bad.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("option", ["verify", "in_memory"])
def test_corrupt_files_named_at_setup(tmp_path, option):
    mixed_folder(tmp_path)
    bad = [write_corrupt(tmp_path / "broken.png"), write_corrupt(tmp_path / "nested" / "also.jpg")]
    dm = ImageFolderImages(str(tmp_path), **{option: True})
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    assert all(str(p) in str(err.value) for p in bad) and "\n" not in str(err.value)
    assert all(p.is_file() for p in bad)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderImages(str(tmp_path / "nope")).setup("fit")
    with pytest.raises(DataError, match="no images found"):
        ImageFolderImages(str(tmp_path)).setup("fit")  # empty
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(DataError, match=r"no images found in .*\.png") as err:
        ImageFolderImages(str(tmp_path)).setup("fit")
    assert str(tmp_path) in str(err.value)
    with pytest.raises(ConfigError, match="channels"):
        ImageFolderImages(str(tmp_path), channels=4)
