"""An offline digit classifier as a feature extractor: digit FID/KID/IS and (Stacked-)MNIST mode counts.

The classifier is a small CNN trained only on the embedded digits' *train* split (split seed fixed at
0, so it never sees the default held-out digits) and checked on the 500 held-out ones. Train it with::

    python -m gan_lightning.metrics.digits            # -> $GAN_LIGHTNING_CACHE/digit_classifier.pt

:class:`DigitFeatures` loads it (training it first when the file is missing) and maps images in [-1, 1]
to (features, logits):

* one channel: features (N, 128) from the penultimate layer, logits (N, 10) = log p(digit);
* three channels (Stacked MNIST): each channel is classified on its own; features are the three
  128-d vectors concatenated (N, 384) and the logits are log-probabilities of the 1000 digit triples,
  ``logit[100 d0 + 10 d1 + d2] = sum_c log p_c(d_c)``, so their argmax is the triple of per-channel
  argmaxes. The mode count of VEEGAN/PacGAN is ``class_coverage(logits.argmax(1), 1000)``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.checkpoints import CheckpointError, load_file
from gan_lightning.data.base import to_unit_range
from gan_lightning.data.digits import load_embedded_digits, split_indices
from gan_lightning.errors import ConfigError
from gan_lightning.metrics.features import FeatureExtractor, atomic_save, cache_dir

WEIGHTS_FILE = "digit_classifier.pt"
TRAIN_COMMAND = "python -m gan_lightning.metrics.digits"
SPLIT_SEED = 0  # fixed: the classifier must never see the held-out digits of the default split


def default_weights_path() -> Path:
    return cache_dir() / WEIGHTS_FILE


class DigitClassifier(nn.Module):
    """28x28 single-channel digits in [-1, 1] -> (features (N, 128), logits (N, 10)).

    conv(16)-pool-conv(32)-pool-fc(128)-fc(10), BatchNorm after each hidden layer: 0.2M parameters
    and 1.2M multiply-adds per digit, so it trains in seconds on a CPU.
    """

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, self.num_features, bias=False),
            nn.BatchNorm1d(self.num_features),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(self.num_features, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return features, self.head(self.dropout(features))


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts of up to 2 px, rotations up to 10 degrees, scaling by 0.9-1.1 (one affine warp)."""
    n = len(x)
    u = torch.rand(n, 4, generator=generator) * 2 - 1  # uniform in [-1, 1]
    angle, scale = u[:, 0] * math.radians(10), 1 + 0.1 * u[:, 1]
    shift = u[:, 2:] * (2 * 2 / 28)  # affine_grid works in [-1, 1] units: 2 px = 4/28
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # warp in [0, 2] so the zero padding of grid_sample is background (-1 after the shift back)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


@torch.no_grad()
def _accuracy(model: DigitClassifier, x: Tensor, y: Tensor) -> float:
    model.eval()
    return (model(x)[1].argmax(1) == y).double().mean().item()


