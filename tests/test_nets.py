import functools

import pytest
import torch
from conftest import ROOT

from gan_lightning.cli import GANCLI
from gan_lightning.errors import ConfigError
from gan_lightning.nets import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    MultiScaleDiscriminator,
    ResNetDiscriminator,
    dcgan_start_size,
)
from gan_lightning.nets.layers import Maxout, MinibatchStd
from gan_lightning.nets.norms import ConditionalBatchNorm1d, ConditionalBatchNorm2d


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
    lin = d.head.linear
    sigma = torch.linalg.matrix_norm(lin.weight, ord=2)
    assert abs(sigma.item() - 1.0) < 0.05


def test_mlp_maps_noise_to_points_and_points_to_scores():
    g, d = MLPGenerator((2,), latent_dim=3, hidden=16), MLPDiscriminator((2,), hidden=16)
    x = g(torch.randn(5, 3))
    assert x.shape == (5, 2) and d(x).shape == (5,)


# Outputs of the networks as they were before conditioning and shared layers came in (same seed, same
# parameter creation order and init): unconditional runs and their checkpoints stay reproducible.
@pytest.mark.parametrize(
    "make,shape,total,first",
    [
        (lambda: DCGANGenerator((1, 28, 28), latent_dim=16, width=8), (4, 16), -125.41978, 0.0062636),
        (
            lambda: DCGANDiscriminator((1, 28, 28), width=8, spectral_norm=True),
            (4, 1, 28, 28),
            -3.196391,
            -0.866114,
        ),
        (lambda: MLPDiscriminator((2,), hidden=16), (5, 2), -0.2900774, -0.0649578),
    ],
)
def test_unconditional_networks_reproduce_their_earlier_outputs_at_the_same_seed(make, shape, total, first):
    torch.manual_seed(0)
    net = make()
    out = net(torch.randn(*shape, generator=torch.Generator().manual_seed(1)))
    assert out.double().sum().item() == pytest.approx(total, abs=2e-4)
    assert out.flatten()[0].item() == pytest.approx(first, abs=1e-6)


# --- conditioning --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "g",
    [
        DCGANGenerator((1, 28, 28), 10, latent_dim=8, width=8),
        DCGANGenerator((1, 28, 28), 10, latent_dim=8, width=8, conditioning="concat"),
        MLPGenerator((2,), 10, latent_dim=8, hidden=16),
        MLPGenerator((2,), 10, latent_dim=8, hidden=16, norm="batch", conditioning="cbn"),
    ],
    ids=["dcgan-cbn", "dcgan-concat", "mlp-concat", "mlp-cbn"],
)
def test_conditional_generators_need_labels_and_use_them(g):
    z = torch.randn(4, 8)
    with pytest.raises(ConfigError, match="num_classes=10.*without labels"):
        g(z)
    g.eval()  # BN on running statistics: each sample's output depends on its own label only
    a, b = g(z, torch.tensor([0, 1, 2, 3])), g(z, torch.tensor([0, 1, 2, 4]))
    assert torch.equal(a[:3], b[:3]) and not torch.allclose(a[3], b[3])


def test_cbn_generators_replace_every_batchnorm_and_concat_widens_the_input():
    g = DCGANGenerator((1, 32, 32), 10, latent_dim=8, width=8)
    assert sum(isinstance(m, ConditionalBatchNorm2d) for m in g.modules()) == 3
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and m.affine for m in g.modules())
    g = DCGANGenerator((1, 32, 32), 10, latent_dim=8, width=8, conditioning="concat", embed_dim=5)
    assert g.project[0].in_features == 13
    assert any(
        isinstance(m, ConditionalBatchNorm1d)
        for m in MLPGenerator((2,), 3, norm="batch", conditioning="cbn").modules()
    )
    with pytest.raises(ConfigError, match="norm 'batch'"):
        MLPGenerator((2,), 3, conditioning="cbn")


