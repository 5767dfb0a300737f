"""Generator-side layers: noise and dropout inside G (on or off at sampling time, the noise's decay) and
virtual batch normalization, alone, in both generators, and in the training loop with every update order."""

from __future__ import annotations

import io
import warnings
from functools import partial

import pytest
import torch
from conftest import ROOT, run_cli, tiny_args
from test_module import toy_data, trainer

from gan_lightning.errors import ConfigError
from gan_lightning.latents import Sphere, Uniform
from gan_lightning.losses import Hinge, NonSaturating, RaLSGAN, Wasserstein
from gan_lightning.module import GANModule
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from gan_lightning.nets.g_layers import (
    LayerDropout,
    LayerNoise,
    VirtualBatchNorm,
    random_at_sampling,
    set_generator_step,
)
from gan_lightning.nets.norms import make_norm

GENERATORS = {
    "dcgan": (
        partial(DCGANGenerator, (1, 28, 28), latent_dim=8, width=8),
        partial(DCGANDiscriminator, width=8),
    ),
    "mlp": (
        partial(MLPGenerator, (2,), latent_dim=4, hidden=16, depth=2),
        partial(MLPDiscriminator, hidden=16),
    ),
}


def module_with(name: str, **g_options) -> GANModule:
    make_g, make_d = GENERATORS[name]
    shape = make_g.args[0]
    return GANModule(lambda s, k: make_g(k, **g_options), make_d, data_shape=shape)


# --- noise and dropout inside G ----------------------------------------------------------------------
@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize(
    "option", [{"noise": LayerNoise}, {"dropout": LayerDropout}], ids=["noise", "dropout"]
)
def test_sampling_twice_from_one_latent_differs_only_with_the_layer_kept_on(name, option):
    (key, layer), z = next(iter(option.items())), torch.randn(4, GENERATORS[name][0].keywords["latent_dim"])
    kept_on = module_with(name, **{key: layer(at_sampling=True)})
    assert not torch.equal(kept_on.sample(z), kept_on.sample(z))
    assert random_at_sampling(kept_on.sampling_generator) is not None
    off = module_with(name, **{key: layer()})
    assert torch.equal(off.sample(z), off.sample(z))
    assert random_at_sampling(off.sampling_generator) is None
    off.generator.train()  # in training they act
    assert not torch.equal(off.generator(z), off.generator(z))


def test_noise_scale_decays_on_the_hand_computed_schedule():
    linear = LayerNoise(sigma=0.2, anneal_steps=100)
    exponential = LayerNoise(sigma=0.2, anneal_steps=100, schedule="exponential")
    constant = LayerNoise(sigma=0.2, schedule="constant")
    for step, lin, exp in [(0, 0.2, 0.2), (25, 0.15, 0.2 * 0.01**0.25), (50, 0.1, 0.02), (100, 0.0, 0.0)]:
        for layer in (linear, exponential, constant):
            layer.set_step(step)
        assert linear.current_sigma == pytest.approx(lin, abs=1e-12)
        assert exponential.current_sigma == pytest.approx(exp, abs=1e-12)
        assert constant.current_sigma == 0.2
    linear.set_step(50)  # and that is the scale actually added: x + 0.1 * N(0, I)
    x = torch.ones(3, 5)
    torch.manual_seed(0)
    out = linear.train()(x)
    torch.manual_seed(0)
    assert torch.allclose(out, x + 0.1 * torch.randn(3, 5), atol=0, rtol=0)


def test_set_generator_step_reaches_g_and_its_ema_copy_and_the_ema_update_keeps_it():
    module = module_with("mlp", noise=LayerNoise(sigma=0.1, anneal_steps=10))
    set_generator_step(module, 4)
    layers = [m for m in module.modules() if isinstance(m, LayerNoise)]
    assert len(layers) == 4 and all(int(m.step) == 4 for m in layers)  # 2 hidden layers, G and EMA
    module.generator_ema.update_parameters(module.generator)
    assert all(
        m.current_sigma == pytest.approx(0.06)
        for m in module.sampling_generator.modules()
        if isinstance(m, LayerNoise)
    )
    assert "generator.net.2.step" in module.state_dict()  # a buffer: a checkpoint carries the step


