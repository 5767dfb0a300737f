"""Loss families: values and gradients against formulas written out independently here, in plain Python.

Scores are chosen away from every hinge kink, so the piecewise-linear losses have one derivative.
"""

from __future__ import annotations

import math

import pytest
import torch

from gan_lightning.errors import ConfigError
from gan_lightning.losses import (
    RSGAN,
    GANLoss,
    Hinge,
    LeastSquares,
    Minimax,
    NonSaturating,
    RaGAN,
    RaHinge,
    RaLSGAN,
    Wasserstein,
)

REAL = [1.5, -2.0, 0.25]
FAKE = [0.5, 3.0, -1.5]
N = len(REAL)


def softplus(u: float) -> float:
    return math.log1p(math.exp(u))


def sigmoid(u: float) -> float:
    return 1.0 / (1.0 + math.exp(-u))


def relu(u: float) -> float:
    assert u != 0.0, "test scores must avoid the hinge kink"
    return max(u, 0.0)


def step(u: float) -> float:  # relu'
    return 1.0 if u > 0 else 0.0


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def torch_eval(fn, real: list[float], fake: list[float]):
    """Value of fn(real_out, fake_out) and its autograd gradients w.r.t. both score tensors."""
    r = torch.tensor(real, dtype=torch.float64, requires_grad=True)
    f = torch.tensor(fake, dtype=torch.float64, requires_grad=True)
    value = fn(r, f)
    assert value.dim() == 0
    value.backward()
    grads = [torch.zeros_like(t) if t.grad is None else t.grad for t in (r, f)]  # None: not read
    return value.item(), grads[0].tolist(), grads[1].tolist()


def assert_close(actual, expected, tol: float = 1e-12) -> None:
    assert actual == pytest.approx(expected, abs=tol, rel=tol)


# --- independent references: (value, d/dreal, d/dfake) for D and for G -------------------------------


def separable(phi_r, dphi_r, phi_f, dphi_f, real, fake):
    """loss = E phi_r(r) + E phi_f(f): gradient phi'(.)/N element-wise."""
    n_r, n_f = len(real), len(fake)
    value = mean([phi_r(r) for r in real]) + mean([phi_f(f) for f in fake])
    return value, [dphi_r(r) / n_r for r in real], [dphi_f(f) / n_f for f in fake]


def relativistic_average(phi, dphi, psi, dpsi, hi, lo):
    """loss = E_i phi(hi_i - E lo) + E_j psi(lo_j - E hi), differentiated by hand (through both means):

    dL/dhi_k = phi'(u_k)/N - E_j psi'(v_j)/N,   dL/dlo_k = psi'(v_k)/N - E_i phi'(u_i)/N,
    with u_i = hi_i - E lo and v_j = lo_j - E hi.
    """
    n = len(hi)
    u = [h - mean(lo) for h in hi]
    v = [w - mean(hi) for w in lo]
    value = mean([phi(x) for x in u]) + mean([psi(x) for x in v])
    d_hi = [dphi(x) / n - mean([dpsi(y) for y in v]) / n for x in u]
    d_lo = [dpsi(y) / n - mean([dphi(x) for x in u]) / n for y in v]
    return value, d_hi, d_lo


def ref_bce(real, fake):
    # -log sigmoid(r) - log(1 - sigmoid(f))
    return separable(
        lambda r: -math.log(sigmoid(r)),
        lambda r: -(1 - sigmoid(r)),
        lambda f: -math.log(1 - sigmoid(f)),
        sigmoid,
        real,
        fake,
    )


D_REFERENCES = {
    "NonSaturating": (NonSaturating(), ref_bce),
    "Minimax": (Minimax(), ref_bce),
    "Hinge": (
        Hinge(),
        lambda r_, f_: separable(
            lambda r: relu(1 - r),
            lambda r: -step(1 - r),
            lambda f: relu(1 + f),
            lambda f: step(1 + f),
            r_,
            f_,
        ),
    ),
    "Wasserstein": (
        Wasserstein(),
        lambda r_, f_: separable(lambda r: -r, lambda r: -1.0, lambda f: f, lambda f: 1.0, r_, f_),
    ),
    "LeastSquares(-1,1,0)": (
        LeastSquares(a=-1.0, b=1.0, c=0.0),
        lambda r_, f_: separable(
            lambda r: 0.5 * (r - 1) ** 2,
            lambda r: r - 1,
            lambda f: 0.5 * (f + 1) ** 2,
            lambda f: f + 1,
            r_,
            f_,
        ),
    ),
    "RaGAN": (
        RaGAN(),
        lambda r_, f_: relativistic_average(
            lambda u: -math.log(sigmoid(u)),
            lambda u: sigmoid(u) - 1,
            lambda v: -math.log(1 - sigmoid(v)),
            sigmoid,
            r_,
            f_,
        ),
    ),
    "RaLSGAN": (
        RaLSGAN(),
        lambda r_, f_: relativistic_average(
            lambda u: (u - 1) ** 2,
            lambda u: 2 * (u - 1),
            lambda v: (v + 1) ** 2,
            lambda v: 2 * (v + 1),
            r_,
            f_,
        ),
    ),
    "RaHinge": (
        RaHinge(),
        lambda r_, f_: relativistic_average(
            lambda u: relu(1 - u),
            lambda u: -step(1 - u),
            lambda v: relu(1 + v),
            lambda v: step(1 + v),
            r_,
            f_,
        ),
    ),
}


