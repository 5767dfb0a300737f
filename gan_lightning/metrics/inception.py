"""The standard FID/IS/KID network: torch-fidelity's InceptionV3 port of the TF 2015-12-05 graph, whose
weights every published FID uses (through torchmetrics, which wraps it).

Input conversion, the one place it happens: G's images in [-1, 1] -> uint8 via ``to_uint8`` (the same
rounding as the PNG files) -> grayscale repeated to 3 channels -> resized to 299x299 with the TF1-style
bilinear resize (``antialias=False``: what torch-fidelity and the published numbers use; torchmetrics'
own default since 1.8 is an antialiased resize, which gives different FIDs) -> (x - 128) / 128 inside
the network.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch import Tensor

from gan_lightning.data.base import to_uint8
from gan_lightning.errors import ConfigError
from gan_lightning.metrics.features import FeatureExtractor

WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


def default_weights_path() -> Path:
    """Where torch.hub (and so torch-fidelity and torchmetrics) keeps the downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def _missing_weights_message(reason: str) -> str:
    return (
        f"the InceptionV3 weights for FID/IS/KID are not available ({reason}). On a machine with network, "
        f"download {WEIGHTS_URL} and put it at {default_weights_path()} (or anywhere, and set "
        "metrics.extractor.init_args.weights_path to it); offline, the digit classifier "
        "(gan_lightning.metrics.DigitFeatures) gives FID/IS/KID on digit data with no download"
    )


def resolve_weights(weights_path: str | Path | None) -> Path:
    """The local weights file: the given path, else torch.hub's copy, downloaded when missing."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ConfigError(_missing_weights_message(f"{path} does not exist"))
        return path
    path = default_weights_path()
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(WEIGHTS_URL, str(path), progress=False)
        except Exception as err:  # URLError, socket errors, HTTP errors: all mean "not here"
            raise ConfigError(_missing_weights_message(f"download failed: {type(err).__name__}")) from None
    return path


def save_random_weights(path: str | Path) -> Path:
    """A weights file in torch-fidelity's layout with random values. The network computes exactly what
    the real one does, so it serves timings and tests where the real file cannot be downloaded; its
    features mean nothing."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    cls = tf_inception.FeatureExtractorInceptionV3
    with (
        mock.patch.object(tf_inception, "load_state_dict_from_url", return_value={}),
        mock.patch.object(cls, "load_state_dict"),  # keep the random initialization
    ):
        net = cls("inception-v3-compat", ["2048"])
    path = Path(path)
    torch.save(net.state_dict(), path)
    return path


class InceptionV3(FeatureExtractor):
    """2048-d pool features (FID, KID) and the 1008 unbiased logits (IS) in one forward pass.

    Args:
        weights_path: a local copy of torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``;
            ``None`` uses torch.hub's cache, downloading the file when it is not there yet.
        antialias: resize with antialiasing (torchmetrics' default) instead of the TF1 resize.
    """

    num_features = 2048
    num_classes = 1008
    key_prefix = ""

    def __init__(self, weights_path: str | None = None, antialias: bool = False) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        path = resolve_weights(weights_path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.net = NoTrainInceptionV3(
                    name="inception-v3-compat",
                    features_list=["2048", "logits_unbiased"],
                    feature_extractor_weights_path=str(path),
                    antialias=antialias,
                )
        except (RuntimeError, OSError, EOFError, KeyError) as err:
            raise ConfigError(
                f"{path} is not a valid InceptionV3 weights file ({type(err).__name__}); "
                + _missing_weights_message("the file could not be loaded")
            ) from None
        self.net.requires_grad_(False)
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:8]
        self.name = f"inception-v3-{digest}{'-aa' if antialias else ''}"

    def extract(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = to_uint8(images)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise ConfigError(f"InceptionV3 takes 1- or 3-channel images, got {x.shape[1]} channels")
        features, logits = self.net._torch_fidelity_forward(x)
        return features, logits