def test_layers_option_picks_hidden_layers_and_bad_indices_are_refused():
    g = MLPGenerator((2,), latent_dim=4, hidden=16, depth=3, dropout=LayerDropout(layers=[1]))
    assert [type(m).__name__ for m in g.net].count("LayerDropout") == 1
    assert isinstance(g.net[4], LayerDropout)  # Linear, ReLU, Linear, ReLU, then the dropout
    with pytest.raises(ConfigError, match="hidden layers 0..2"):
        MLPGenerator((2,), depth=3, noise=LayerNoise(layers=[3]))
    with pytest.raises(ConfigError, match="hidden layers 0..1"):
        DCGANGenerator((1, 28, 28), width=8, dropout=LayerDropout(layers=[0, 2]))
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\)"):
        LayerDropout(p=1.0)


def test_sample_and_evaluation_say_so_in_one_line_when_g_is_random_at_sampling():
    from gan_lightning.evaluation import GANMetrics

    module = module_with("mlp", dropout=LayerDropout(at_sampling=True), noise=LayerNoise(at_sampling=True))
    message = random_at_sampling(module.sampling_generator)
    assert "\n" not in message and "dropout (p 0.5) and noise (sigma 0.1)" in message
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GANMetrics(num_points=20)._toy2d(module, type("Data", (), {"means": torch.zeros(1, 2), "std": 0.1}))
    assert [str(w.message) for w in caught if "at sampling time" in str(w.message)] == [message]


# --- virtual batch normalization ---------------------------------------------------------------------
def test_vbn_matches_hand_computed_values_on_a_tiny_tensor():
    vbn = VirtualBatchNorm(1, reference_size=2, eps=0.0)
    x = torch.tensor([[1.0], [3.0], [5.0], [2.0]])  # reference rows 1 and 3, then samples 5 and 2
    out = vbn(x)
    # reference: mean 2, E[x^2] 5, var 1 -> (1-2)/1, (3-2)/1
    # sample 5: mean (2*2+5)/3 = 3, E[x^2] (2*5+25)/3 = 35/3, var 35/3 - 9 = 8/3
    # sample 2: mean (4+2)/3 = 2, E[x^2] (10+4)/3 = 14/3, var 14/3 - 4 = 2/3
    expected = torch.tensor([[-1.0], [1.0], [2 / (8 / 3) ** 0.5], [0.0]])
    assert torch.allclose(out, expected, atol=1e-6)


def test_vbn_on_image_features_pools_the_pixels_like_batch_norm():
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    bn = torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-5)
    assert torch.allclose(VirtualBatchNorm(3, reference_size=4)(x), bn, atol=1e-5)  # the reference by itself


@pytest.mark.parametrize("name", GENERATORS)
def test_vbn_sample_depends_only_on_the_reference_and_itself(name):
    module = module_with(name, norm="virtual")
    g = module.generator.train()
    z = torch.randn(5, g.latent_dim, generator=torch.Generator().manual_seed(0))
    others = torch.randn(5, g.latent_dim, generator=torch.Generator().manual_seed(1))
    a = g(z)
    b = g(torch.cat([z[:1], others]))
    assert torch.allclose(a[0], b[0], atol=1e-5)  # the rest of the batch changed, sample 0 did not
    assert torch.allclose(g(z[:1])[0], a[0], atol=1e-5)  # nor does batch size matter
    assert torch.allclose(g.eval()(z), a, atol=1e-5)  # no running statistics: train == eval
    g.reference.latents.mul_(2)
    assert not torch.allclose(g(z[:1])[0], a[0], atol=1e-3)  # the reference does matter


def test_vbn_reference_survives_a_checkpoint_round_trip():
    module = module_with("dcgan", norm="virtual")
    module.generator.reference.latents.normal_()  # differs from a fresh G's seeded reference
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh = module_with("dcgan", norm="virtual")
    assert not torch.equal(fresh.generator.reference.latents, module.generator.reference.latents)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh.generator.reference.latents, module.generator.reference.latents)
    z = torch.randn(3, 8)
    assert torch.equal(fresh.generator.eval()(z), module.generator.eval()(z))


