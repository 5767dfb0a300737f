"""torch.compile and channels_last for G and D: the compiled forwards are the ones training runs, they
train as eager does (within float tolerance), the penalties run D uncompiled (PyTorch #91469) with one
warning, and the EMA copy keeps following G."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import DIGITS_TINY, ROOT, one_error_line, run_cli, run_cli_subprocess, tiny_args
from torch._dynamo import register_backend  # documented: "Custom Backends" in torch.compiler's docs

from gan_lightning.checkpoints import read_checkpoint
from gan_lightning.module import GANModule
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator
from gan_lightning.regularizers import GradientPenalty

GRAPHS: list[int] = []


@register_backend
def counting_eager(gm, example_inputs):  # noqa: ARG001
    """A backend that runs the captured graph as is, and counts the graphs it was given."""
    GRAPHS.append(len(gm.graph.nodes))
    return gm.forward


GP = ["--config", str(ROOT / "configs/regularizer/gp1.yaml")]


def last_state(root):
    return read_checkpoint(root / "lightning_logs/version_0/checkpoints/last.ckpt")["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("order", ["d_first", "fused"])
def test_compiled_and_channels_last_training_matches_eager_with_a_penalty(tmp_path, order):
    args = [*DIGITS_TINY, *GP, "--model.order", order]
    run_cli(["fit", *args, *tiny_args(tmp_path / "eager", max_steps=3)])
    GRAPHS.clear()
    torch.compiler.reset()  # graphs cached by an earlier test would be reused without reaching the backend
    fast = ["--model.compile_generator", "true", "--model.compile_discriminator", "true"]
    fast += ["--model.compile_options", '{"backend": "counting_eager"}', "--model.channels_last", "true"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_cli(["fit", *args, *fast, *tiny_args(tmp_path / "compiled", max_steps=3)])
    assert len(GRAPHS) >= 2  # G's and D's forwards went through torch.compile
    said = [w for w in caught if "PyTorch #91469" in str(w.message)]
    assert len(said) == 1  # the penalty's D is uncompiled, said once
    eager, compiled = last_state(tmp_path / "eager"), last_state(tmp_path / "compiled")
    assert eager.keys() == compiled.keys()  # no compiled wrapper saved beside the networks
    # Adam turns a float-rounding difference in a near-zero gradient into up to one step (lr 2e-4): with one
    # thread, channels_last convs sum in another order and 1 of G's 78,400 projection weights moved 1.8e-5.
    # A quarter of a step still fails a network that stopped training through the compiled path (3 steps).
    for key, value in eager.items():
        if value.is_floating_point():
            torch.testing.assert_close(compiled[key], value, rtol=1e-4, atol=5e-5, msg=key)
    # generator_ema.* is among the keys compared: the EMA copy followed the compiled G as it follows eager G
    assert any(k.startswith("generator_ema.") for k in eager)


def test_channels_last_puts_g_its_ema_copy_and_d_in_channels_last_and_the_penalty_uses_eager_d():
    module = GANModule(
        lambda s, k: DCGANGenerator(s, k, width=8),
        lambda s, k: DCGANDiscriminator(s, k, width=8),
        data_shape=(1, 28, 28),
        channels_last=True,
        compile_discriminator=True,
        regularizers=[GradientPenalty()],
    )
    for net in (module.generator, module.sampling_generator, module.discriminator):
        convs = [p for p in net.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert module.d_path.compiled is not None and module.d_path.compiled is not module.discriminator
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(module.d_path.scorer(None)(x), module.discriminator(x))  # eager: no compile
    assert "d" in module._compiled and not any("_orig_mod" in k for k in module.state_dict())


@pytest.mark.slow
def test_inductor_compiles_g_and_d_on_the_cpu(tmp_path):
    """The default backend, as a user gets it (needs a C++ compiler, as inductor on CPU does)."""
    fast = ["--model.compile_generator", "true", "--model.compile_discriminator", "true"]
    run_cli(["fit", *DIGITS_TINY, *fast, *tiny_args(tmp_path, max_steps=2)])
    assert read_checkpoint(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt")["global_step"] == 2


@pytest.mark.slow
def test_channels_last_on_2d_data_is_one_error_line(tmp_path):
    res = run_cli_subprocess(
        [
            "fit",
            "--config",
            str(ROOT / "configs/toy/ring.yaml"),
            *tiny_args(tmp_path),
            "--model.channels_last",
            "true",
        ]
    )
    assert "model.channels_last is for image data" in one_error_line(res)


def test_a_spectral_norm_network_stays_uncompiled_with_one_warning():
    """SN's in-place power iteration breaks the compiled backward ("modified by an inplace operation")."""
    with pytest.warns(UserWarning, match="spectral norm") as caught:
        module = GANModule(
            lambda s, k: DCGANGenerator(s, k, width=8),
            lambda s, k: DCGANDiscriminator(s, k, width=8, spectral_norm=True),
            data_shape=(1, 28, 28),
            compile_generator=True,
            compile_discriminator=True,
        )
    assert sum("spectral norm" in str(w.message) for w in caught) == 1  # D only: this G has no SN
    assert set(module._compiled) == {"g"} and module.d_path.compiled is None