def _discriminators(num_classes: int, conditioning: str) -> list[tuple[torch.nn.Module, tuple[int, ...]]]:
    kw = {"conditioning": conditioning}
    return [
        (
            DCGANDiscriminator((2, 28, 28), num_classes, width=8, spectral_norm=True, **kw),
            (2, 28, 28),
        ),  # PacGAN
        (
            DCGANDiscriminator(
                (1, 28, 28), num_classes, width=8, minibatch_std_group=2, minibatch_discrimination=3, **kw
            ),
            (1, 28, 28),
        ),
        (
            MLPDiscriminator(
                (4,), num_classes, hidden=16, minibatch_std_group=2, minibatch_discrimination=3, **kw
            ),
            (4,),
        ),
        (MLPDiscriminator((2,), num_classes, hidden=16, activation="maxout", spectral_norm=True, **kw), (2,)),
        (ResNetDiscriminator((3, 32, 32), num_classes, width=16, minibatch_std_group=2, **kw), (3, 32, 32)),
        (
            MultiScaleDiscriminator(
                (1, 32, 32), num_classes, discriminator=functools.partial(DCGANDiscriminator, width=8, **kw)
            ),
            (1, 32, 32),
        ),
    ]


@pytest.mark.parametrize(
    "num_classes,conditioning", [(0, "projection"), (5, "projection"), (5, "acgan"), (5, "input")]
)
def test_every_discriminator_is_its_head_on_its_features(num_classes, conditioning):
    torch.manual_seed(0)
    y = torch.tensor([0, 1, 2, 4]) if num_classes else None
    for d, shape in _discriminators(num_classes, conditioning):
        x = torch.randn(4, *shape)
        d.eval()  # BN on running statistics, SN weights fixed: two calls see the same network
        h = d.features(x, y)
        assert h.shape == (4, d.head.in_features)
        torch.testing.assert_close(d(x, y), d.head(h, y))
        if conditioning == "acgan" and num_classes:
            assert d.head.classify(h).shape == (4, num_classes)
        if num_classes and conditioning != "acgan":
            assert not torch.allclose(d(x, y), d(x, torch.tensor([1, 1, 1, 1])))  # the label matters
            with pytest.raises(ConfigError, match="without labels"):
                d(x)


def test_d_options_add_a_std_map_and_discrimination_features():
    d = DCGANDiscriminator((1, 32, 32), width=8, minibatch_std_group=4, minibatch_discrimination=3)
    assert d.features(torch.randn(8, 1, 32, 32)).shape == (8, (32 + 1) * 4 * 4 + 3)  # one more map, 3 kernels
    m = MLPDiscriminator((2,), hidden=16, minibatch_std_group=4)
    assert isinstance(m.net[4], MinibatchStd) and m.net[5].in_features == 17  # into the last hidden layer


def test_input_conditioning_adds_label_channels_to_the_first_layer():
    d = DCGANDiscriminator((3, 32, 32), 10, width=8, conditioning="input", embed_dim=4)
    assert d.body[0].in_channels == 7
    assert MLPDiscriminator((2,), 10, hidden=8, conditioning="input", embed_dim=4).net[0].in_features == 6


def test_mlp_options_for_pacgans_grid_setting():
    g = MLPGenerator((2,), hidden=400, depth=4, norm="batch")
    d = MLPDiscriminator((2,), hidden=200, activation="maxout", maxout_pieces=5)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in g.modules()) == 4
    assert [m.linear.out_features for m in d.modules() if isinstance(m, Maxout)] == [1000] * 3
    assert d(g(torch.randn(6, 2))).shape == (6,)


def test_generators_take_spectral_norm_and_other_norms_by_config():
    g = DCGANGenerator((1, 32, 32), width=8, spectral_norm=True, norm="pixel")
    assert hasattr(g.project[0], "parametrizations") and not any(
        isinstance(m, torch.nn.BatchNorm2d) for m in g.modules()
    )
    assert g(torch.randn(2, 100)).shape == (2, 1, 32, 32)
    assert hasattr(MLPGenerator((2,), spectral_norm=True).net[0], "parametrizations")
    with pytest.raises(ConfigError, match="needs norm 'batch'"):
        DCGANGenerator((1, 32, 32), 10, norm="layer")


