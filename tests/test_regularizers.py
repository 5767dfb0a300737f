"""Regularizers: closed forms on a linear critic, RNG-faithful checks on a quadratic one, weight gradients,
lazy scaling, weight clipping, and a short WGAN-GP training run."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from gan_lightning.errors import ConfigError
from gan_lightning.losses import Wasserstein
from gan_lightning.regularizers import (
    R1,
    R2,
    DRAGANPenalty,
    DriftPenalty,
    GradientPenalty,
    Regularizer,
    WeightClipping,
    input_gradients,
)

W = [3.0, -4.0]  # ||w|| = 5
W_NORM = 5.0


def linear_critic(w: list[float] = W, bias: float = 0.7) -> nn.Linear:
    """D(x) = w.x + b: grad_x D = w everywhere."""
    d = nn.Linear(len(w), 1, dtype=torch.float64)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([w], dtype=torch.float64))
        d.bias.fill_(bias)
    return d


class HalfSquaredNorm(nn.Module):
    """D(x) = 0.5 ||x||^2 per sample: grad_x D = x, so each penalty is a known function of its points."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x.flatten(1).pow(2).sum(1)


def batch(n: int = 6, d: int = 2, seed: int = 0, shift: float = 0.0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


# --- closed forms for a linear critic -----------------------------------------------------------------

LINEAR_CLOSED_FORMS = [
    (GradientPenalty(target=1.0), (W_NORM - 1.0) ** 2),  # WGAN-GP: (||w|| - 1)^2 = 16
    (GradientPenalty(target=0.0), W_NORM**2),  # 0-GP: ||w||^2 = 25
    (GradientPenalty(target=2.5), (W_NORM - 2.5) ** 2),
    (R1(), 0.5 * W_NORM**2),  # 0.5 ||w||^2
    (R2(), 0.5 * W_NORM**2),
    (DRAGANPenalty(k=1.0), (W_NORM - 1.0) ** 2),
    (DRAGANPenalty(k=2.0, c=3.0), (W_NORM - 2.0) ** 2),
    (WeightClipping(), 0.0),
]


@pytest.mark.parametrize("reg, expected", LINEAR_CLOSED_FORMS, ids=repr)
def test_penalty_matches_closed_form_for_linear_critic(reg: Regularizer, expected: float) -> None:
    torch.manual_seed(0)
    penalty = reg.penalty(linear_critic(), batch(seed=1), batch(seed=2, shift=3.0))
    assert penalty.dim() == 0
    assert penalty.item() == pytest.approx(expected, rel=1e-12)


def test_drift_penalty_is_the_mean_squared_real_score_of_a_linear_critic() -> None:
    real = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    # scores w.x + b with w = (3, -4), b = 0.7: 3.7, -3.3, -0.3 -> mean of squares (13.69 + 10.89 + 0.09) / 3
    reg = DriftPenalty()
    assert reg.penalty(linear_critic(), real, real + 5.0).item() == pytest.approx(24.67 / 3, rel=1e-12)
    scaled = reg.scaled_penalty(linear_critic(), real, real).item()
    assert scaled == pytest.approx(0.001 * 24.67 / 3, rel=1e-12)


def test_wgan_gp_matches_closed_form_for_linear_critic_on_image_shaped_inputs() -> None:
    torch.manual_seed(0)
    w = torch.arange(12, dtype=torch.float64) / 10 - 0.5
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, dtype=torch.float64))
    with torch.no_grad():
        critic[1].weight.copy_(w[None])
    real = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    penalty = GradientPenalty().penalty(critic, real, real + 1.0)
    assert penalty.item() == pytest.approx((w.norm().item() - 1.0) ** 2, rel=1e-12)


# d/dw of each closed form above: (||w|| - t)^2 -> 2 (||w|| - t) w/||w||;  0.5 ||w||^2 -> w
LINEAR_WEIGHT_GRADIENTS = [
    (GradientPenalty(target=1.0), 2 * (W_NORM - 1.0) / W_NORM),
    (GradientPenalty(target=0.0), 2.0),
    (R1(), 1.0),
    (R2(), 1.0),
    (DRAGANPenalty(k=2.0), 2 * (W_NORM - 2.0) / W_NORM),
]


