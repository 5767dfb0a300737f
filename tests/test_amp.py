"""Mixed precision with manual optimization: bf16 runs (every penalty resumes bitwise, every update order
trains), and fp16's GradScaler on CPU through Lightning's public MixedPrecision plugin (Lightning turns
``precision="16-mixed"`` on CPU into bf16, so the plugin is built with ``device="cpu"`` by hand): steps
with inf gradients skipped and counted, penalties from unscaled input gradients, NaN losses still
reported."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from conftest import ROOT, run_cli, tiny_args
from lightning.pytorch.plugins import MixedPrecision
from test_module import Exploding, toy_data, toy_module, trainer
from torch import Tensor, nn

from gan_lightning.checkpoints import read_checkpoint
from gan_lightning.errors import TrainingDivergedError
from gan_lightning.module import GANModule
from gan_lightning.precision import grad_scaler, rescale_gradients, unscaled_grad
from gan_lightning.regularizers import R1, R2, DRAGANPenalty, GradientPenalty, Regularizer

RING = ["--config", str(ROOT / "configs/toy/ring.yaml"), "--data.init_args.batch_size", "32"]
BF16 = ["--config", str(ROOT / "configs/trainer/bf16.yaml")]
PENALTIES = {
    "gp1": "configs/regularizer/gp1.yaml",
    "gp0": "configs/regularizer/gp0.yaml",
    "r1": "configs/regularizer/r1.yaml",
    "r2": "configs/regularizer/r2.yaml",
    "dragan": "configs/loss/dragan.yaml",
}
ORDERS = ["d_first", "g_first", "simultaneous", "fused"]


def fp16_plugin(init_scale: float = 2.0**16) -> MixedPrecision:
    """Lightning's own 16-mixed plugin (autocast to float16, a GradScaler) on the CPU."""
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=init_scale))


def last_state(root) -> dict[str, Tensor]:
    return read_checkpoint(root / "lightning_logs/version_0/checkpoints/last.ckpt")["state_dict"]


@pytest.mark.parametrize("penalty", PENALTIES)
def test_bf16_run_with_each_penalty_resumes_bitwise(tmp_path, penalty):
    args = [*RING, *BF16, "--config", str(ROOT / PENALTIES[penalty])]
    run_cli(["fit", *args, *tiny_args(tmp_path / "full", max_steps=4)])
    run_cli(["fit", *args, *tiny_args(tmp_path / "half", max_steps=2)])
    half = tmp_path / "half/lightning_logs/version_0/checkpoints/last.ckpt"
    run_cli(["fit", *args, *tiny_args(tmp_path / "resumed", max_steps=4), "--ckpt_path", str(half)])
    full, resumed = last_state(tmp_path / "full"), last_state(tmp_path / "resumed")
    assert full.keys() == resumed.keys()
    assert all(torch.equal(v, resumed[k]) for k, v in full.items())
    assert int(full["d_steps_done"]) == 4 and int(full["d_steps_skipped"]) == 0  # bf16: no scaler
    assert "precision: bf16-mixed" in (tmp_path / "full/lightning_logs/version_0/config.yaml").read_text()


def test_fp16_run_with_a_penalty_resumes_bitwise_with_its_scaler_state(tmp_path):
    """The GradScaler's scale and growth tracker are checkpointed by Lightning, the skip counts by us."""
    plugin = {"class_path": "lightning.pytorch.plugins.MixedPrecision"}
    plugin["init_args"] = {"precision": "16-mixed", "device": "cpu"}
    args = [*RING, "--trainer.plugins", json.dumps([plugin]), "--config", str(ROOT / PENALTIES["gp1"])]
    run_cli(["fit", *args, *tiny_args(tmp_path / "full", max_steps=4)])
    run_cli(["fit", *args, *tiny_args(tmp_path / "half", max_steps=2)])
    half = tmp_path / "half/lightning_logs/version_0/checkpoints/last.ckpt"
    run_cli(["fit", *args, *tiny_args(tmp_path / "resumed", max_steps=4), "--ckpt_path", str(half)])
    full, resumed = (
        read_checkpoint(tmp_path / f"{run}/lightning_logs/version_0/checkpoints/last.ckpt")
        for run in ("full", "resumed")
    )
    assert all(torch.equal(v, resumed["state_dict"][k]) for k, v in full["state_dict"].items())
    assert full["MixedPrecision"] == resumed["MixedPrecision"]
    skipped = int(full["state_dict"]["d_steps_skipped"]) + int(full["state_dict"]["g_steps_skipped"])
    assert skipped > 0 and full["MixedPrecision"]["scale"] == 2.0**16 / 2**skipped  # 2^16 overflows fp16


