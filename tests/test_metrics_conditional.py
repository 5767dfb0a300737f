"""Agreement and intra-FID of class-conditional GANs, against values computed by hand on tiny inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.metrics.conditional import agreement, conditional_scores, intra_fid
from gan_lightning.metrics.features import FeatureExtractor


def test_agreement_is_the_fraction_labelled_as_requested_per_class_and_overall():
    predicted = torch.tensor([0, 0, 1, 2, 2, 0])
    requested = torch.tensor([0, 1, 1, 2, 2, 2])
    out = agreement(predicted, requested, num_classes=4)
    assert out["agreement"] == pytest.approx(4 / 6)
    assert out["per_class"][:3] == pytest.approx([1.0, 0.5, 2 / 3])
    assert out["per_class"][3] != out["per_class"][3]  # no samples asked of class 3: nan


def test_intra_fid_of_identical_sets_is_zero_and_of_a_shifted_class_is_the_squared_shift():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(200, 4, generator=g, dtype=torch.float64)
    labels = torch.arange(200) % 2
    shift = torch.tensor([1.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    fake = features + shift * (labels == 1)[:, None]  # class 1 moved by `shift`, same covariance
    out = intra_fid(features, labels, fake, labels, num_classes=2)
    # FID = |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^1/2): 0 for class 0, |shift|^2 = 5 for class 1
    assert out["per_class"] == pytest.approx([0.0, 5.0], abs=1e-4)
    assert out["intra_fid"] == pytest.approx(2.5, abs=1e-4)


def test_intra_fid_refuses_a_class_without_enough_samples():
    features, labels = torch.randn(6, 3), torch.tensor([0, 0, 0, 1, 1, 1])
    with pytest.raises(ConfigError, match="class 1 needs at least 2 real and 2 fake"):
        intra_fid(features, labels, features[:4], labels[:4], num_classes=2)


class _ClassAsPixel(nn.Module):
    """A 'perfect' conditional G: every pixel of its 1x2x2 image is its class label / 10."""

    latent_dim = 3

    def forward(self, z, y):
        return (y.float() / 10 + 0 * z[:, 0]).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)


class _PixelReader(FeatureExtractor):
    """Reads the class back from the first pixel; the features are the pixels."""

    num_features, num_classes = 4, 3

    def extract(self, images):
        k = (images[:, 0, 0, 0] * 10).round().long()
        return images.flatten(1).double(), torch.nn.functional.one_hot(k, 3).float().log()


def test_conditional_scores_of_a_generator_that_draws_the_requested_class_agree_fully():
    from gan_lightning.module import GANModule

    module = GANModule(
        lambda shape, k: _ClassAsPixel(),
        lambda shape, k: nn.Linear(4, 1),
        ema_decay=None,
        conditional=True,
        num_classes=3,
        data_shape=(1, 2, 2),
    )
    real_labels = torch.arange(30) % 3
    real = (real_labels.float() / 10).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    out = conditional_scores(module, _PixelReader(), real, real_labels, per_class=5, batch_size=4)
    assert out["agreement"] == 1.0 and out["agreement_per_class"] == [1.0, 1.0, 1.0]
    assert out["intra_fid_per_class"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