@pytest.mark.parametrize("reg, coefficient", LINEAR_WEIGHT_GRADIENTS, ids=repr)
def test_penalty_gradient_wrt_critic_weights_matches_analytic_derivative(
    reg: Regularizer, coefficient: float
) -> None:
    torch.manual_seed(0)
    critic = linear_critic()
    reg.penalty(critic, batch(seed=1), batch(seed=2, shift=3.0)).backward()
    expected = coefficient * torch.tensor([W], dtype=torch.float64)
    torch.testing.assert_close(critic.weight.grad, expected, rtol=1e-12, atol=1e-12)
    assert critic.bias.grad is None or critic.bias.grad.abs().max() == 0  # the input gradient ignores b


@pytest.mark.parametrize(
    "reg", [GradientPenalty(), GradientPenalty(target=0.0), R1(), R2(), DRAGANPenalty()], ids=repr
)
def test_penalty_weight_gradient_of_nonlinear_critic_passes_finite_difference_check(reg: Regularizer) -> None:
    """Double backward through create_graph=True, checked against finite differences in float64."""
    critic = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    names = [name for name, _ in critic.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in critic.parameters())
    real, fake = batch(4, 3, seed=1), batch(4, 3, seed=2, shift=1.0)

    def penalty_of(*values: Tensor) -> Tensor:
        torch.manual_seed(0)  # the same interpolates / perturbations on every evaluation
        functional = _Functional(critic, dict(zip(names, values, strict=True)))
        return reg.penalty(functional, real, fake)

    assert torch.autograd.gradcheck(penalty_of, params, eps=1e-6, atol=1e-7)


class _Functional(nn.Module):
    def __init__(self, module: nn.Module, params: dict[str, Tensor]) -> None:
        super().__init__()
        self.module, self.params = module, params

    def forward(self, x: Tensor) -> Tensor:
        return functional_call(self.module, self.params, (x,))


# --- where each penalty is evaluated ------------------------------------------------------------------


def test_interpolates_lie_on_the_segment_with_one_eps_per_sample() -> None:
    real, fake = batch(8, 3, seed=1), batch(8, 3, seed=2, shift=2.0)
    x_hat = GradientPenalty.interpolate(real, fake, generator=torch.Generator().manual_seed(5))
    eps = (x_hat - fake) / (real - fake)  # per element; must be constant along each row
    torch.testing.assert_close(eps, eps[:, :1].expand_as(eps), rtol=1e-10, atol=1e-12)
    assert ((eps >= 0) & (eps < 1)).all()
    assert eps[:, 0].unique().numel() == 8
    again = GradientPenalty.interpolate(real, fake, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x_hat, again)


def test_gradient_penalty_is_taken_at_interpolates_drawn_from_the_global_rng() -> None:
    real, fake = batch(8, 3, seed=1), batch(8, 3, seed=2, shift=2.0)
    torch.manual_seed(123)
    penalty = GradientPenalty(target=1.0).penalty(HalfSquaredNorm(), real, fake)
    torch.manual_seed(123)
    x_hat = GradientPenalty.interpolate(real, fake)
    # grad of 0.5||x||^2 is x: penalty = E (||x_hat|| - 1)^2
    assert penalty.item() == pytest.approx((x_hat.norm(dim=1) - 1.0).pow(2).mean().item(), rel=1e-12)


def test_r1_is_taken_at_real_and_r2_at_fake_samples() -> None:
    real, fake = batch(8, 3, seed=1), batch(8, 3, seed=2, shift=2.0)
    critic = HalfSquaredNorm()
    assert R1().penalty(critic, real, fake).item() == pytest.approx(0.5 * real.pow(2).sum(1).mean().item())
    assert R2().penalty(critic, real, fake).item() == pytest.approx(0.5 * fake.pow(2).sum(1).mean().item())


