import pytest
import torch

from gan_lightning.errors import ConfigError
from gan_lightning.nets import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    dcgan_start_size,
)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 1), (32, 3), (64, 3)])
def test_dcgan_produces_and_scores_the_configured_image_size(size, channels):
    g = DCGANGenerator((channels, size, size), latent_dim=16, width=8)
    d = DCGANDiscriminator((channels, size, size), width=8)
    x = g(torch.randn(4, 16))
    assert x.shape == (4, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1  # tanh output
    assert d(x).shape == (4,)


def test_dcgan_follows_the_guidelines_no_bn_on_g_output_or_d_input():
    g = DCGANGenerator((1, 32, 32), width=8)
    d = DCGANDiscriminator((1, 32, 32), width=8)
    assert isinstance(g.body[-1], torch.nn.Tanh) and isinstance(g.body[-2], torch.nn.ConvTranspose2d)
    assert isinstance(d.body[0], torch.nn.Conv2d) and isinstance(d.body[1], torch.nn.LeakyReLU)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in d.modules())  # strided convs only


@pytest.mark.parametrize("size", [30, 100, 3, 7])
def test_dcgan_rejects_a_size_it_cannot_produce_with_a_clear_error(size):
    with pytest.raises(ConfigError, match=f"cannot produce {size}x{size}.*image_size"):
        DCGANGenerator((3, size, size))


def test_dcgan_start_sizes():
    assert dcgan_start_size(28) == (7, 2)
    assert dcgan_start_size(32) == (4, 3)
    assert dcgan_start_size(64) == (4, 4)


def test_dcgan_rejects_2d_data_and_points_to_the_mlp():
    with pytest.raises(ConfigError, match="MLP"):
        DCGANDiscriminator((2,))


def test_spectral_norm_option_keeps_top_singular_value_near_one():
    d = DCGANDiscriminator((1, 32, 32), width=8, spectral_norm=True)
    with torch.no_grad():
        for _ in range(30):  # power iteration converges over forward passes in train mode
            d(torch.randn(2, 1, 32, 32))
    lin = d.body[-1]
    sigma = torch.linalg.matrix_norm(lin.weight, ord=2)
    assert abs(sigma.item() - 1.0) < 0.05


def test_mlp_maps_noise_to_points_and_points_to_scores():
    g, d = MLPGenerator((2,), latent_dim=3, hidden=16), MLPDiscriminator((2,), hidden=16)
    x = g(torch.randn(5, 3))
    assert x.shape == (5, 2) and d(x).shape == (5,)