def ref_rsgan(hi, lo):
    """E softplus(-(hi_i - lo_i)): d/dhi_i = -sigmoid(-(hi_i - lo_i))/N = -d/dlo_i."""
    n = len(hi)
    value = mean([softplus(-(h - w)) for h, w in zip(hi, lo, strict=True)])
    d_hi = [-sigmoid(-(h - w)) / n for h, w in zip(hi, lo, strict=True)]
    return value, d_hi, [-g for g in d_hi]


D_REFERENCES["RSGAN"] = (RSGAN(), ref_rsgan)


def swap(ref):
    """G's reference for a relativistic family: the D reference with real and fake swapped."""

    def g_ref(real, fake):
        value, d_fake, d_real = ref(fake, real)
        return value, d_real, d_fake

    return g_ref


def fake_only(phi, dphi):
    """Reference for a G loss E phi(f) that does not read the real scores (zero gradient there)."""
    return lambda real, fake: separable(lambda r: 0.0, lambda r: 0.0, phi, dphi, real, fake)


G_REFERENCES = {
    "NonSaturating": (NonSaturating(), fake_only(lambda f: softplus(-f), lambda f: -sigmoid(-f))),
    "Minimax": (Minimax(), fake_only(lambda f: math.log(1 - sigmoid(f)), lambda f: -sigmoid(f))),
    "Hinge": (Hinge(), fake_only(lambda f: -f, lambda f: -1.0)),
    "Wasserstein": (Wasserstein(), fake_only(lambda f: -f, lambda f: -1.0)),
    "LeastSquares(-1,1,0)": (LeastSquares(a=-1.0, b=1.0, c=0.0), fake_only(lambda f: f**2 / 2, lambda f: f)),
    "RSGAN": (RSGAN(), swap(ref_rsgan)),
    "RaGAN": (RaGAN(), swap(D_REFERENCES["RaGAN"][1])),
    "RaLSGAN": (RaLSGAN(), swap(D_REFERENCES["RaLSGAN"][1])),
    "RaHinge": (RaHinge(), swap(D_REFERENCES["RaHinge"][1])),
}


@pytest.mark.parametrize("name", sorted(D_REFERENCES))
def test_d_loss_value_and_gradients_match_independent_formula(name: str) -> None:
    loss, ref = D_REFERENCES[name]
    value, d_real, d_fake = torch_eval(loss.d_loss, REAL, FAKE)
    exp_value, exp_d_real, exp_d_fake = ref(REAL, FAKE)
    assert_close(value, exp_value)
    assert_close(d_real, exp_d_real)
    assert_close(d_fake, exp_d_fake)


@pytest.mark.parametrize("name", sorted(G_REFERENCES))
def test_g_loss_value_and_gradients_match_independent_formula(name: str) -> None:
    loss, ref = G_REFERENCES[name]
    value, d_real, d_fake = torch_eval(lambda r, f: loss.g_loss(f, r), REAL, FAKE)
    exp_value, exp_d_real, exp_d_fake = ref(REAL, FAKE)
    assert_close(value, exp_value)
    assert_close(d_real, exp_d_real)
    assert_close(d_fake, exp_d_fake)


# --- a few values worked out with pencil and paper, for real = [1, -2], fake = [0.5, 3] ----------------


def test_wasserstein_by_hand() -> None:
    value, d_real, d_fake = torch_eval(Wasserstein().d_loss, [1.0, -2.0], [0.5, 3.0])
    assert (value, d_real, d_fake) == (2.25, [-0.5, -0.5], [0.5, 0.5])  # 1.75 - (-0.5)
    value, _, d_fake = torch_eval(lambda r, f: Wasserstein().g_loss(f, r), [1.0, -2.0], [0.5, 3.0])
    assert (value, d_fake) == (-1.75, [-0.5, -0.5])


def test_least_squares_default_zero_one_coding_by_hand() -> None:
    # D: 0.5 * (0 + 9)/2 + 0.5 * (0.25 + 9)/2 = 2.25 + 2.3125; grads (r - 1)/2 and f/2
    value, d_real, d_fake = torch_eval(LeastSquares().d_loss, [1.0, -2.0], [0.5, 3.0])
    assert (value, d_real, d_fake) == (4.5625, [0.0, -1.5], [0.25, 1.5])
    # G: 0.5 * (0.25 + 4)/2 = 1.0625; grad (f - 1)/2
    value, _, d_fake = torch_eval(lambda r, f: LeastSquares().g_loss(f, r), [1.0, -2.0], [0.5, 3.0])
    assert (value, d_fake) == (1.0625, [-0.25, 1.0])


