"""G-side objectives: feature matching, historical averaging, the unrolled G loss (hand-computed values,
a finite-difference check, D untouched by the look-ahead), and each one switched on from a config."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import DIGITS_TINY, ROOT, run_cli, run_cli_subprocess, tiny_args
from torch import nn

from gan_lightning import nets
from gan_lightning.checkpoints import read_checkpoint
from gan_lightning.errors import ConfigError
from gan_lightning.losses import NonSaturating
from gan_lightning.tricks.g_objectives import FeatureMatching, HistoricalAveraging, UnrolledD, _LookAhead


class ToyD(nn.Module):
    """features: x -> [x, 2x] (a fixed linear map); head: their sum."""

    def __init__(self) -> None:
        super().__init__()
        self.lift = nn.Linear(1, 2, bias=False)
        self.head = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.lift.weight.copy_(torch.tensor([[1.0], [2.0]]))
            self.head.weight.fill_(1.0)

    def features(self, x, y=None):
        return self.lift(x)

    def forward(self, x, y=None):
        return self.head(self.features(x)).squeeze(1)


def test_feature_matching_is_the_squared_distance_of_mean_features():
    d = ToyD()
    real = torch.tensor([[1.0], [3.0]])  # features (1,2), (3,6): mean (2, 4)
    fake = torch.tensor([[0.0], [1.0]], requires_grad=True)  # (0,0), (1,2): mean (0.5, 1)
    fm = FeatureMatching(weight=2.0)
    distance = fm.distance(d, real, fake, None, None)
    assert distance.item() == pytest.approx(1.5**2 + 3.0**2)  # 11.25
    assert fm.combine(torch.tensor(0.7), distance).item() == pytest.approx(0.7 + 2 * 11.25)
    replaced = FeatureMatching(weight=2.0, replace_adversarial=True).combine(torch.tensor(0.7), distance)
    assert replaced.item() == pytest.approx(22.5)
    distance.backward()  # d/dfake_i = -2 (m_r - m_f) . (1, 2) / 2 = -(1.5 + 6) = -7.5
    assert torch.allclose(fake.grad, torch.full((2, 1), -7.5))


def test_feature_matching_at_a_named_layer_and_bad_names():
    d = ToyD()
    fm = FeatureMatching(layer="head")  # the scores themselves: x + 2x = 3x
    real, fake = torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]])
    assert fm.distance(d, real, fake, None, None).item() == pytest.approx((6.0 - 1.5) ** 2)
    with pytest.raises(ConfigError, match="not a layer"):
        FeatureMatching(layer="body.9").check(d)
    with pytest.raises(ConfigError, match="D.features"):
        FeatureMatching().check(nn.Linear(1, 1))


def test_historical_average_is_the_mean_of_strictly_past_weights():
    g, d = nn.Linear(2, 1), nn.Linear(2, 1)
    ha = HistoricalAveraging(weight=0.5, apply_to="d")
    ha.attach(g, d)
    assert ha.penalty("g", g) is None  # G is not averaged
    assert ha.penalty("d", d).item() == 0.0  # no history yet
    history = []
    for step in range(4):
        history.append([p.detach().clone() for p in d.parameters()])
        ha.record("d", d)
        with torch.no_grad():
            for p in d.parameters():
                p.add_(float(step + 1))
    means = [torch.stack(ps).mean(0) for ps in zip(*history)]
    for avg, mean in zip(ha.averages["d"].module.parameters(), means):
        assert torch.allclose(avg, mean)
    expected = 0.5 * sum(((p - m) ** 2).sum() for p, m in zip(d.parameters(), means))
    assert ha.penalty("d", d).item() == pytest.approx(expected.item())
    assert not any(p.requires_grad for p in ha.averages["d"].module.parameters())


def _d_call(d):
    class Wrapped(nn.Module):  # functional_call needs the module whose parameters are swapped
        def __init__(self):
            super().__init__()
            self.net = d

        def forward(self, x):
            return self.net(x).squeeze(1)

    return Wrapped()


def test_exact_unrolled_gradient_matches_finite_differences_and_differs_from_first_order():
    torch.manual_seed(0)
    g = nn.Linear(1, 1).double()
    wrapped = _d_call(nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)).double())
    z = torch.randn(8, 1, dtype=torch.float64)
    real = torch.randn(8, 1, dtype=torch.float64) + 2.0
    loss = NonSaturating()

    opt = torch.optim.Adam(wrapped.parameters(), lr=0.05, betas=(0.5, 0.999))
    for _ in range(2):  # some optimizer state to start the look-ahead from
        opt.zero_grad()
        loss.d_loss(wrapped(real), wrapped(g(z).detach())).backward()
        opt.step()

    def g_loss(exact: bool) -> torch.Tensor:
        return UnrolledD(k=3, exact=exact).g_loss(
            wrapped, opt, loss.d_loss, loss.g_loss, real, g(z), None, None
        )

    grads = {}
    for exact in (True, False):
        g.zero_grad()
        g_loss(exact).backward()
        grads[exact] = g.weight.grad.clone()
    eps = 1e-6
    with torch.no_grad():
        g.weight += eps
        up = g_loss(True).item()
        g.weight -= 2 * eps
        down = g_loss(True).item()
        g.weight += eps
    numeric = (up - down) / (2 * eps)
    assert grads[True].item() == pytest.approx(numeric, rel=1e-5)
    assert abs(grads[False].item() - numeric) > 1e-3 * abs(numeric)  # first order misses D's reaction


def test_the_look_ahead_never_changes_d_parameters_or_buffers():
    d = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    wrapped = _d_call(d)
    before = {k: v.clone() for k, v in wrapped.state_dict().items()}
    fake = torch.randn(16, 2, requires_grad=True)
    loss = NonSaturating()
    opt = torch.optim.Adam(d.parameters())
    opt_before = copy.deepcopy(opt.state_dict())
    UnrolledD(k=5).g_loss(
        wrapped, opt, loss.d_loss, loss.g_loss, torch.randn(16, 2), fake, None, None
    ).backward()
    assert all(torch.equal(before[k], v) for k, v in wrapped.state_dict().items())
    assert all(p.grad is None for p in d.parameters())  # G's loss gives D no gradient
    assert opt.state_dict() == opt_before  # nor its optimizer any state
    assert fake.grad is not None and fake.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kind,extra",
    [
        (torch.optim.Adam, {}),
        (torch.optim.AdamW, {}),
        (torch.optim.SGD, {}),
        (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ],
)
def test_the_look_ahead_update_is_d_optimizers_own(kind, extra):
    """Three look-ahead updates equal three steps of a copy of D's optimizer (its state carried on)."""
    d = nn.Linear(3, 1)
    opt = kind(d.parameters(), lr=0.1, weight_decay=0.01, **extra)
    x = torch.randn(8, 3)
    for _ in range(2):
        opt.zero_grad()
        d(x).pow(2).mean().backward()
        opt.step()
    twin = copy.deepcopy(d)
    twin_opt = kind(twin.parameters(), lr=0.1, weight_decay=0.01, **extra)
    twin_opt.load_state_dict(opt.state_dict())
    step = _LookAhead(d, opt, "d", None)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in d.named_parameters()}
    for _ in range(3):
        out = torch.func.functional_call(d, params, (x,))
        grads = torch.autograd.grad(out.pow(2).mean(), list(params.values()), create_graph=True)
        params = step(params, grads)
        twin_opt.zero_grad()
        twin(x).pow(2).mean().backward()
        twin_opt.step()
    for name, p in twin.named_parameters():
        assert torch.allclose(params[name], p, atol=1e-6), name


