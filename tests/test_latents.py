"""Latent priors, truncation, slerp and the circular walk; every latent drawn through the prior;
``sample --interpolate`` / ``--walk`` end to end."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import DIGITS_TINY, one_error_line, run_cli, run_cli_subprocess, tiny_args
from PIL import Image

from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import GANMetrics
from gan_lightning.latents import Normal, Sphere, Uniform, circular_walk, interpolation, slerp
from gan_lightning.module import GANModule
from gan_lightning.nets import MLPDiscriminator, MLPGenerator


def toy_module(**kwargs) -> GANModule:
    return GANModule(
        partial(MLPGenerator, latent_dim=4, hidden=16, depth=2),
        partial(MLPDiscriminator, hidden=16, depth=2),
        data_shape=(2,),
        **kwargs,
    )


# --- slerp and the walk ---------------------------------------------------------------------------
def test_slerp_endpoints_equal_the_inputs():
    z0, z1 = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(slerp(z0, z1, 0.0), z0)
    assert torch.equal(slerp(z0, z1, 1.0), z1)
    path = interpolation(z0, z1, 7)
    assert path.shape == (5, 7, 16)
    assert torch.equal(path[:, 0], z0) and torch.equal(path[:, -1], z1)


def test_slerp_path_stays_on_the_unit_sphere_for_normalized_latents():
    z0, z1 = torch.nn.functional.normalize(
        torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    norms = interpolation(z0, z1, 11).norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
    # lerp would cut through the inside of the sphere
    assert (torch.lerp(z0, z1, 0.5).norm(dim=-1) < 0.95).all()


def test_slerp_midpoint_of_orthogonal_unit_vectors_is_their_sum_over_sqrt2():
    e1, e2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    # omega = pi/2: sin(pi/4) / sin(pi/2) * (e1 + e2)
    assert torch.allclose(slerp(e1, e2, 0.5), torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2.0), atol=1e-7)
    assert torch.allclose(slerp(e1, e2, 1 / 3), torch.tensor([math.cos(math.pi / 6), 0.5, 0.0]), atol=1e-7)


def test_slerp_falls_back_to_lerp_for_parallel_vectors():
    z = torch.tensor([[3.0, 4.0]])
    out = slerp(z, 2 * z, 0.25)
    assert torch.isfinite(out).all() and torch.allclose(out, torch.lerp(z, 2 * z, 0.25))


def test_circular_walk_keeps_the_radius_and_passes_the_second_latents_direction():
    z0, z1 = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(2))
    walk = circular_walk(z0, z1, 360)
    assert torch.equal(walk[:, 0], z0)
    assert torch.allclose(walk.norm(dim=-1), z0.norm(dim=-1, keepdim=True).expand(3, 360), rtol=1e-5)
    cos = torch.nn.functional.cosine_similarity(walk, z1.unsqueeze(1), dim=-1)
    assert (cos.max(dim=1).values > 0.9999).all()  # the circle lies in the plane of z0 and z1


# --- priors -------------------------------------------------------------------------------------------
def test_normal_prior_draws_bitwise_what_randn_draws_everywhere():
    g0, g1 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(Normal().sample(9, 7, g0), torch.randn(9, 7, generator=g1))
    module = toy_module()
    assert torch.equal(module.fixed_noise, torch.randn(64, 4, generator=torch.Generator().manual_seed(0)))
    state = module.rng.get_state()
    expected = torch.randn(6, 4, generator=torch.Generator().set_state(state))
    assert torch.equal(module.noise(6), expected)
    from gan_lightning.sample import generate

    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(generate(module, 3, seed=1), module.sample(z))


def test_uniform_prior_stays_within_its_bounds():
    z = Uniform().sample(4000, 8, torch.Generator().manual_seed(0))
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.99 and z.max() > 0.99
    assert abs(z.var().item() - 1 / 3) < 0.01  # Var U(-1, 1) = 1/3


def test_sphere_prior_lies_on_the_sphere_of_radius_sqrt_dim():
    z = Sphere().sample(100, 64, torch.Generator().manual_seed(0))
    assert torch.allclose(z.norm(dim=1), torch.full((100,), 8.0), atol=1e-5)


@pytest.mark.parametrize("prior", [Normal(1.5), Uniform(0.5)], ids=repr)
def test_truncation_bound_is_respected_at_sampling_time_only(prior):
    g = torch.Generator().manual_seed(0)
    t = prior.truncation
    truncated = prior.sample(5000, 8, g, truncate=True)
    assert truncated.abs().max() <= t and truncated.abs().max() > 0.99 * t
    assert prior.sample(5000, 8, g).abs().max() > t  # training draws are untruncated
    module = toy_module(latent=prior)
    assert module.noise(5000).abs().max() > t
    assert module.draw_latents(5000).abs().max() <= t
    assert module.fixed_noise.abs().max() <= t  # sample grids are sampling


def test_sphere_truncation_truncates_the_gaussian_before_projecting():
    g0, g1 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    z = Sphere(1.0).sample(200, 16, g0, truncate=True)
    gaussian = Normal(1.0).sample(200, 16, g1, truncate=True)
    assert gaussian.abs().max() <= 1.0
    assert torch.allclose(z, gaussian / gaussian.norm(dim=1, keepdim=True) * 4.0)
    assert torch.allclose(z.norm(dim=1), torch.full((200,), 4.0), atol=1e-5)


def test_psi_truncation_scales_toward_the_mean_and_is_refused_on_the_sphere():
    g0, g1 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(Normal(psi=0.7).sample(5, 3, g0, truncate=True), 0.7 * torch.randn(5, 3, generator=g1))
    with pytest.raises(ConfigError, match="leaves the sphere"):
        Sphere(psi=0.5)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Normal(0.0), "truncation must be > 0"),
        (lambda: Normal(psi=1.5), r"psi must be in \(0, 1\]"),
        (lambda: Uniform(1.0), "never exceeds"),
    ],
)
def test_bad_prior_settings_are_one_line_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_training_noise_and_the_fixed_grid_noise_come_from_the_prior():
    sphere = toy_module(latent=Sphere())  # latent_dim 4: radius 2
    for z in (sphere.noise(50), sphere.fixed_noise, sphere.draw_latents(50)):
        assert torch.allclose(z.norm(dim=1), torch.full((len(z),), 2.0), atol=1e-5)
    uniform = toy_module(latent=Uniform())
    assert uniform.noise(500).abs().max() <= 1 and uniform.fixed_noise.abs().max() <= 1


def test_evaluation_draws_its_latents_from_the_prior():
    module = toy_module(latent=Sphere())
    seen = []
    module.sample = lambda z, y=None: seen.append(z) or z[:, :2]
    data = SimpleNamespace(means=torch.zeros(1, 2), std=0.1)
    GANMetrics(num_points=50)._toy2d(module, data)
    assert torch.allclose(seen[0].norm(dim=1), torch.full((50,), 2.0), atol=1e-5)


# --- sample --interpolate / --walk ----------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny run of 3 generator steps with the spherical prior: its last.ckpt."""
    root = tmp_path_factory.mktemp("trained")
    sphere = ["--model.latent", "gan_lightning.latents.Sphere"]
    run_cli(["fit", *DIGITS_TINY, *sphere, *tiny_args(root, max_steps=3)])
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def test_sample_interpolate_writes_a_slerp_strip_png_and_a_gif(checkpoint, tmp_path):
    from gan_lightning.sample import generate_from, load_module, sample

    out = sample(str(checkpoint), out=str(tmp_path / "i"), interpolate=5, strips=2, walk=4, seed=3)
    strip = np.asarray(Image.open(out / "interpolation.png"))
    assert strip.shape[:2] == (2 + 2 * 30, 2 + 5 * 30)  # 2 rows x 5 steps of 28 px, 2 px padding
    gif = Image.open(out / "interpolation.gif")
    assert gif.is_animated and gif.n_frames == 8  # 0..4 and back 3..1
    assert Image.open(out / "walk.gif").n_frames == 4 and (out / "walk.png").stat().st_size > 0
    assert not (out / "samples.npy").exists()
    # the strip's ends are the two seeded latents of the model's prior (spherical here)
    module = load_module(checkpoint)
    g = torch.Generator().manual_seed(3)
    z0, z1 = module.draw_latents(2, g), module.draw_latents(2, g)
    assert torch.allclose(z0.norm(dim=1), torch.full((2,), 10.0))
    ends = generate_from(module, torch.cat([z0, z1]))
    first = torch.from_numpy(strip[2:30, 2:30, 0].astype(np.float32))
    expected = ((ends[0, 0] + 1) * 127.5).round().clamp(0, 255)
    assert (first - expected).abs().max() <= 1