def test_ralsgan_by_hand() -> None:
    # E f = 1.75, E r = -0.5; D = E (r - 2.75)^2 + E (f + 1.5)^2 = (3.0625 + 22.5625)/2 + (4 + 20.25)/2
    value, _, _ = torch_eval(RaLSGAN().d_loss, [1.0, -2.0], [0.5, 3.0])
    assert value == pytest.approx(12.8125 + 12.125, abs=1e-12)


def test_nonsaturating_and_minimax_share_the_discriminator_loss() -> None:
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    assert torch.equal(Minimax().d_loss(r, f), NonSaturating().d_loss(r, f))


def test_minimax_generator_gradient_saturates_when_d_rejects_fakes_but_nonsaturating_does_not() -> None:
    fake_out = torch.full((4,), -10.0, requires_grad=True)  # sigmoid(-10) ~ 4.5e-5: D is sure they're fake
    Minimax().g_loss(fake_out).backward()
    minimax_grad = fake_out.grad.clone()
    fake_out.grad = None
    NonSaturating().g_loss(fake_out).backward()
    nonsat_grad = fake_out.grad
    # per-sample gradient (times the batch size 4): -sigmoid(f) vs -sigmoid(-f)
    assert (4 * minimax_grad.abs() < 1e-4).all()
    assert (4 * nonsat_grad.abs() > 0.9999).all()
    assert torch.allclose(4 * minimax_grad, -torch.sigmoid(fake_out.detach()))


def test_minimax_generator_loss_is_the_negated_discriminator_fake_term() -> None:
    f = torch.tensor(FAKE)
    assert torch.allclose(Minimax().g_loss(f), -torch.nn.functional.softplus(f).mean())


def test_losses_are_stable_for_extreme_logits() -> None:
    big = torch.tensor([1e4, -1e4])
    for loss in [NonSaturating(), Minimax(), RSGAN(), RaGAN()]:
        assert torch.isfinite(loss.d_loss(big, -big)) and torch.isfinite(loss.g_loss(-big, big))


def test_exactly_the_relativistic_losses_declare_they_read_real_scores() -> None:
    relativistic = [RSGAN, RaGAN, RaLSGAN, RaHinge]
    assert all(cls.g_loss_uses_real for cls in relativistic)
    assert not any(cls.g_loss_uses_real for cls in [NonSaturating, Minimax, Hinge, Wasserstein, LeastSquares])


@pytest.mark.parametrize("cls", [RSGAN, RaGAN, RaLSGAN, RaHinge])
def test_relativistic_generator_loss_without_real_scores_is_an_error(cls: type[GANLoss]) -> None:
    with pytest.raises(ValueError, match="real_out"):
        cls().g_loss(torch.tensor(FAKE))


def test_relativistic_d_loss_is_unchanged_by_a_common_shift_of_scores() -> None:
    r, f = torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64)
    for loss in [RSGAN(), RaGAN(), RaLSGAN(), RaHinge()]:
        assert torch.allclose(loss.d_loss(r + 7.0, f + 7.0), loss.d_loss(r, f))
        assert torch.allclose(loss.g_loss(f - 3.0, r - 3.0), loss.g_loss(f, r))


def test_losses_accept_column_shaped_scores() -> None:
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    for loss, _ in D_REFERENCES.values():
        assert torch.allclose(loss.d_loss(r[:, None], f[:, None]), loss.d_loss(r, f))
        assert torch.allclose(loss.g_loss(f[:, None], r[:, None]), loss.g_loss(f, r))


def test_least_squares_rejects_equal_real_and_fake_targets() -> None:
    with pytest.raises(ConfigError):
        LeastSquares(a=1.0, b=1.0)


@pytest.mark.parametrize(
    "class_path, init_args",
    [
        ("NonSaturating", {}),
        ("Minimax", {}),
        ("Hinge", {}),
        ("Wasserstein", {}),
        ("LeastSquares", {"a": -1, "b": 1, "c": 0}),
        ("RSGAN", {}),
        ("RaGAN", {}),
        ("RaLSGAN", {}),
        ("RaHinge", {}),
    ],
)
def test_every_loss_is_built_from_a_class_path_by_jsonargparse(class_path: str, init_args: dict) -> None:
    import json

    from jsonargparse import ArgumentParser

    from gan_lightning import losses

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--loss", type=GANLoss)
    spec = {"class_path": f"gan_lightning.losses.{class_path}", "init_args": init_args}
    cfg = parser.instantiate_classes(parser.parse_args(["--loss", json.dumps(spec)]))
    assert type(cfg.loss) is getattr(losses, class_path)
    for key, value in init_args.items():
        assert getattr(cfg.loss, key) == value
