"""SNGAN / SAGAN / BigGAN ResNets and the multi-scale D."""

import functools
import importlib
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.nn.utils import parametrize

from gan_lightning.errors import ConfigError
from gan_lightning.nets import (
    DCGANDiscriminator,
    MultiScaleDiscriminator,
    ResNetDiscriminator,
    ResNetGenerator,
    orthogonal_penalty,
)
from gan_lightning.nets.layers import GatedConv2d, MinibatchStd, SelfAttention
from gan_lightning.nets.norms import ConditionalBatchNorm2d, ProjectedBatchNorm2d

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"latent_dim": 16, "width": 16}


def _build(config: str, role: str, data_shape: tuple[int, ...]) -> nn.Module:
    """The network ``configs/model/<config>`` builds for ``data_shape`` (unconditional data)."""
    spec = yaml.safe_load((ROOT / "configs" / "model" / config).read_text())["model"][role]
    module, name = spec["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(data_shape, 0, **spec.get("init_args", {}))


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_sngan_config_builds_mimicrys_sngan32_parameter_counts():
    assert _count(_build("sngan.yaml", "generator", (3, 32, 32))) == 4_276_739
    assert _count(_build("sngan.yaml", "discriminator", (3, 32, 32))) == 1_053_825


@pytest.mark.parametrize("size,blocks", [(28, 2), (32, 3), (48, 3), (64, 4)])
def test_resnets_produce_and_score_each_supported_size(size, blocks):
    g = ResNetGenerator((3, size, size), **SMALL)
    d = ResNetDiscriminator((3, size, size), width=16)
    assert len(g.blocks) == blocks
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
    assert d(x).shape == (2,) and d.features(x).shape == (2, 16)


@pytest.mark.parametrize("size", [30, 100, 9])
def test_resnets_reject_a_size_the_blocks_cannot_make(size):
    with pytest.raises(ConfigError, match=f"ResNet cannot produce {size}x{size}.*image_size"):
        ResNetGenerator((3, size, size))
    with pytest.raises(ConfigError, match=f"cannot produce {size}x{size}"):
        ResNetDiscriminator((3, size, size))


def test_bottom_width_sets_the_first_feature_map_and_must_divide_the_size():
    g = ResNetGenerator((1, 48, 48), bottom_width=3, **SMALL)
    assert g.bottom == (16, 3, 3) and len(g.blocks) == 4
    with pytest.raises(ConfigError, match="bottom_width 5"):
        ResNetGenerator((1, 32, 32), bottom_width=5)


def test_width_multipliers_and_depth_shape_the_networks():
    g = ResNetGenerator((3, 32, 32), width_multipliers=[4, 2, 2, 1], blocks_per_resolution=2, **SMALL)
    assert [b.c2.out_channels for b in g.blocks] == [32, 32, 32, 32, 16, 16]
    d = ResNetDiscriminator((3, 32, 32), width=8, width_multipliers=[1, 2, 4], plain_blocks=1)
    assert [b.c1.out_channels for b in d.blocks] == [8, 16, 32] and d.head.in_features == 32
    with pytest.raises(ConfigError, match="width_multipliers needs 4 entries"):
        ResNetGenerator((3, 32, 32), width_multipliers=[1, 1])


def _sigmas(net: nn.Module) -> list[float]:
    """Top singular value of each spectrally normalized weight, as the parametrization reshapes it."""
    out = []
    for m in net.modules():
        if parametrize.is_parametrized(m, "weight"):
            dim = m.parametrizations.weight[0].dim
            w = m.weight.detach().movedim(dim, 0).flatten(1)
            out.append(torch.linalg.matrix_norm(w, ord=2).item())
    return out


def test_spectral_norm_keeps_every_layers_top_singular_value_near_one_on_g_and_d():
    torch.manual_seed(0)
    g = ResNetGenerator((3, 16, 16), spectral_norm=True, attention_resolution=8, latent_dim=8, width=8)
    d = ResNetDiscriminator((3, 16, 16), width=8, attention_resolution=8, conditioning="projection")
    with torch.no_grad():
        for _ in range(40):  # one power-iteration step per training forward
            d(g(torch.randn(4, 8)))
    g_sigmas, d_sigmas = _sigmas(g), _sigmas(d)
    assert len(g_sigmas) > 10 and len(d_sigmas) > 10
    assert max(abs(s - 1) for s in g_sigmas + d_sigmas) < 0.05
    assert not _sigmas(ResNetGenerator((3, 16, 16), **SMALL))  # SNGAN's G: no SN by default


def test_class_conditional_g_uses_cbn_and_d_uses_projection():
    g = ResNetGenerator((3, 32, 32), 10, **SMALL)
    d = ResNetDiscriminator((3, 32, 32), 10, width=16)
    assert (
        sum(isinstance(m, ConditionalBatchNorm2d) for m in g.modules()) == 6
    )  # 2 per block; output BN plain
    assert d.head.embed is not None and parametrize.is_parametrized(d.head.embed, "weight")
    z, y = torch.randn(3, 16), torch.tensor([0, 5, 9])
    with pytest.raises(ConfigError, match="without labels"):
        g(z)
    g.eval()
    a, b = g(z, y), g(z, torch.tensor([0, 5, 8]))
    assert torch.equal(a[:2], b[:2]) and not torch.allclose(a[2], b[2])
    assert d(a, y).shape == (3,)
    concat = ResNetGenerator((3, 32, 32), 10, conditioning="concat", embed_dim=4, **SMALL)
    assert concat.linear.in_features == 20


def test_self_attention_goes_where_configured_and_starts_as_the_identity():
    g = ResNetGenerator((3, 32, 32), attention_resolution=16, **SMALL)
    assert [type(m).__name__ for m in g.blocks] == ["GBlock", "GBlock", "SelfAttention", "GBlock"]
    d = ResNetDiscriminator((3, 32, 32), width=16, attention_resolution=8)
    assert isinstance(d.blocks[2], SelfAttention)  # after the first block that makes 8x8
    assert all(m.gamma.item() == 0 for m in g.modules() if isinstance(m, SelfAttention))
    with pytest.raises(ConfigError, match=r"attention_resolution to one of \[8, 16, 32\]"):
        ResNetGenerator((3, 32, 32), attention_resolution=12)


def test_biggan_shared_embedding_and_hierarchical_latent():
    g = ResNetGenerator(
        (3, 32, 32), 10, latent_dim=16, width=16, shared_embedding=True, hierarchical_z=True, embed_dim=6
    )
    bns = [m for m in g.modules() if isinstance(m, ProjectedBatchNorm2d)]
    assert len(bns) == 6 and all(m.gain.in_features == 4 + 6 for m in bns)  # z chunk of 16/4, embedding of 6
    assert sum(isinstance(m, nn.Embedding) for m in g.modules()) == 1  # one shared table
    assert g.linear.in_features == 4
    g.eval()
    z, y = torch.randn(2, 16), torch.tensor([1, 2])
    base = g(z, y)
    for k in range(4):  # every chunk of z reaches the image: the first via the linear layer, the rest via cBN
        z2 = z.clone()
        z2[:, 4 * k : 4 * k + 4] += 1
        assert not torch.allclose(g(z2, y), base)
    with pytest.raises(ConfigError, match="multiple of 4"):
        ResNetGenerator((3, 32, 32), latent_dim=10, hierarchical_z=True)
    with pytest.raises(ConfigError, match="shared_embedding"):
        ResNetGenerator((3, 32, 32), 10, hierarchical_z=True, **SMALL)


def test_orthogonal_penalty_covers_gs_weights_but_not_its_class_embedding():
    g = ResNetGenerator((3, 16, 16), 10, latent_dim=8, width=8, shared_embedding=True, spectral_norm=True)
    manual = 0.0
    for name, p in g.named_parameters():
        if p.dim() >= 2 and not name.startswith("embed."):
            w = p.flatten(1)
            manual += ((w @ w.T) * (1 - torch.eye(len(w)))).square().sum()
    torch.testing.assert_close(orthogonal_penalty(g), manual)


def test_gated_convolutions_and_other_upsampling_in_the_generator_blocks():
    g = ResNetGenerator((3, 16, 16), gated=True, upsample="pixel_shuffle", **SMALL)
    assert sum(isinstance(m, GatedConv2d) for m in g.modules()) == 4
    assert g(torch.randn(2, 16)).shape == (2, 3, 16, 16)
    assert ResNetGenerator((3, 16, 16), upsample="transposed", **SMALL)(torch.randn(2, 16)).shape == (
        2,
        3,
        16,
        16,
    )


@pytest.mark.parametrize("norm", ["instance", "layer", "group", "pixel", "switchable", "none"])
def test_generator_and_discriminator_norms_by_config(norm):
    g = ResNetGenerator((3, 16, 16), norm=norm, **SMALL)
    d = ResNetDiscriminator((3, 16, 16), width=16, norm=norm, downsample="strided")
    assert d(g(torch.randn(2, 16))).shape == (2,)
    with pytest.raises(ConfigError, match="needs norm 'batch'"):
        ResNetGenerator((3, 16, 16), 10, norm=norm, **SMALL)


def test_resnet_d_options_minibatch_std_before_the_last_block_and_discrimination_features():
    d = ResNetDiscriminator((3, 32, 32), width=16, minibatch_std_group=2, minibatch_discrimination=5)
    assert isinstance(d.blocks[-2], MinibatchStd) and d.blocks[-1].c1.in_channels == 17
    assert d.features(torch.randn(4, 3, 32, 32)).shape == (4, 16 + 5)


def test_multi_scale_d_sums_one_d_per_scale_on_pooled_copies():
    torch.manual_seed(0)
    make = functools.partial(DCGANDiscriminator, width=8)
    msd = MultiScaleDiscriminator((1, 32, 32), discriminator=make)
    assert [d.body[0].in_channels for d in msd.discriminators] == [1, 1, 1]
    x = torch.randn(4, 1, 32, 32)
    expected = sum(d(torch.nn.functional.avg_pool2d(x, 2**k)) for k, d in enumerate(msd.discriminators))
    torch.testing.assert_close(msd(x), expected)
    assert msd.features(x).shape == (4, sum(d.head.in_features for d in msd.discriminators))
    assert len(msd.state_dict()) == sum(len(d.state_dict()) for d in msd.discriminators)  # heads saved once
    acgan = MultiScaleDiscriminator(
        (1, 32, 32), 3, discriminator=functools.partial(make, conditioning="acgan")
    )
    assert acgan.head.classify(acgan.features(x)).shape == (4, 3)
    with pytest.raises(ConfigError, match=r"scale 1/4 \(7x7\).*cannot produce 7x7"):
        MultiScaleDiscriminator((1, 28, 28), discriminator=make)