def test_unrolled_needs_a_separate_g_step():
    res = run_cli_subprocess(
        [
            "fit",
            "--config",
            str(ROOT / "configs/toy/ring.yaml"),
            "--config",
            str(ROOT / "configs/tricks/unrolled.yaml"),
            "--model.order",
            "simultaneous",
            *tiny_args(ROOT / "never", max_steps=1),
        ]
    )
    assert res.returncode == 2 and "order d_first or g_first" in res.stderr


RING = ["--config", str(ROOT / "configs/toy/ring.yaml"), "--data.init_args.batch_size", "32"]


@pytest.mark.parametrize(
    "trick,order",
    [
        ("feature_matching", "d_first"),
        ("feature_matching", "simultaneous"),
        ("feature_matching", "fused"),
        ("historical_averaging", "d_first"),
        ("historical_averaging", "simultaneous"),
        ("historical_averaging", "fused"),
        ("unrolled", "d_first"),
        ("unrolled", "g_first"),
    ],
)
def test_each_g_objective_trains_from_its_config_and_changes_the_run(tmp_path, trick, order):
    def run(root, extra):
        run_cli(["fit", *RING, *tiny_args(root, max_steps=3), "--model.order", order, *extra])
        return read_checkpoint(root / "lightning_logs/version_0/checkpoints/last.ckpt")

    plain = run(tmp_path / "plain", [])
    on = run(tmp_path / "on", ["--config", str(ROOT / f"configs/tricks/{trick}.yaml")])
    g_keys = [k for k in plain["state_dict"] if k.startswith("generator.")]
    assert any(not torch.equal(plain["state_dict"][k], on["state_dict"][k]) for k in g_keys)
    if trick == "historical_averaging":
        n = on["state_dict"]["historical_averaging.averages.d.n_averaged"]
        assert int(n) == int(on["state_dict"]["d_steps_done"])  # one record per D step, checkpointed
        assert int(on["state_dict"]["historical_averaging.averages.g.n_averaged"]) == 3


