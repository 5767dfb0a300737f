"""Progressive-growing networks: each stage's size, and the fade-in as an alpha-blend of two paths."""

import pytest
import torch
import torch.nn.functional as F

from gan_lightning.errors import ConfigError
from gan_lightning.nets import PGGANDiscriminator, PGGANGenerator


def test_each_stage_makes_and_scores_its_resolution():
    torch.manual_seed(0)
    g, d = PGGANGenerator((3, 32, 32), latent_dim=8, width=16), PGGANDiscriminator((3, 32, 32), width=16)
    assert g.stage == d.stage == 3 and g.alpha == d.alpha == 1.0  # defaults: the full-size network
    z = torch.randn(4, 8)
    for stage in range(4):
        g.stage = d.stage = stage
        x = g(z)
        assert x.shape == (4, 3, 4 * 2**stage, 4 * 2**stage)
        assert d(x).shape == (4,) and d.features(x).shape == (4, 16)
    with pytest.raises(ConfigError, match="stage 3 takes 32x32"):
        d(torch.randn(4, 3, 16, 16))


def test_generator_fade_in_is_the_alpha_blend_of_the_new_block_and_the_upsampled_old_image():
    torch.manual_seed(0)
    g = PGGANGenerator((1, 16, 16), latent_dim=8, width=16)
    z = torch.randn(3, 8)
    g.stage = 1
    previous = g(z)  # 8x8
    g.stage, g.alpha = 2, 0.0
    torch.testing.assert_close(g(z), F.interpolate(previous, scale_factor=2.0, mode="nearest"))
    old = g(z)
    g.alpha = 1.0
    new = g(z)
    g.alpha = 0.3
    torch.testing.assert_close(g(z), 0.3 * new + 0.7 * old)


def test_discriminator_fade_in_blends_the_new_block_with_the_pooled_images_old_path():
    torch.manual_seed(0)
    d = PGGANDiscriminator((1, 16, 16), width=16)
    x = torch.randn(4, 1, 16, 16)
    d.alpha = 0.0
    old = d.grown_input(x)
    torch.testing.assert_close(old, F.leaky_relu(d.from_rgb[1](F.avg_pool2d(x, 2)), 0.2))
    d.alpha = 1.0
    new = d.grown_input(x)
    d.alpha = 0.3
    torch.testing.assert_close(d.grown_input(x), 0.3 * new + 0.7 * old)
    torch.testing.assert_close(d(x), d.head(d.features(x)))


def test_pggan_rejects_sizes_not_grown_from_4x4_and_takes_labels():
    with pytest.raises(ConfigError, match="cannot produce 28x28.*4\\*2\\^n"):
        PGGANGenerator((1, 28, 28))
    g = PGGANGenerator((1, 8, 8), 5, latent_dim=4, width=8)
    d = PGGANDiscriminator((2, 8, 8), 5, width=8, conditioning="input")  # PacGAN: 2 channels
    with pytest.raises(ConfigError, match="without labels"):
        g(torch.randn(2, 4))
    y = torch.tensor([0, 4])
    assert d(g(torch.randn(2, 4), y).repeat(1, 2, 1, 1), y).shape == (2,)
