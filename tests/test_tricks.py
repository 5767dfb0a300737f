"""D-side tricks as standalone components: instance noise, DiffAugment (fixed and adaptive p), label
smoothing and flipping, experience replay, PacGAN packing. Each test fails if its switch stops acting.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from gan_lightning.errors import ConfigError
from gan_lightning.losses import RSGAN, Hinge, LeastSquares, Minimax, NonSaturating, RaGAN, Wasserstein
from gan_lightning.tricks import DiffAugment, ExperienceReplay, InstanceNoise, pack, packed_shape


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- instance noise -----------------------------------------------------------------------------------


def test_instance_noise_sigma_follows_linear_schedule():
    noise = InstanceNoise(sigma=0.2, anneal_steps=100, schedule="linear")
    assert [noise.sigma_at(t) for t in (0, 25, 50, 100, 150)] == pytest.approx([0.2, 0.15, 0.1, 0.0, 0.0])


def test_instance_noise_sigma_follows_exponential_schedule():
    noise = InstanceNoise(sigma=0.2, anneal_steps=100, schedule="exponential")
    # 0.01 ** (t / 100): 1 at t=0, 0.1 at t=50, 0.01 just before the end, then 0
    assert noise.sigma_at(0) == pytest.approx(0.2)
    assert noise.sigma_at(50) == pytest.approx(0.02)
    assert noise.sigma_at(99) == pytest.approx(0.2 * 0.01**0.99)
    assert noise.sigma_at(100) == 0.0
    assert noise.sigma_at(1000) == 0.0


def test_instance_noise_constant_schedule_never_anneals():
    noise = InstanceNoise(sigma=0.3, anneal_steps=10, schedule="constant")
    assert noise.sigma_at(0) == noise.sigma_at(10_000) == 0.3


def test_instance_noise_adds_variance_sigma_t_squared():
    noise = InstanceNoise(sigma=0.2, anneal_steps=100)
    noise.set_step(25)  # sigma_t = 0.15
    x = torch.full((200_000,), 0.5, dtype=torch.float64)
    out = noise(x, seeded())
    assert out.var().item() == pytest.approx(0.15**2, rel=0.02)
    assert out.mean().item() == pytest.approx(0.5, abs=1e-3)
    assert noise.log_values() == {"noise/sigma": pytest.approx(0.15)}


def test_instance_noise_is_off_after_annealing():
    noise = InstanceNoise(sigma=0.2, anneal_steps=100)
    x = torch.randn(4, 1, 3, 3)
    noise.set_step(100)
    assert torch.equal(noise(x, seeded()), x)


def test_instance_noise_draws_independently_for_real_and_fake():
    noise = InstanceNoise(sigma=0.1)
    g, x = seeded(), torch.zeros(8, 2)
    assert not torch.equal(noise(x, g), noise(x, g))


def test_instance_noise_rejects_bad_settings():
    with pytest.raises(ConfigError, match="schedule"):
        InstanceNoise(schedule="cosine")
    with pytest.raises(ConfigError, match="anneal_steps"):
        InstanceNoise(anneal_steps=0)


# --- DiffAugment --------------------------------------------------------------------------------------


def test_diffaugment_draws_independently_per_call_and_per_sample():
    augment = DiffAugment()
    g = seeded()
    x = torch.randn(1, 3, 16, 16).expand(4, 3, 16, 16)  # one image, four times
    real, fake = augment(x, g), augment(x, g)  # the two calls the path into D makes
    assert not torch.allclose(real, fake)
    assert not torch.allclose(real, x)
    assert not torch.allclose(real[0], real[1])  # each sample draws its own augmentation


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_passes_gradient_to_its_input(policy):
    augment = DiffAugment(policy=policy)
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    augment(x, seeded()).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_diffaugment_with_p_zero_is_the_identity():
    augment = DiffAugment(p=0.0)
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    out = augment(x, seeded())
    assert torch.equal(out, x)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_diffaugment_refuses_non_images():
    with pytest.raises(ConfigError, match=r"DiffAugment needs images \(N, C, H, W\), got shape \(8, 2\)"):
        DiffAugment()(torch.zeros(8, 2))


def test_diffaugment_rejects_unknown_policy_and_p_with_adaptive():
    with pytest.raises(ConfigError, match="policy"):
        DiffAugment(policy="color,rotate")
    with pytest.raises(ConfigError, match="adaptive"):
        DiffAugment(p=0.5, adaptive=True)


def run_g_steps(augment: DiffAugment, steps: range, scores: torch.Tensor) -> None:
    """What the module does per G step: set_step, then one D step that reports its real scores."""
    for t in steps:
        augment.set_step(t)
        augment.observe_real_scores(scores)


def test_adaptive_p_rises_when_d_is_overconfident_on_reals():
    # 5 real scores per G step, adjusted every 2 G steps: each adjustment moves p by 10 / (0.1 * 1000) = 0.1
    augment = DiffAugment(adaptive=True, adjust_every=2, speed_kimg=0.1)
    assert augment.p.item() == 0.0
    run_g_steps(augment, range(0, 4), torch.ones(5))  # r_t = 1 > 0.6; adjusts at t = 2
    augment.set_step(4)  # second adjustment
    assert augment.p.item() == pytest.approx(0.2)
    assert augment.log_values() == {"augment/p": pytest.approx(0.2), "augment/r_t": 1.0}
    run_g_steps(augment, range(5, 40), torch.ones(5))
    assert augment.p.item() == 1.0  # clamped


def test_adaptive_p_falls_when_d_is_unsure_on_reals_and_stops_at_zero():
    augment = DiffAugment(adaptive=True, adjust_every=2, speed_kimg=0.1)
    augment.p.fill_(0.5)
    run_g_steps(augment, range(0, 4), -torch.ones(5, 1))  # r_t = -1 < 0.6
    augment.set_step(4)
    assert augment.p.item() == pytest.approx(0.3)
    run_g_steps(augment, range(5, 40), -torch.ones(5, 1))
    assert augment.p.item() == 0.0  # clamped


def test_fixed_p_ignores_scores():
    augment = DiffAugment(p=0.5)
    run_g_steps(augment, range(0, 10), torch.ones(5))
    assert augment.p.item() == 0.5


def test_adaptive_p_is_saved_in_the_state_dict():
    augment = DiffAugment(adaptive=True, adjust_every=1, speed_kimg=0.01)
    run_g_steps(augment, range(0, 3), torch.ones(4))
    assert {"p", "sign_sum", "sign_count"} <= set(augment.state_dict())
    restored = DiffAugment(adaptive=True, adjust_every=1, speed_kimg=0.01)
    restored.load_state_dict(augment.state_dict())
    assert restored.p.item() == augment.p.item() > 0.0


# --- label smoothing and flipping ---------------------------------------------------------------------

REAL = [1.5, -2.0, 0.25]
FAKE = [0.5, 3.0, -1.5]


def softplus(u: float) -> float:
    return math.log1p(math.exp(u))


def bce(u: float, t: float) -> float:
    """-[t log sigmoid(u) + (1 - t) log(1 - sigmoid(u))], written out."""
    return t * softplus(-u) + (1 - t) * softplus(u)


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def d_loss(loss, generator: torch.Generator | None = None) -> float:
    real, fake = torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64)
    return loss.d_loss(real, fake, generator).item()


def uniforms(n: int, seed: int = 0) -> list[float]:
    """Successive U[0, 1) draws, as the loss makes them from a generator seeded with ``seed``."""
    return torch.rand(n, generator=seeded(seed), dtype=torch.float64).tolist()


@pytest.mark.parametrize("family", [NonSaturating, Minimax])
def test_one_sided_smoothing_with_fixed_target(family):
    expected = mean(bce(r, 0.9) for r in REAL) + mean(bce(f, 0.0) for f in FAKE)
    assert d_loss(family(real_target=0.9)) == pytest.approx(expected, abs=1e-12)
    assert d_loss(family()) == pytest.approx(
        mean(bce(r, 1.0) for r in REAL) + mean(bce(f, 0.0) for f in FAKE)
    )


def test_smoothing_leaves_the_generator_loss_alone():
    fake = torch.tensor(FAKE, dtype=torch.float64)
    assert torch.equal(
        NonSaturating(real_target=0.9, flip_prob=0.5).g_loss(fake), NonSaturating().g_loss(fake)
    )


def test_random_real_targets_are_drawn_per_sample():
    u = uniforms(3)
    targets = [0.7 + 0.5 * ui for ui in u]
    expected = mean(bce(r, t) for r, t in zip(REAL, targets)) + mean(bce(f, 0.0) for f in FAKE)
    assert d_loss(NonSaturating(real_target_range=(0.7, 1.2)), seeded()) == pytest.approx(expected, abs=1e-12)


def test_flip_with_probability_one_swaps_the_targets():
    expected = mean(bce(r, 0.0) for r in REAL) + mean(bce(f, 0.9) for f in FAKE)
    assert d_loss(NonSaturating(real_target=0.9, flip_prob=1.0), seeded()) == pytest.approx(
        expected, abs=1e-12
    )


def test_flip_draws_once_per_sample():
    u = uniforms(6)  # flip draws of the reals, then of the fakes
    real_t = [0.0 if ui < 0.5 else 1.0 for ui in u[:3]]
    fake_t = [1.0 if ui < 0.5 else 0.0 for ui in u[3:]]
    assert 0 < sum(real_t) + sum(fake_t) < 6  # this seed flips some samples, not all
    expected = mean(bce(r, t) for r, t in zip(REAL, real_t)) + mean(bce(f, t) for f, t in zip(FAKE, fake_t))
    assert d_loss(NonSaturating(flip_prob=0.5), seeded()) == pytest.approx(expected, abs=1e-12)


def test_least_squares_flip_swaps_a_and_b():
    loss = LeastSquares(a=-1.0, b=1.0, c=0.0, flip_prob=1.0)
    expected = 0.5 * mean((r + 1.0) ** 2 for r in REAL) + 0.5 * mean((f - 1.0) ** 2 for f in FAKE)
    assert d_loss(loss, seeded()) == pytest.approx(expected, abs=1e-12)


def test_least_squares_random_real_targets_replace_b():
    targets = [0.7 + 0.5 * ui for ui in uniforms(3)]
    expected = 0.5 * mean((r - t) ** 2 for r, t in zip(REAL, targets)) + 0.5 * mean(f**2 for f in FAKE)
    assert d_loss(LeastSquares(real_target_range=(0.7, 1.2)), seeded()) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("family", [Hinge, Wasserstein, RSGAN, RaGAN])
def test_families_without_targets_refuse_label_tricks(family):
    with pytest.raises(TypeError):
        family(real_target=0.9)
    with pytest.raises(TypeError):
        family(flip_prob=0.1)


def test_label_trick_settings_are_checked():
    with pytest.raises(ConfigError, match="not both"):
        NonSaturating(real_target=0.9, real_target_range=(0.7, 1.2))
    with pytest.raises(ConfigError, match="lo < hi"):
        NonSaturating(real_target_range=(1.2, 0.7))
    with pytest.raises(ConfigError, match="flip_prob"):
        LeastSquares(flip_prob=1.5)


# --- experience replay --------------------------------------------------------------------------------


def batch(start: int, n: int = 8) -> torch.Tensor:
    """n distinct samples of shape (2,), distinct from every other batch."""
    return torch.arange(start, start + 2 * n, dtype=torch.float32).view(n, 2)


def replayed_rows(out: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """Mask of the rows of ``out`` that are not from the fresh batch."""
    return ~(out[:, None, :] == fresh[None, :, :]).all(-1).any(1)


def test_replay_replaces_the_configured_share_with_past_fakes():
    replay, g = ExperienceReplay(size=64, fraction=0.25), seeded()
    first = batch(0)
    assert torch.equal(replay.mix(first, g), first)  # empty buffer: nothing to replay yet
    past = [first]
    for i in range(1, 5):
        fresh = batch(100 * i)
        out = replay.mix(fresh, g)
        mask = replayed_rows(out, fresh)
        assert mask.sum().item() == 2  # round(0.25 * 8)
        assert replayed_rows(out[mask], torch.cat(past)).sum() == 0  # each replayed row is a past fake
        past.append(fresh)


def test_replayed_samples_carry_no_gradient_to_the_generator():
    replay, g = ExperienceReplay(size=64, fraction=0.5), seeded()
    replay.mix(batch(0), g)
    fake = batch(100).requires_grad_(True)
    out = replay.mix(fake, g)
    out.sum().backward()
    replayed = replayed_rows(out.detach(), fake.detach())
    assert replayed.sum().item() == 4
    assert torch.equal(fake.grad[replayed], torch.zeros(4, 2))
    assert torch.equal(fake.grad[~replayed], torch.ones(4, 2))
    assert not replay.samples.requires_grad


def test_replay_buffer_is_a_ring_of_the_latest_fakes():
    replay = ExperienceReplay(size=5, fraction=0.0)
    a, b = batch(0, 3), batch(100, 3)
    replay.mix(a)  # slots 0, 1, 2
    replay.mix(b)  # slots 3, 4, then 0 again: a[0] is the oldest, overwritten
    assert torch.equal(replay.samples, torch.stack([b[2], a[1], a[2], b[0], b[1]]))
    assert (replay.filled, replay.position) == (5, 1)


def test_replay_buffer_survives_a_checkpoint_round_trip():
    replay, g = ExperienceReplay(size=12, fraction=0.5), seeded()
    for i in range(3):
        replay.mix(batch(100 * i), g)
    saved = io.BytesIO()
    torch.save(replay.state_dict(), saved)
    saved.seek(0)
    restored = ExperienceReplay(size=12, fraction=0.5)
    restored.load_state_dict(torch.load(saved))
    assert torch.equal(restored.samples, replay.samples)
    assert (restored.filled, restored.position) == (replay.filled, replay.position)
    # the resumed buffer replays exactly what the original would
    assert torch.equal(restored.mix(batch(900), seeded(1)), replay.mix(batch(900), seeded(1)))


def test_replay_refuses_a_checkpoint_of_another_size():
    replay = ExperienceReplay(size=12)
    replay.mix(batch(0))
    with pytest.raises(ConfigError, match="set size: 12"):
        ExperienceReplay(size=10).load_state_dict(replay.state_dict())


# --- PacGAN packing -----------------------------------------------------------------------------------


def test_pack_groups_consecutive_images_along_channels():
    x = torch.arange(4 * 2 * 3 * 3).view(4, 2, 3, 3)
    packed = pack(x, 2)
    assert packed.shape == (2, 4, 3, 3)
    assert torch.equal(packed[0], torch.cat([x[0], x[1]]))
    assert torch.equal(packed[1], torch.cat([x[2], x[3]]))


def test_pack_groups_consecutive_points_along_features():
    x = torch.arange(6 * 2).view(6, 2)
    assert torch.equal(pack(x, 3), torch.arange(12).view(2, 6))
    assert torch.equal(pack(x, 1), x)


def test_pack_refuses_a_batch_not_divisible_by_m():
    message = (
        "batch of 5 samples cannot be packed in groups of 2; make data.init_args.batch_size a multiple of 2"
    )
    with pytest.raises(ConfigError, match=message):
        pack(torch.zeros(5, 2), 2)


def test_packed_shape():
    assert packed_shape((3, 32, 32), 2) == (6, 32, 32)
    assert packed_shape((2,), 4) == (8,)
    assert packed_shape((1, 28, 28), 1) == (1, 28, 28)


def parse_loss(class_path: str, init_args: dict):
    """Build a loss from a class_path entry, as the CLI does."""
    import json

    from jsonargparse import ArgumentParser

    from gan_lightning.losses import GANLoss

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--loss", type=GANLoss)
    spec = {"class_path": f"gan_lightning.losses.{class_path}", "init_args": init_args}
    return parser.instantiate_classes(parser.parse_args(["--loss", json.dumps(spec)])).loss


def test_config_sets_label_tricks_on_bce_and_refuses_them_on_hinge():
    loss = parse_loss("NonSaturating", {"real_target_range": [0.7, 1.2], "flip_prob": 0.05})
    assert (loss.real_target_range, loss.flip_prob) == ((0.7, 1.2), 0.05)
    from jsonargparse import ArgumentError

    with pytest.raises(ArgumentError, match="'real_target' is not accepted"):
        parse_loss("Hinge", {"real_target": 0.9})