def test_historical_averaging_resumes_bitwise(tmp_path):
    args = [*RING, "--config", str(ROOT / "configs/tricks/historical_averaging.yaml")]
    run_cli(["fit", *args, *tiny_args(tmp_path / "full", max_steps=4)])
    run_cli(["fit", *args, *tiny_args(tmp_path / "half", max_steps=2)])
    half = tmp_path / "half/lightning_logs/version_0/checkpoints/last.ckpt"
    run_cli(["fit", *args, *tiny_args(tmp_path / "resumed", max_steps=4), "--ckpt_path", str(half)])
    full = read_checkpoint(tmp_path / "full/lightning_logs/version_0/checkpoints/last.ckpt")["state_dict"]
    resumed = read_checkpoint(tmp_path / "resumed/lightning_logs/version_0/checkpoints/last.ckpt")[
        "state_dict"
    ]
    assert all(torch.equal(v, resumed[k]) for k, v in full.items())


def test_all_three_compose_on_a_conditional_image_gan_with_a_batchnorm_d(tmp_path):
    """Labels reach D in the look-ahead and the feature pass; D's BN statistics are not moved by it."""
    cfg = [*DIGITS_TINY, "--config", str(ROOT / "configs/experiment/conditional_digits.yaml")]
    cfg += ["--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8"]
    for trick in ("feature_matching", "historical_averaging", "unrolled"):
        cfg += ["--config", str(ROOT / f"configs/tricks/{trick}.yaml")]
    run_cli(["fit", *cfg, *tiny_args(tmp_path, max_steps=2), "--model.unrolled.init_args.k", "2"])
    ckpt = read_checkpoint(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt")
    assert (
        ckpt["global_step"] == 2
        and int(ckpt["state_dict"]["historical_averaging.averages.g.n_averaged"]) == 2
    )


@pytest.mark.parametrize("name", [n for n in nets.__all__ if n.endswith("Discriminator")])
def test_every_discriminator_keeps_the_features_contract_feature_matching_reads(name):
    """D(x) = head(features(x)): every network gives the features feature matching matches, and a
    new D class added to gan_lightning.nets is checked here automatically."""
    cls = getattr(nets, name)
    shape = (2,) if name.startswith("MLP") else (3, 32, 32)
    extra = {"discriminator": nets.DCGANDiscriminator} if name.startswith("MultiScale") else {}
    d = cls(shape, 0, **extra).eval()
    x = torch.randn(4, *shape)
    FeatureMatching().check(d)
    h = d.features(x)
    assert h.shape[0] == 4 and torch.allclose(d.head(h), d(x))
    assert FeatureMatching().distance(d, x, x + 1, None, None).item() > 0


def test_orthogonal_regularization_enters_g_loss_with_its_beta(tmp_path):
    """BigGAN's beta * orthogonal_penalty(G) is added to G's loss (logged as loss/G/orthogonal) and
    changes G's training; D is untouched by it."""

    def run(root, extra):
        run_cli(["fit", *RING, *tiny_args(root, max_steps=2), *extra])
        return read_checkpoint(root / "lightning_logs/version_0/checkpoints/last.ckpt")["state_dict"]

    plain = run(tmp_path / "plain", [])
    ortho = run(tmp_path / "ortho", ["--model.g_orthogonal_reg", "0.1"])
    g_keys = [k for k in plain if k.startswith("generator.")]
    assert any(not torch.equal(plain[k], ortho[k]) for k in g_keys)
    from gan_lightning.module import GANModule

    module = GANModule(
        lambda s, k: nets.MLPGenerator(s, k),
        lambda s, k: nets.MLPDiscriminator(s, k),
        data_shape=(2,),
        g_orthogonal_reg=0.5,
    )
    base = torch.tensor(1.0)
    module.log = lambda *a, **k: None
    expected = 1.0 + 0.5 * nets.orthogonal_penalty(module.generator)
    assert torch.allclose(module._weight_penalties(base, "g"), expected)
    assert module._weight_penalties(base, "d") is base


def test_orthogonal_penalty_equals_the_hand_computed_value():
    """sum_W ||W W^T * (1 - I)||_F^2: W = [[1, 2], [3, 4]] has W W^T = [[5, 11], [11, 25]] -> 2 * 11^2;
    a conv's filters are flattened; biases and class embeddings are left out (BigGAN's blacklist)."""
    net = nn.Sequential(nn.Linear(2, 2), nn.Conv2d(1, 2, 1), nn.Embedding(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net[1].weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))  # filters 1 and -2: product -2
        net[2].weight.fill_(5.0)
    assert nets.orthogonal_penalty(net).item() == pytest.approx(2 * 11**2 + 2 * 2**2)