def test_sample_truncation_flag_overrides_the_prior(checkpoint, tmp_path):
    from gan_lightning.sample import generate, load_module, sample

    out = sample(str(checkpoint), num_samples=4, out=str(tmp_path / "t"), truncation=0.5)
    module = load_module(checkpoint)
    module.latent = Sphere(0.5)
    assert np.allclose(np.load(out / "samples.npy"), generate(module, 4).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--interpolate", "1"], "--interpolate 1: give the number of steps"),
        (["--walk", "100000"], "--walk 100000: give the number of steps"),
        (["--interpolate", "4", "--strips", "0"], "--strips 0"),
        (["--interpolate", "4", "--per_class", "2"], "--per_class is for sample grids"),
    ],
)
def test_bad_interpolation_input_is_refused_before_loading(flags, message, tmp_path):
    from gan_lightning.sample import sample_main

    with pytest.raises(ConfigError, match=message):
        sample_main(["--ckpt_path", str(tmp_path / "never_read.ckpt"), *flags])


def test_bad_interpolation_steps_give_one_error_line_and_exit_2(checkpoint, tmp_path):
    res = run_cli_subprocess(["sample", "--ckpt_path", str(checkpoint), "--interpolate", "1"])
    assert "--interpolate 1" in one_error_line(res)
