"""Stacked MNIST: three independent embedded digits per sample, labelled 100 d0 + 10 d1 + d2."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import ROOT, run_cli, tiny_args

from gan_lightning.data import StackedDigits
from gan_lightning.data.digits import load_embedded_digits, split_indices
from gan_lightning.errors import ConfigError


def built(split: str = "train", **kwargs):
    dm = StackedDigits(**{"num_train": 2000, "num_val": 500, "seed": 0, **kwargs})
    return dm, dm.build(split)


def locate_digits(channels: torch.Tensor, size: int) -> torch.Tensor:
    """Index, among the 5,000 embedded digits, of each (.., size, size) image (-1 if it is none of them)."""
    images = load_embedded_digits()[0]
    if size == 32:
        images = F.pad(images, (2, 2, 2, 2))
    where = {img.numpy().tobytes(): i for i, img in enumerate(images[:, 0])}
    flat = channels.reshape(-1, size, size)
    return torch.tensor([where.get(img.numpy().tobytes(), -1) for img in flat]).view(channels.shape[:-2])


def decode(labels: torch.Tensor) -> torch.Tensor:
    return torch.stack([labels // 100, labels // 10 % 10, labels % 10], 1)


@pytest.mark.parametrize("size", [28, 32])
def test_samples_are_uint8_triples_of_real_digits_matching_their_label(size):
    dm, ds = built(image_size=size)
    assert dm.data_shape == (3, size, size) and len(ds) == 2000
    x, y = ds.__getitems__(list(range(300)))
    assert x.dtype == torch.uint8 and x.shape == (300, 3, size, size)
    assert y.dtype == torch.int64 and 0 <= y.min() and y.max() <= 999
    found = locate_digits(x, size)
    assert (found >= 0).all()  # every channel is one whole embedded digit
    assert torch.equal(
        load_embedded_digits()[1][found], decode(y)
    )  # ... whose label the sample's label names
    x0, y0 = ds[7]
    assert torch.equal(x0, x[7]) and y0 == y[7]


def test_dataset_stores_index_triples_not_images():
    _, ds = built(num_train=50_000)
    assert len(ds) == 50_000 and len(ds.digits) == 4500  # the pool is the 4,500 train digits


def test_samples_are_identical_across_instances_and_pickling_and_change_with_the_seed():
    _, a = built()
    _, b = built()
    c = pickle.loads(pickle.dumps(a))  # as a spawned DataLoader worker gets it
    idx = list(range(0, 2000, 7))
    for other in (b, c):
        assert all(torch.equal(u, v) for u, v in zip(a.__getitems__(idx), other.__getitems__(idx)))
    _, d = built(seed=1)
    assert not torch.equal(a.__getitems__(idx)[0], d.__getitems__(idx)[0])


def test_channels_are_drawn_independently():
    _, ds = built(num_train=50_000)
    digits = decode(ds.labels)
    assert len(torch.unique(ds.labels)) == 1000  # ~50 samples per triple: all are there
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        joint = torch.bincount(10 * digits[:, a] + digits[:, b], minlength=100).double() / len(ds)
        marginal_a = torch.bincount(digits[:, a], minlength=10).double() / len(ds)
        marginal_b = torch.bincount(digits[:, b], minlength=10).double() / len(ds)
        product = torch.outer(marginal_a, marginal_b).flatten()
        std = (product * (1 - product) / len(ds)).sqrt()  # of one joint cell's frequency
        assert ((joint - product).abs() < 5 * std).all()
    same_digit = (ds.triples[:, 0] == ds.triples[:, 1]).double().mean().item()
    assert same_digit < 10 / 4500  # the same image twice: as rare as chance (1/4500), not the rule


def test_val_and_test_stack_only_held_out_digits_and_train_only_train_digits():
    dm, train = built(image_size=28, val_size=300)
    val, test = dm.build("val"), dm.build("test")
    split = split_indices(5000, 300, seed=0)
    for ds, allowed in [(train, split["train"]), (val, split["val"]), (test, split["val"])]:
        found = locate_digits(ds.__getitems__(list(range(len(ds))))[0], 28).unique()
        assert torch.isin(found, allowed).all()
    assert len(val) == 500 and torch.equal(val.labels, test.labels)  # one held-out set for both


def test_batches_are_float_in_unit_range_with_background_padding():
    dm = StackedDigits(num_train=256, num_val=64, batch_size=16, seed=0)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        x, y = dm.on_after_batch_transfer(next(iter(loader)), 0)
        assert x.dtype == torch.float32 and x.shape == (16, 3, 32, 32) and y.shape == (16,)
        assert x.min() == -1 and x.max() <= 1 and x.max() > 0.9
        assert (x[..., :2, :] == -1).all() and (x[..., :, -2:] == -1).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"image_size": 64}, "28 or 32"), ({"val_size": 5000}, "val_size"), ({"num_train": 0}, "num_train")],
)
def test_bad_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        StackedDigits(**kwargs)


@pytest.mark.slow
def test_stacked_mnist_config_trains_three_channel_nets(tmp_path):
    args = ["--config", str(ROOT / "configs/stacked_mnist.yaml")]
    args += ["--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8"]
    args += ["--data.init_args.num_train", "256", "--data.init_args.num_val", "32"]
    args += ["--data.init_args.batch_size", "16"]
    run_cli(["fit", *args, *tiny_args(tmp_path, max_steps=3)])
    ckpt = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3
    first_conv = next(
        v for k, v in ckpt["state_dict"].items() if k.startswith("discriminator") and v.dim() == 4
    )
    assert first_conv.shape[1] == 3  # D reads RGB: data_shape reached the networks
    assert math.isfinite(sum(v.float().sum().item() for v in ckpt["state_dict"].values()))


def test_the_g64_experiment_widens_g_and_leaves_d_at_the_bases_width(capsys):
    """``configs/experiment/stacked_mnist_g64.yaml`` (the best Stacked MNIST recipe, docs/stacked_mnist.md)
    on its base: G at 64 channels, D still at the base's 32, for the documented budget."""
    base, experiment = ROOT / "configs/stacked_mnist.yaml", ROOT / "configs/experiment/stacked_mnist_g64.yaml"
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", str(base), "--config", str(experiment), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["generator"]["init_args"]["width"] == 64
    assert config["model"]["discriminator"]["init_args"]["width"] == 32
    assert config["trainer"]["max_steps"] == 20000