def test_16_mixed_on_cpu_is_turned_into_bf16_by_lightning():
    """Why the fp16 tests build the plugin themselves (pinned: a Lightning that allows it fails here)."""
    with pytest.warns(UserWarning, match="not supported on CPU"):
        t = L.Trainer(accelerator="cpu", precision="16-mixed", logger=False)
    assert t.precision_plugin.precision == "bf16-mixed" and grad_scaler(t) is None


class DtypeSpy(GANModule):
    """Records the dtype of every D output (autocast on) and of D's weights (kept in fp32)."""

    def on_fit_start(self) -> None:
        self.d_dtypes: set = set()
        self.discriminator.register_forward_hook(lambda m, i, out: self.d_dtypes.add(out.dtype))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("precision", ["bf16", "fp16 with a scaler"])
def test_every_update_order_trains_under_mixed_precision_with_a_penalty(tmp_path, order, precision):
    module = toy_module(DtypeSpy, order=order, regularizers=[GradientPenalty(weight=10.0)])
    amp = {"precision": "bf16-mixed"} if precision == "bf16" else {"plugins": [fp16_plugin()]}
    t = trainer(tmp_path, max_steps=3, **amp)
    t.fit(module, toy_data())
    assert t.global_step == 3 and int(module.d_steps_done) == 3
    assert module.d_dtypes == {torch.bfloat16 if precision == "bf16" else torch.float16}
    assert all(p.dtype == torch.float32 and p.isfinite().all() for p in module.parameters())
    skipped = int(module.g_steps_skipped) + int(module.d_steps_skipped)
    if precision == "bf16":
        assert skipped == 0
    else:  # every skip halved the scale once (no growth within 2000 clean steps), and each was counted
        assert grad_scaler(t).get_scale() == 2.0**16 / 2**skipped


class InfGradientOnce(GANModule):
    """Puts an inf into one D gradient after the first D backward; records D before and after that step."""

    def on_fit_start(self) -> None:
        self.before: list[Tensor] | None = None
        self.after: list[Tensor] | None = None

    def on_after_backward(self) -> None:
        p = next(self.discriminator.parameters())
        if self.before is None and p.grad is not None:
            self.before = [q.detach().clone() for q in self.discriminator.parameters()]
            p.grad.view(-1)[0] = float("inf")

    def _finish_d_step(self, d_opt, real_out, fake_out) -> None:
        super()._finish_d_step(d_opt, real_out, fake_out)
        if self.after is None:
            self.after = [q.detach().clone() for q in self.discriminator.parameters()]


def test_scaler_skips_a_step_with_an_inf_gradient_and_counts_it(tmp_path):
    module = toy_module(InfGradientOnce)
    t = trainer(tmp_path, max_steps=3, plugins=[fp16_plugin(init_scale=1024.0)])
    t.fit(module, toy_data())
    assert all(torch.equal(a, b) for a, b in zip(module.before, module.after))  # D untouched by that step
    assert int(module.d_steps_skipped) == 1 and int(module.g_steps_skipped) == 0
    assert grad_scaler(t).get_scale() == 512.0  # halved once
    d_opt = module.optimizers()[1].optimizer
    assert d_opt.state[next(iter(module.discriminator.parameters()))]["step"] == 2  # 3 D steps, 1 skipped
    assert t.global_step == 3 and int(module.d_steps_done) == 3


class InfPenaltyOnce(Regularizer):
    """A penalty that is inf on the first D step (as an fp16 overflow of scaled input gradients is)."""

    def penalty(
        self, discriminator: nn.Module, real: Tensor, fake: Tensor, generator=None, scaler=None
    ) -> Tensor:
        self.calls = getattr(self, "calls", 0) + 1
        return (discriminator(real).pow(2).mean() + 1.0) * (float("inf") if self.calls == 1 else 0.0)