# --- PacGAN's 2D-grid MLP options: the authors' init and BatchNorm momentum -------------------------
def test_mlp_init_std_draws_every_linear_weight_from_n_0_std_and_zeroes_the_biases():
    torch.manual_seed(0)
    g = MLPGenerator((2,), hidden=400, depth=4, norm="batch", init_std=0.02)
    d = MLPDiscriminator((2,), hidden=200, activation="maxout", init_std=0.02)
    linears = [m for net in (g, d) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 5 + 4  # G: 4 hidden + out; D: 3 maxout + the head's linear
    for m in linears:
        if m.weight.numel() >= 1000:  # enough draws for the sample std to be within 10 %
            assert abs(m.weight.std().item() - 0.02) < 0.002, m
        assert m.weight.abs().max() < 0.02 * 7 and torch.count_nonzero(m.bias) == 0
    default = MLPDiscriminator((2,), hidden=200, activation="maxout")
    assert default.net[0].linear.weight.std() > 0.2  # PyTorch's init for 2 inputs is far wider
    with pytest.raises(ConfigError, match="init_std"):
        MLPGenerator((2,), init_std=0.0)


def test_mlp_bn_momentum_sets_how_far_the_running_mean_moves_in_one_step():
    torch.manual_seed(0)
    g = MLPGenerator((2,), hidden=8, depth=1, norm="batch", bn_momentum=0.05)
    bn = next(m for m in g.modules() if isinstance(m, torch.nn.BatchNorm1d))
    z = torch.randn(16, 2)
    pre_bn = g.net[0](z)  # the hidden linear layer's output, before its BatchNorm
    g.train()(z)
    # running_mean starts at 0: one step gives (1 - 0.05) * 0 + 0.05 * batch mean
    torch.testing.assert_close(bn.running_mean, 0.05 * pre_bn.mean(0).detach())
    assert MLPGenerator((2,), norm="batch").net[1].momentum == 0.1  # PyTorch's default kept otherwise
    with pytest.raises(ConfigError, match="bn_momentum"):
        MLPGenerator((2,), norm="batch", bn_momentum=0.0)


def pacgan_grid_model():
    """The module of the PacGAN grid experiment, composed as its header documents."""
    configs = ["toy/grid.yaml", "model/mlp_pacgan.yaml", "experiment/pacgan_grid.yaml"]
    args = [x for c in configs for x in ("--config", str(ROOT / "configs" / c))]
    return GANCLI(args=[*args, "--trainer.logger", "false"], run=False).model


def test_the_pacgan_grid_configs_turn_on_the_authors_init_and_momentum():
    model = pacgan_grid_model()
    assert {m.momentum for m in model.generator.modules() if isinstance(m, torch.nn.BatchNorm1d)} == {0.05}
    d_first = model.discriminator.net[0].linear
    assert abs(d_first.weight.std().item() - 0.02) < 0.002 and torch.count_nonzero(d_first.bias) == 0


def test_the_pacgan_grid_adam_is_the_authors_blocks_adam():
    """The authors' config says Adam beta1 0.8, in Blocks, whose Adam takes 1 - beta (defaults beta1 0.1,
    beta2 0.001): mean = beta1 * grad + (1 - beta1) * mean. The experiment's torch Adam must follow the same
    path as that rule, written out here from Blocks' `Adam.compute_step` (its 1 - 1e-8 decay of beta1 left
    out)."""
    model = pacgan_grid_model()
    param = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
    opt = model._g_opt_factory([param])
    lr, b1, b2, eps = 1e-4, 0.8, 0.001, 1e-8  # the authors' Blocks arguments
    blocks, mean, var = param.detach().clone(), torch.zeros(3), torch.zeros(3)
    grads = torch.tensor([[1.0, -2.0, 0.5], [-3.0, 1.0, 0.25], [0.5, 0.5, -1.0], [2.0, -1.0, 1.0]])
    for t, grad in enumerate(grads, start=1):
        opt.zero_grad()
        param.grad = grad.clone()
        opt.step()
        mean = b1 * grad + (1 - b1) * mean
        var = b2 * grad**2 + (1 - b2) * var
        blocks -= lr * (1 - (1 - b2) ** t) ** 0.5 / (1 - (1 - b1) ** t) * mean / (var.sqrt() + eps)
    torch.testing.assert_close(param.detach(), blocks, rtol=0, atol=1e-9)