def test_dragan_perturbs_real_data_by_one_sided_uniform_noise_scaled_by_batch_std() -> None:
    real = batch(16, 3, seed=1)
    reg = DRAGANPenalty(c=0.5)
    noise = reg.perturb(real, generator=torch.Generator().manual_seed(0)) - real
    scale = 0.5 * real.std(correction=0)  # one scalar: the whole batch's (biased) std
    assert ((noise >= 0) & (noise < scale)).all()
    assert noise.max() > 0.9 * scale and noise.min() < 0.1 * scale
    assert noise.unique().numel() == noise.numel()  # element-wise, not per sample


def test_dragan_penalty_is_taken_at_perturbed_real_points_drawn_from_the_global_rng() -> None:
    real, fake = batch(8, 3, seed=1), batch(8, 3, seed=2)
    reg = DRAGANPenalty(k=1.0, c=0.5)
    torch.manual_seed(7)
    penalty = reg.penalty(HalfSquaredNorm(), real, fake)
    torch.manual_seed(7)
    x_p = reg.perturb(real)
    assert penalty.item() == pytest.approx((x_p.norm(dim=1) - 1.0).pow(2).mean().item(), rel=1e-12)


@pytest.mark.parametrize("reg", [GradientPenalty(), R1(), R2(), DRAGANPenalty()], ids=repr)
def test_penalties_send_no_gradient_to_the_generator_or_the_data(reg: Regularizer) -> None:
    torch.manual_seed(0)
    generator = nn.Linear(2, 2, dtype=torch.float64)
    real = batch(4, 2, seed=1).requires_grad_(True)
    fake = generator(batch(4, 2, seed=2))
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    reg.penalty(critic, real, fake).backward()
    assert generator.weight.grad is None and real.grad is None
    assert critic[0].weight.grad is not None and critic[0].weight.grad.abs().sum() > 0


def test_input_gradients_returns_outputs_and_flattened_input_gradients() -> None:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, dtype=torch.float64))
    x = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    out, grad = input_gradients(critic, x)
    assert out.shape == (5, 1) and grad.shape == (5, 12) and grad.requires_grad
    torch.testing.assert_close(grad, critic[1].weight.expand(5, 12))


# --- lazy regularization ------------------------------------------------------------------------------


def test_scaled_penalty_is_weight_times_every_times_penalty() -> None:
    critic, real, fake = linear_critic(), batch(seed=1), batch(seed=2)
    reg = R1(weight=2.0, every=4)
    assert reg.scaled_penalty(critic, real, fake).item() == pytest.approx(2.0 * 4 * 0.5 * W_NORM**2)
    gp = GradientPenalty(weight=10.0, target=1.0, every=3)
    assert gp.scaled_penalty(critic, real, fake).item() == pytest.approx(10.0 * 3 * (W_NORM - 1) ** 2)


def test_is_due_fires_when_d_step_is_a_multiple_of_every() -> None:
    assert [d for d in range(20) if R1(every=4).is_due(d)] == [0, 4, 8, 12, 16]
    assert all(GradientPenalty().is_due(d) for d in range(20))


@pytest.mark.parametrize("every", [1, 2, 4, 16])
def test_lazy_penalty_summed_over_steps_equals_the_non_lazy_one(every: int) -> None:
    critic, real, fake = linear_critic(), batch(seed=1), batch(seed=2)
    lazy, eager = R1(weight=2.0, every=every), R1(weight=2.0, every=1)
    n_steps = 48  # a multiple of every period

    def summed(reg: Regularizer) -> Tensor:
        critic.zero_grad()
        total = sum(reg.scaled_penalty(critic, real, fake) for d in range(n_steps) if reg.is_due(d))
        total.backward()
        return total.detach(), critic.weight.grad.clone()

    (lazy_total, lazy_grad), (eager_total, eager_grad) = summed(lazy), summed(eager)
    assert lazy_total.item() == pytest.approx(eager_total.item(), rel=1e-12)
    torch.testing.assert_close(lazy_grad, eager_grad)


@pytest.mark.parametrize(
    "make",
    [
        lambda: R1(every=0),
        lambda: GradientPenalty(every=0),
        lambda: GradientPenalty(target=-1.0),
        lambda: DRAGANPenalty(c=-0.1),
        lambda: WeightClipping(clip=0.0),
    ],
)
def test_invalid_settings_are_config_errors(make) -> None:
    with pytest.raises(ConfigError):
        make()