def test_inf_penalty_under_a_scaler_is_a_skipped_step_not_divergence(tmp_path):
    module = toy_module(regularizers=[InfPenaltyOnce()])
    trainer(tmp_path, max_steps=2, plugins=[fp16_plugin(init_scale=1024.0)]).fit(module, toy_data())
    assert int(module.d_steps_skipped) == 1 and int(module.d_steps_done) == 2
    with pytest.raises(TrainingDivergedError, match="D loss became inf"):  # fp32: no scaler to blame
        trainer(tmp_path, max_steps=2).fit(toy_module(regularizers=[InfPenaltyOnce()]), toy_data())


def test_nan_loss_under_16_mixed_is_still_reported_as_divergence(tmp_path):
    with pytest.raises(TrainingDivergedError, match="D loss became nan at generator step 0"):
        trainer(tmp_path, max_steps=2, plugins=[fp16_plugin()]).fit(toy_module(loss=Exploding()), toy_data())


def tiny_d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))


@pytest.mark.parametrize(
    "reg",
    [GradientPenalty(target=1.0), GradientPenalty(target=0.0), R1(), R2(), DRAGANPenalty()],
    ids=repr,
)
def test_penalty_with_a_scaler_equals_the_penalty_from_unscaled_gradients(reg):
    real, fake = torch.randn(6, 2, generator=torch.Generator().manual_seed(1)), torch.zeros(6, 2)
    d = tiny_d()

    def penalty_and_weight_grads(scaler, autocast: bool):
        with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
            value = reg.penalty(d, real, fake, torch.Generator().manual_seed(2), scaler)
        grads = torch.autograd.grad(value, list(d.parameters())[:3])  # the last bias: no input gradient
        return value.float(), grads

    # fp32: scaling by 2^16 and back is exact
    plain, plain_grads = penalty_and_weight_grads(None, autocast=False)
    scaled, scaled_grads = penalty_and_weight_grads(torch.amp.GradScaler("cpu", init_scale=2.0**16), False)
    assert torch.equal(plain, scaled) and all(torch.equal(a, b) for a, b in zip(plain_grads, scaled_grads))
    # fp16 autocast at a loss scale of 2^10: the fp32 value within fp16's precision, not 2^10 times it
    # (at 2^16 the scaled output's gradient, 65536, is already past fp16's 65504: the scaler skips)
    half, _ = penalty_and_weight_grads(torch.amp.GradScaler("cpu", init_scale=2.0**10), True)
    assert half.item() == pytest.approx(plain.item(), rel=1e-2)


def test_unscaled_grad_of_a_linear_critic_is_w_by_hand():
    """D(x) = 3 x1 - 4 x2: dD/dx = (3, -4), whatever the loss scale; the GP is (5 - 1)^2 = 16."""
    d = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[3.0, -4.0]]))
    x = torch.ones(4, 2, requires_grad=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=4096.0)
    grad = unscaled_grad(d(x).sum(), x, scaler, create_graph=True)
    assert torch.equal(grad, torch.tensor([[3.0, -4.0]]).expand(4, 2))
    assert GradientPenalty(target=1.0).penalty(d, x, x, scaler=scaler).item() == 16.0


def test_gradients_made_at_one_scale_are_brought_to_the_scalers_new_scale():
    """The simultaneous and fused orders: D's step halved the scale before G's gradients are unscaled."""
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([1024.0, float("inf")])  # made at scale 1024
    opt = torch.optim.SGD([p], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    scaler.scale(torch.ones(()))  # the scale is set lazily on first use
    rescale_gradients(opt, scaler, grads_scale=1024.0)
    assert p.grad[0].item() == 512.0 and p.grad[1].isinf()  # unscales to 1; an inf stays inf


def test_a_checkpoint_saved_before_skip_counting_loads_with_zero_counts():
    state = toy_module().state_dict()
    del state["g_steps_skipped"], state["d_steps_skipped"]
    ckpt = {"state_dict": state, "gan_lightning_format": 2}
    module = toy_module()
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"])  # strict
    assert int(module.g_steps_skipped) == int(module.d_steps_skipped) == 0