def test_virtual_norm_is_a_generator_option_only():
    with pytest.raises(ConfigError, match="generator's fixed reference latents"):
        make_norm("virtual", 8)
    with pytest.raises(ConfigError, match="generator's fixed reference latents"):
        DCGANDiscriminator((1, 28, 28), width=8, norm="virtual")


# --- in the training loop -------------------------------------------------------------------------
class SetsGStep(GANModule):
    """The loop with the G-step call the module makes (``set_generator_step`` before the step)."""

    def training_step(self, batch, batch_idx):
        set_generator_step(self, self.global_step)
        super().training_step(batch, batch_idx)


@pytest.mark.parametrize(
    "order, loss, prior",
    [
        ("d_first", NonSaturating(), Sphere()),
        ("g_first", Hinge(), Uniform()),
        ("simultaneous", RaLSGAN(), Sphere()),
        ("fused", Wasserstein(), None),
    ],
    ids=["d_first", "g_first", "simultaneous", "fused"],
)
def test_every_update_order_trains_with_all_g_side_options_on(tmp_path, order, loss, prior):
    g = partial(
        MLPGenerator,
        latent_dim=4,
        hidden=16,
        depth=2,
        norm="virtual",
        noise=LayerNoise(sigma=0.1, anneal_steps=4),
        dropout=LayerDropout(layers=[1]),
    )
    module = SetsGStep(
        g, partial(MLPDiscriminator, hidden=16), loss=loss, order=order, latent=prior, data_shape=(2,)
    )
    before = [p.detach().clone() for p in module.generator.parameters()]
    trainer(tmp_path, max_steps=3).fit(module, toy_data())
    assert all(not torch.equal(a, b) for a, b in zip(before, module.generator.parameters()) if a.numel() > 1)
    sigmas = [m.current_sigma for m in module.modules() if isinstance(m, LayerNoise)]
    assert sigmas == [pytest.approx(0.1 * (1 - 2 / 4))] * 4  # set at step 2 (the last), in G and EMA alike


@pytest.mark.parametrize("fragment", ["g_noise", "g_dropout", "vbn", "latent_uniform", "latent_sphere"])
def test_each_g_side_config_fragment_trains_the_quickstart_and_samples(
    tmp_path, fragment, digits_tiny, capsys
):
    from gan_lightning.sample import load_module, sample

    config = ["--config", str(ROOT / "configs" / "tricks" / f"{fragment}.yaml")]
    run_cli(["fit", *digits_tiny, *config, *tiny_args(tmp_path, max_steps=2)])
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    sample(str(ckpt), num_samples=2, out=str(tmp_path / "s"))
    warnings_printed = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warnings_printed) == (1 if fragment == "g_dropout" else 0)  # it keeps dropout on at sampling
    if fragment == "vbn":  # the reference latents travel in the checkpoint, for G and its EMA copy
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        module = load_module(ckpt)
        assert torch.equal(
            state["generator_ema.module.reference.latents"], module.sampling_generator.reference.latents
        )


def test_a_resumed_run_with_noise_and_dropout_in_g_is_bitwise_the_same_run(tmp_path):
    """Their training draws come from the module's checkpointed RNG, not torch's global one."""
    from gan_lightning.checkpoints import read_checkpoint

    args = ["--config", str(ROOT / "configs/toy/ring.yaml"), "--data.init_args.batch_size", "32"]
    for trick in ("g_noise", "g_dropout"):
        args += ["--config", str(ROOT / f"configs/tricks/{trick}.yaml")]
    run_cli(["fit", *args, *tiny_args(tmp_path / "full", max_steps=4)])
    run_cli(["fit", *args, *tiny_args(tmp_path / "half", max_steps=2)])
    half = tmp_path / "half/lightning_logs/version_0/checkpoints/last.ckpt"
    run_cli(["fit", *args, *tiny_args(tmp_path / "resumed", max_steps=4), "--ckpt_path", str(half)])
    full, resumed = (
        read_checkpoint(tmp_path / f"{name}/lightning_logs/version_0/checkpoints/last.ckpt")["state_dict"]
        for name in ("full", "resumed")
    )
    assert all(torch.equal(v, resumed[k]) for k, v in full.items())
