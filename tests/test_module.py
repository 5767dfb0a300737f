import os
from functools import partial

import lightning as L
import pytest
import torch

from gan_lightning.data import EmbeddedDigits, GaussianMixture2D
from gan_lightning.errors import TrainingDivergedError
from gan_lightning.losses import GANLoss, Hinge
from gan_lightning.module import GANModule, skip_nvml_probe_without_cuda
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from gan_lightning.schedules import DSteps, FixedDSteps


def toy_module(cls: type[GANModule] = GANModule, **kwargs) -> GANModule:
    kwargs.setdefault("generator", partial(MLPGenerator, latent_dim=2, hidden=16, depth=2))
    kwargs.setdefault("discriminator", partial(MLPDiscriminator, hidden=16, depth=2))
    return cls(data_shape=(2,), **kwargs)


def trainer(tmp_path, max_steps: int, **kwargs) -> L.Trainer:
    kwargs.setdefault("logger", False)
    return L.Trainer(
        max_steps=max_steps,
        default_root_dir=tmp_path,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        **kwargs,
    )


def toy_data(**kwargs) -> GaussianMixture2D:
    return GaussianMixture2D(kind="ring", num_samples=512, batch_size=32, **kwargs)


@pytest.mark.parametrize("k", [1, 3])
def test_global_step_counts_generator_steps_not_optimizer_steps(tmp_path, k):
    module = toy_module(schedule=FixedDSteps(k))
    t = trainer(tmp_path, max_steps=10)
    t.fit(module, toy_data())
    assert t.global_step == 10  # Lightning alone would report 10 * (k + 1)
    assert int(module.d_steps_done) == 10 * k
    g_opt, d_opt = (o.optimizer for o in module.optimizers())
    assert g_opt.state[next(iter(module.generator.parameters()))]["step"] == 10
    assert d_opt.state[next(iter(module.discriminator.parameters()))]["step"] == 10 * k


class Burst(DSteps):
    def d_steps(self, g_step: int) -> int:
        return 4 if g_step < 2 else 1


def test_variable_schedule_takes_the_scheduled_d_steps(tmp_path):
    module = toy_module(schedule=Burst())
    trainer(tmp_path, max_steps=5).fit(module, toy_data())
    assert int(module.d_steps_done) == 4 + 4 + 1 + 1 + 1


class Spy(GANModule):
    """Records which network each D and G step changed."""

    changed: list

    def _snap(self):
        return (
            [p.clone() for p in self.generator.parameters()],
            [p.clone() for p in self.discriminator.parameters()],
        )

    def _diff(self, before):
        after = self._snap()
        return tuple(not all(torch.equal(a, b) for a, b in zip(x, y)) for x, y in zip(before, after))

    def d_step(self, real, d_opt, labels=None):
        before = self._snap()
        super().d_step(real, d_opt, labels)
        self.changed.append(("D step", *self._diff(before)))

    def g_step(self, real, g_opt, labels=None):
        before = self._snap()
        super().g_step(real, g_opt, labels)
        self.changed.append(("G step", *self._diff(before)))


def test_d_step_changes_only_d_and_g_step_changes_only_g(tmp_path):
    module = toy_module(Spy, schedule=FixedDSteps(2))
    module.changed = []
    trainer(tmp_path, max_steps=3).fit(module, toy_data())
    # (step, G changed, D changed), in the D-first order: D, D, G per generator step
    assert module.changed == [("D step", False, True), ("D step", False, True), ("G step", True, False)] * 3


def test_ema_averages_generator_only_and_is_used_for_sampling(tmp_path):
    module = toy_module(ema_decay=0.9)
    trainer(tmp_path, max_steps=8).fit(module, toy_data())
    ema = module.generator_ema
    assert int(ema.n_averaged) == 8
    assert sum(p.numel() for p in ema.module.parameters()) == sum(
        p.numel() for p in module.generator.parameters()
    )
    assert module.sampling_generator is ema.module
    raw = [p for p in module.generator.parameters()]
    avg = [p for p in ema.module.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(raw, avg))  # an average, not a copy


def test_fixed_noise_is_a_buffer_saved_with_the_weights():
    module = toy_module()
    assert "fixed_noise" in module.state_dict()
    assert torch.equal(toy_module().fixed_noise, module.fixed_noise)  # same noise in every run


class Exploding(GANLoss):
    def d_loss(self, real_out, fake_out, generator=None):
        return (real_out * float("nan")).mean()

    def g_loss(self, fake_out, real_out=None):
        return -fake_out.mean()


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    with pytest.raises(TrainingDivergedError, match="D loss became nan at generator step 0.*resume"):
        trainer(tmp_path, max_steps=3).fit(toy_module(loss=Exploding()), toy_data())


def test_dcgan_module_trains_a_few_steps_on_digits_with_hinge(tmp_path):
    module = GANModule(
        generator=partial(DCGANGenerator, latent_dim=8, width=8),
        discriminator=partial(DCGANDiscriminator, width=8),
        loss=Hinge(),
        data_shape=(1, 28, 28),
    )
    trainer(tmp_path, max_steps=3).fit(module, EmbeddedDigits(image_size=28, batch_size=8))
    x = module.sample(module.fixed_noise[:4])
    assert x.shape == (4, 1, 28, 28)


def test_ema_warmup_ramps_the_decay_up_from_hand_computed_values():
    from torch.optim.swa_utils import AveragedModel

    from gan_lightning.module import ema_with_warmup

    net = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(net, multi_avg_fn=ema_with_warmup(0.999))
    for value in (0.0, 1.0, 2.0):
        net.weight.data.fill_(value)
        ema.update_parameters(net)
    # n=0: copy (0); n=1: decay min(.999, 2/11) -> 0*2/11 + 1*9/11; n=2: decay 3/12 -> that*.25 + 2*.75
    expected = (9 / 11) * 0.25 + 2 * 0.75
    assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6)
    ema_fixed = AveragedModel(net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999))
    for value in (0.0, 1.0, 2.0):
        net.weight.data.fill_(value)
        ema_fixed.update_parameters(net)
    assert ema_fixed.module.weight.item() == pytest.approx(0.001 * 0.999 + 0.002, rel=1e-4)  # stuck near 0


def test_ema_warmup_is_on_by_default_and_switchable():
    assert toy_module(ema_decay=0.9).generator_ema.multi_avg_fn.__qualname__.startswith("ema_with_warmup")
    assert not toy_module(ema_decay=0.9, ema_warmup=False).generator_ema.multi_avg_fn.__qualname__.startswith(
        "ema_with_warmup"
    )


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="checks the CPU-only machine's optimizer steps")
def test_optimizer_steps_on_a_machine_without_cuda_do_not_probe_nvml(tmp_path, monkeypatch):
    """Lightning's PYTORCH_NVML_BASED_CUDA_CHECK=1 made every Adam step probe NVML (a failing dlopen)."""
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # as `import lightning` leaves it
    probes = []
    real_probe = torch.cuda._device_count_nvml
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: probes.append(1) or real_probe())
    trainer(tmp_path, max_steps=10).fit(toy_module(), toy_data())  # 20 Adam steps
    assert len(probes) <= 3, len(probes)  # Lightning's accelerator set-up and ours; none per step
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "0"


def test_the_nvml_setting_is_left_alone_where_a_cuda_device_exists(monkeypatch):
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    skip_nvml_probe_without_cuda()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