# --- weight clipping ----------------------------------------------------------------------------------


def test_weight_clipping_bounds_every_parameter_after_a_d_step() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        for p in mlp.parameters():
            p.mul_(100.0)
        mlp[0].bias[0] = 0.003  # already inside: untouched
    before = [p.detach().clone() for p in mlp.parameters()]
    reg = WeightClipping(clip=0.01)
    assert reg.scaled_penalty(mlp, torch.zeros(2, 4), torch.zeros(2, 4)).item() == 0.0
    reg.after_d_step(mlp)
    for p, old in zip(mlp.parameters(), before, strict=True):
        assert p.abs().max() <= 0.01
        assert torch.equal(p, old.clamp(-0.01, 0.01))
    assert mlp[0].bias[0].item() == pytest.approx(0.003)
    assert (mlp[2].weight.abs() == 0.01).float().mean() > 0.9  # most large weights sit on the bound


# --- WGAN-GP on a toy problem -------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    """Tiny tensors: a single intra-op thread is fastest and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_critic(gp_weight: float, shift: float, steps: int = 300) -> Tensor:
    """Train an MLP critic on real ~ N(0, 0.25 I) vs a fixed fake ~ N((shift, 0), 0.25 I) and return the
    gradient norms of the trained critic at fresh interpolates."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))
    loss, gp = Wasserstein(), GradientPenalty(weight=gp_weight, target=1.0)
    offset = torch.tensor([shift, 0.0])
    for _ in range(steps):
        real, fake = 0.5 * torch.randn(128, 2), 0.5 * torch.randn(128, 2) + offset
        d_loss = loss.d_loss(critic(real), critic(fake))
        if gp_weight:
            d_loss = d_loss + gp.scaled_penalty(critic, real, fake)
        opt.zero_grad()
        d_loss.backward()
        opt.step()
    real, fake = 0.5 * torch.randn(1024, 2), 0.5 * torch.randn(1024, 2) + offset
    _, grad = input_gradients(critic, GradientPenalty.interpolate(real, fake))
    return grad.norm(dim=1).detach()


def test_wgan_gp_training_drives_critic_gradient_norm_on_interpolates_to_one(one_thread) -> None:
    norms = train_critic(gp_weight=10.0, shift=2.0)
    assert abs(norms.mean().item() - 1.0) < 0.15
    # Sharper: for means a distance d apart the regularized optimum has slope 1 + d / (2 lambda), because
    # d/ds [-s d + lambda (s - 1)^2] = 0 there; here 1 + 2 / 20 = 1.1.
    assert norms.mean().item() == pytest.approx(1.1, abs=0.04)
    assert norms.std().item() < 0.15


def test_wasserstein_critic_without_penalty_has_gradient_norm_far_from_one(one_thread) -> None:
    norms = train_critic(gp_weight=0.0, shift=2.0)
    assert norms.mean().item() > 10.0


# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "class_path, init_args",
    [
        ("R1", {"weight": 5.0, "every": 16}),
        ("R2", {"weight": 0.5}),
        ("GradientPenalty", {"weight": 10.0, "target": 0.0, "every": 2}),
        ("DRAGANPenalty", {"weight": 10.0, "k": 1.0, "c": 0.25}),
        ("WeightClipping", {"clip": 0.02}),
    ],
)
def test_every_regularizer_is_built_from_a_class_path_by_jsonargparse(
    class_path: str, init_args: dict
) -> None:
    from jsonargparse import ArgumentParser

    from gan_lightning import regularizers

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--reg", type=Regularizer)
    spec = {"class_path": f"gan_lightning.regularizers.{class_path}", "init_args": init_args}
    cfg = parser.instantiate_classes(parser.parse_args(["--reg", json.dumps(spec)]))
    assert type(cfg.reg) is getattr(regularizers, class_path)
    for key, value in init_args.items():
        assert getattr(cfg.reg, key) == value
