"""The shared blocks of gan_lightning/nets: each against a hand-computed value on a tiny tensor."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.nets.layers import (
    DiscriminatorHead,
    EqualizedConv2d,
    EqualizedLinear,
    GatedConv2d,
    InputConditioning,
    Maxout,
    MinibatchDiscrimination,
    MinibatchStd,
    SelfAttention,
    apply_spectral_norm,
    make_downsample,
    make_upsample,
    orthogonal_penalty,
)
from gan_lightning.nets.norms import (
    NORMS,
    ConditionalBatchNorm1d,
    ConditionalBatchNorm2d,
    PixelNorm,
    ProjectedBatchNorm2d,
    SwitchableNorm2d,
    make_norm,
)


def test_conditional_batchnorm_applies_each_classes_gain_and_bias():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(2, num_classes=3)
    with torch.no_grad():
        cbn.gain.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
        cbn.bias.weight.copy_(torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]))
    x, y = torch.randn(4, 2, 3, 3), torch.tensor([2, 0, 1, 2])
    normed = F.batch_norm(x, None, None, training=True)
    out = cbn(x, y)
    for i, c in enumerate(y.tolist()):
        gain, bias = cbn.gain.weight[c].view(2, 1, 1), cbn.bias.weight[c].view(2, 1, 1)
        torch.testing.assert_close(out[i], gain * normed[i] + bias)
    cbn1 = ConditionalBatchNorm1d(2, num_classes=3)
    with torch.no_grad():
        cbn1.gain.weight.fill_(2.0)
    torch.testing.assert_close(
        cbn1(x[:, :, 0, 0], y), 2 * F.batch_norm(x[:, :, 0, 0], None, None, training=True)
    )


def test_projected_batchnorm_is_one_plus_a_linear_gain_and_a_linear_bias():
    bn = ProjectedBatchNorm2d(2, cond_dim=3)
    with torch.no_grad():
        bn.gain.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        bn.bias.weight.copy_(torch.tensor([[0, 0, 1.0], [0, 0, 2.0]]))
    x, c = torch.randn(2, 2, 2, 2), torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    normed = F.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(
        bn(x, c)[0],
        torch.tensor([2.0, 3.0]).view(2, 1, 1) * normed[0] + torch.tensor([3.0, 6.0]).view(2, 1, 1),
    )
    torch.testing.assert_close(bn(x, c)[1], normed[1])  # c = 0: plain BN


def test_self_attention_is_the_identity_at_init_and_learns_its_gate():
    torch.manual_seed(0)
    attn = SelfAttention(16)
    x = torch.randn(2, 16, 4, 4)
    assert attn.gamma.item() == 0.0 and torch.equal(attn(x), x)
    attn(x).square().sum().backward()
    assert attn.gamma.grad is not None and attn.gamma.grad.abs() > 0  # the gate is trained
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    assert not torch.allclose(attn(x), x)
    with pytest.raises(ConfigError, match="8 channels"):
        SelfAttention(4)


@pytest.mark.parametrize("k,reference", [(0, "instance"), (1, "layer"), (2, "batch")])
def test_switchable_norm_weights_select_among_its_normalizers(k, reference):
    torch.manual_seed(0)
    sn = SwitchableNorm2d(3, eps=1e-5)
    with torch.no_grad():  # softmax of (0, 0, 0) with a 40 at index k: all weight on normalizer k
        sn.mean_weight.zero_()[k] = 40.0
        sn.var_weight.zero_()[k] = 40.0
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    expected = {
        "instance": F.instance_norm(x, eps=1e-5),
        "layer": F.group_norm(x, 1, eps=1e-5),
        "batch": F.batch_norm(x, None, None, training=True, eps=1e-5),
    }[reference]
    torch.testing.assert_close(sn(x), expected, atol=1e-4, rtol=1e-4)


def test_switchable_norm_uses_running_batch_statistics_in_eval():
    sn = SwitchableNorm2d(2, momentum=1.0)
    with torch.no_grad():
        sn.mean_weight.zero_()[2] = 40.0
        sn.var_weight.zero_()[2] = 40.0
    x = torch.randn(8, 2, 3, 3)
    sn(x)  # momentum 1: the running statistics become this batch's
    sn.eval()
    torch.testing.assert_close(sn(x), F.batch_norm(x, None, None, training=True), atol=1e-4, rtol=1e-4)


def test_pixel_norm_gives_unit_mean_square_per_pixel():
    out = PixelNorm()(torch.randn(2, 5, 3, 3) * 7)
    torch.testing.assert_close(out.square().mean(1), torch.ones(2, 3, 3))


@pytest.mark.parametrize("kind", NORMS)
def test_norm_factory_builds_every_kind(kind):
    assert make_norm(kind, 8)(torch.randn(2, 8, 4, 4)).shape == (2, 8, 4, 4)


def test_norm_factory_rejects_unknown_names_and_image_norms_on_vectors():
    with pytest.raises(ConfigError, match="unknown norm 'batchnorm'"):
        make_norm("batchnorm", 8)
    with pytest.raises(ConfigError, match="image features"):
        make_norm("instance", 8, dims=1)


def test_orthogonal_penalty_equals_the_hand_computed_value():
    net = nn.Sequential(nn.Linear(2, 2), nn.Conv2d(1, 2, (1, 2)), nn.Embedding(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # W W^T = [[5, 11], [11, 25]]
        net[1].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(2, 1, 1, 2))  # [[1, 1], [1, 2]]
    # off-diagonal squares: 2·11² + 2·1²; biases (1-D) and the class embedding are left out
    assert orthogonal_penalty(net).item() == pytest.approx(2 * 121 + 2 * 1)
    apply_spectral_norm(net)  # the raw weight is penalized, not W / sigma
    assert orthogonal_penalty(net).item() == pytest.approx(244)


def test_projection_head_adds_the_class_embeddings_inner_product():
    head = DiscriminatorHead(2, num_classes=3, conditioning="projection")
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[1.0, -1.0]]))
        head.linear.bias.fill_(0.5)
        head.embed.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    h, y = torch.tensor([[3.0, 1.0], [3.0, 1.0], [2.0, 5.0]]), torch.tensor([0, 1, 2])
    # w·h + b + <e_y, h>: (3 - 1 + .5) + 3, (2.5) + 2, (2 - 5 + .5) + 7
    torch.testing.assert_close(head(h, y), torch.tensor([5.5, 4.5, 4.5]))


def test_acgan_head_scores_unconditionally_and_classifies():
    head = DiscriminatorHead(2, num_classes=3, conditioning="acgan")
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[1.0, 2.0]]))
        head.linear.bias.zero_()
        head.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.classifier.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    h = torch.tensor([[1.0, 3.0]])
    torch.testing.assert_close(head(h, torch.tensor([2])), torch.tensor([7.0]))
    torch.testing.assert_close(head(h), torch.tensor([7.0]))  # labels are not needed for the score
    torch.testing.assert_close(head.classify(h), torch.tensor([[1.0, 3.0, 3.0]]))
    with pytest.raises(ConfigError, match="'acgan'"):
        DiscriminatorHead(2).classify(h)


def test_unconditional_head_is_linear_and_ignores_conditioning():
    head = DiscriminatorHead(3, num_classes=0, conditioning="projection")
    assert head.embed is None and head.classifier is None and head.conditioning is None
    with pytest.raises(ConfigError, match="unknown discriminator conditioning"):
        DiscriminatorHead(3, 2, conditioning="proj")


def test_input_conditioning_adds_the_label_embedding_as_constant_channels():
    cond = InputConditioning(num_classes=4, dim=3)
    x, y = torch.randn(2, 1, 5, 5), torch.tensor([3, 1])
    out = cond(x, y)
    assert out.shape == (2, 4, 5, 5) and torch.equal(out[:, :1], x)
    torch.testing.assert_close(out[:, 1:], cond.embed.weight[y].view(2, 3, 1, 1).expand(2, 3, 5, 5))
    assert cond(torch.randn(2, 6), y).shape == (2, 9)  # vectors: joined to the features


def test_minibatch_std_appends_each_groups_mean_std():
    # groups of 2: samples {0, 2} and {1, 3}; biased per-feature std, averaged over features
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0], [1.0, 1.0], [4.0, 8.0]])
    expected = torch.tensor([0.5, 1.5, 0.5, 1.5])  # {0,2}: (0.5 + 0.5)/2; {1,3}: (1 + 2)/2
    out = MinibatchStd(group_size=2)(x)
    assert out.shape == (4, 3) and torch.equal(out[:, :2], x)
    torch.testing.assert_close(out[:, 2], expected, atol=1e-4, rtol=0)
    maps = MinibatchStd(group_size=2)(x.view(4, 1, 1, 2))
    assert maps.shape == (4, 2, 1, 2)
    torch.testing.assert_close(maps[:, 1, 0, 0], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(maps[:, 1, 0, 1], expected, atol=1e-4, rtol=0)
    assert MinibatchStd(group_size=4)(torch.randn(6, 3)).shape == (6, 4)  # 6 samples: groups of gcd(6, 4)


def test_minibatch_discrimination_appends_sums_of_exp_minus_l1_distances():
    mbd = MinibatchDiscrimination(2, num_kernels=1, kernel_dim=1)
    with torch.no_grad():
        mbd.T.copy_(torch.tensor([[1.0], [0.0]]))  # M_i = h_i0
    h = torch.tensor([[0.0, 5.0], [1.0, 5.0], [3.0, 5.0]])
    e = math.exp
    expected = torch.tensor([1 + e(-1) + e(-3), e(-1) + 1 + e(-2), e(-3) + e(-2) + 1])
    out = mbd(h)
    assert out.shape == (3, 3) and torch.equal(out[:, :2], h)
    torch.testing.assert_close(out[:, 2], expected)


def test_equalized_layers_scale_their_unit_normal_weights_at_run_time():
    lin, conv = EqualizedLinear(4, 3), EqualizedConv2d(2, 3, 3, padding=1)
    x = torch.randn(5, 4)
    torch.testing.assert_close(lin(x), F.linear(x, lin.weight * math.sqrt(2 / 4), lin.bias))
    img = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(
        conv(img), F.conv2d(img, conv.weight * math.sqrt(2 / 18), conv.bias, padding=1)
    )


def test_gated_conv_multiplies_features_by_a_sigmoid_gate():
    gated = GatedConv2d(2, 3, 3, 1, 1)
    x = torch.randn(1, 2, 4, 4)
    both = gated.conv(x)
    torch.testing.assert_close(gated(x), both[:, :3] * torch.sigmoid(both[:, 3:]))


def test_maxout_takes_the_max_over_pieces():
    m = Maxout(1, 1, pieces=3)
    with torch.no_grad():
        m.linear.weight.copy_(torch.tensor([[1.0], [-1.0], [0.0]]))
        m.linear.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
    torch.testing.assert_close(m(torch.tensor([[2.0], [-3.0], [0.1]])), torch.tensor([[2.0], [3.0], [0.5]]))


@pytest.mark.parametrize("kind", ["nearest", "bilinear", "transposed", "pixel_shuffle"])
def test_upsampling_choices_double_the_size(kind):
    assert make_upsample(kind, 4, 6)(torch.randn(1, 4, 5, 5)).shape == (1, 6, 10, 10)


@pytest.mark.parametrize("kind", ["avg_pool", "strided"])
def test_downsampling_choices_halve_the_size(kind):
    assert make_downsample(kind, 4, 6)(torch.randn(1, 4, 8, 8)).shape == (1, 6, 4, 4)


def test_unknown_resampling_and_gated_transposed_convs_are_config_errors():
    with pytest.raises(ConfigError, match="unknown upsample 'deconv'"):
        make_upsample("deconv", 4, 4)
    with pytest.raises(ConfigError, match="unknown downsample"):
        make_downsample("max_pool", 4, 4)
    with pytest.raises(ConfigError, match="gated"):
        make_upsample("transposed", 4, 4, conv=GatedConv2d)


def test_spectral_norm_reaches_embeddings_only_when_asked():
    net = nn.Sequential(nn.Linear(2, 2), nn.Embedding(3, 2))
    apply_spectral_norm(net)
    assert hasattr(net[0], "parametrizations") and not hasattr(net[1], "parametrizations")
    apply_spectral_norm(net2 := nn.Sequential(nn.Embedding(3, 2)), embeddings=True)
    assert hasattr(net2[0], "parametrizations")