def _fit(x: Tensor, y: Tensor, epochs: int, seed: int, batch_size: int) -> DigitClassifier:
    """Adam, one-cycle learning rate, augmented batches; touches neither the global RNG nor threads."""
    steps_per_epoch = len(x) // batch_size
    threads = torch.get_num_threads()
    # One thread: the weights are then bit-identical on every machine and rank (the reduction order
    # of CPU kernels depends on the thread count), and small ops don't stall on a busy CPU.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # initial weights and dropout
            g = torch.Generator().manual_seed(seed)  # shuffling and augmentation
            model = DigitClassifier()
            opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * steps_per_epoch)
            model.train()
            for _ in range(epochs):
                perm = torch.randperm(len(x), generator=g)
                for i in range(steps_per_epoch):
                    idx = perm[i * batch_size : (i + 1) * batch_size]
                    loss = F.cross_entropy(model(_augment(x[idx], g))[1], y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def train_digit_classifier(
    path: str | Path | None = None,
    epochs: int = 10,
    seed: int = 0,
    num_train: int | None = None,
    batch_size: int = 64,
) -> Path:
    """Train :class:`DigitClassifier` on the embedded digits' train split and save it; returns the path.

    The result depends only on the arguments (the global RNG is left as it was). ``num_train`` keeps
    only the first digits of the train split (for quick tests). The file holds ``{"state_dict",
    "val_accuracy", "epochs", "seed", "num_train"}``, the accuracy measured on the 500 held-out digits.
    """
    path = Path(path) if path is not None else default_weights_path()
    images, labels = load_embedded_digits()
    split = split_indices(len(images), 500, seed=SPLIT_SEED)
    train_idx = split["train"][:num_train]
    if epochs < 1 or len(train_idx) < batch_size:
        raise ConfigError(
            f"need epochs >= 1 and at least batch_size={batch_size} digits, got {epochs} and {len(train_idx)}"
        )
    model = _fit(to_unit_range(images[train_idx]), labels[train_idx], epochs, seed, batch_size)
    val_accuracy = _accuracy(model, to_unit_range(images[split["val"]]), labels[split["val"]])
    record = {"state_dict": model.state_dict(), "val_accuracy": val_accuracy, "epochs": epochs, "seed": seed}
    atomic_save({**record, "num_train": len(train_idx)}, path)
    return path


class DigitFeatures(FeatureExtractor):
    """The digit classifier as a :class:`FeatureExtractor` (metric keys ``digit_fid``, ``digit_modes``...).

    Args:
        weights_path: the classifier file; default ``cache_dir()/digit_classifier.pt``.
        train_if_missing: train the default file when it does not exist yet (a few seconds on a CPU).
            An explicit ``weights_path`` that does not exist is always an error.
        channels: 1 for digits, 3 for Stacked MNIST (one digit per channel, 1000 classes).

    Images are (N, channels, H, W) in [-1, 1]: 32x32 is center-cropped to 28x28 (the exact inverse of
    ``EmbeddedDigits(image_size=32)``'s padding), any other size is resized to 28x28.
    """

    key_prefix = "digit_"

    def __init__(
        self, weights_path: str | None = None, train_if_missing: bool = True, channels: int = 1
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ConfigError(
                f"DigitFeatures.channels must be 1 (digits) or 3 (Stacked MNIST), got {channels}"
            )
        self.channels = channels
        self.num_features = DigitClassifier.num_features * channels
        self.num_classes = 10**channels
        path = Path(weights_path) if weights_path is not None else default_weights_path()
        if not path.is_file():
            if weights_path is not None or not train_if_missing:
                raise ConfigError(
                    f"digit classifier weights {path} not found; create them with: {TRAIN_COMMAND}"
                )
            print(f"digit classifier weights not found: training them now into {path}")
            train_digit_classifier(path)
        blob = path.read_bytes()  # hash and load the same bytes, even if another process replaces the file
        fix = f"delete it and run: {TRAIN_COMMAND}"
        try:
            record = load_file(path, "DigitClassifier file", fix, data=blob)
        except CheckpointError as err:
            raise ConfigError(str(err)) from None
        self.classifier = DigitClassifier()
        try:
            self.classifier.load_state_dict(record["state_dict"])
        except (KeyError, RuntimeError, TypeError) as e:
            raise ConfigError(f"{path} is not a DigitClassifier file; {fix}") from e
        self.val_accuracy: float = record.get("val_accuracy", float("nan"))
        digest = hashlib.sha1(blob).hexdigest()[:10]
        # features differ with the channel count, so it is part of the cache key
        self.name = f"digit-classifier-{digest}" + ("-stacked" if channels == 3 else "")
        self.requires_grad_(False)
        self.eval()

    def extract(self, images: Tensor) -> tuple[Tensor, Tensor]:
        n, c, h, w = images.shape
        if c != self.channels:
            raise ConfigError(
                f"DigitFeatures(channels={self.channels}) got {c}-channel images; set channels: {c}"
                if c in (1, 3)
                else f"DigitFeatures takes 1- or 3-channel digit images, got {c} channels"
            )
        x = images.to(self.classifier.head.weight.dtype)
        if (h, w) == (32, 32):
            x = x[:, :, 2:30, 2:30]
        elif (h, w) != (28, 28):
            x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
        features, logits = self.classifier(x.reshape(n * c, 1, 28, 28).contiguous())
        logp = logits.log_softmax(1)
        if c == 1:
            return features, logp
        logp = logp.view(n, 3, 10)
        # log p(d0, d1, d2) = sum of the channels' log p; flattening (d0, d1, d2) gives 100 d0 + 10 d1 + d2
        triples = logp[:, 0, :, None, None] + logp[:, 1, None, :, None] + logp[:, 2, None, None, :]
        return features.reshape(n, 3 * DigitClassifier.num_features), triples.reshape(n, 1000)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the digit classifier behind the digit metrics.")
    parser.add_argument("--out", default=None, help=f"weights file (default: {default_weights_path()})")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = train_digit_classifier(args.out, epochs=args.epochs, seed=args.seed)
    accuracy = torch.load(path, map_location="cpu", weights_only=True)["val_accuracy"]
    seconds = time.perf_counter() - start
    print(f"val accuracy {100 * accuracy:.2f}% on the 500 held-out digits ({seconds:.0f} s); weights: {path}")


if __name__ == "__main__":
    main()
