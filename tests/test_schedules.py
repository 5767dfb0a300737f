"""D-step schedules: the original WGAN burst schedule and the O(1) totals used to resume the data stream."""

from __future__ import annotations

import json

import pytest

from gan_lightning.errors import ConfigError
from gan_lightning.schedules import DSteps, FixedDSteps, WGANSchedule


def loop_total(schedule: DSteps, g_steps: int) -> int:
    return sum(schedule.d_steps(g) for g in range(g_steps))


def test_wgan_schedule_bursts_100_d_steps_for_the_first_25_g_steps() -> None:
    schedule = WGANSchedule()
    assert [schedule.d_steps(g) for g in range(25)] == [100] * 25
    assert schedule.d_steps(25) == 5


def test_wgan_schedule_bursts_on_every_500th_g_step_and_uses_n_critic_elsewhere() -> None:
    schedule = WGANSchedule()
    assert [schedule.d_steps(g) for g in (500, 1000, 1500, 10_000)] == [100] * 4
    assert [schedule.d_steps(g) for g in (25, 26, 499, 501, 999, 1001, 12_345)] == [5] * 7


def test_wgan_schedule_custom_settings() -> None:
    schedule = WGANSchedule(n_critic=2, burst_d_steps=7, burst_first_g_steps=0, burst_every=3)
    assert [schedule.d_steps(g) for g in range(8)] == [7, 2, 2, 7, 2, 2, 7, 2]


@pytest.mark.parametrize(
    "schedule",
    [
        WGANSchedule(),
        WGANSchedule(n_critic=1, burst_d_steps=3, burst_first_g_steps=7, burst_every=5),
        WGANSchedule(n_critic=4, burst_d_steps=9, burst_first_g_steps=0, burst_every=1),
        WGANSchedule(n_critic=2, burst_d_steps=11, burst_first_g_steps=0, burst_every=6),
        WGANSchedule(n_critic=3, burst_d_steps=20, burst_first_g_steps=30, burst_every=4),
        WGANSchedule(n_critic=5, burst_d_steps=5, burst_first_g_steps=3, burst_every=2),
        FixedDSteps(3),
    ],
    ids=repr,
)
def test_total_d_steps_closed_form_equals_summing_the_schedule(schedule: DSteps) -> None:
    running = 0
    for g in range(1_600):  # total_d_steps(g) = d_steps(0) + ... + d_steps(g - 1)
        assert schedule.total_d_steps(g) == running, g
        running += schedule.d_steps(g)


def test_wgan_total_d_steps_known_values() -> None:
    schedule = WGANSchedule()
    assert schedule.total_d_steps(0) == 0
    assert schedule.total_d_steps(25) == 2_500
    assert schedule.total_d_steps(500) == 2_500 + 5 * 475
    assert schedule.total_d_steps(501) == 2_500 + 5 * 475 + 100
    # 25 head bursts + bursts at 500, 1000, ..., 999_500 (1999 of them), n_critic for the rest
    assert schedule.total_d_steps(1_000_000) == 100 * (25 + 1_999) + 5 * (1_000_000 - 25 - 1_999)
    assert schedule.total_d_steps(-3) == loop_total(schedule, -3) == 0


def test_wgan_total_d_steps_is_constant_time() -> None:
    # a loop over 10^15 generator steps would never finish
    n = 10**15
    bursts = 25 + (n - 1) // 500  # g = 500, 1000, ... < n
    assert WGANSchedule().total_d_steps(n) == 100 * bursts + 5 * (n - bursts)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_critic": 0}, {"burst_d_steps": 0}, {"burst_every": 0}, {"burst_first_g_steps": -1}],
)
def test_wgan_schedule_rejects_invalid_settings(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        WGANSchedule(**kwargs)


@pytest.mark.parametrize(
    "class_path, init_args",
    [
        ("FixedDSteps", {"d_steps_per_g_step": 5}),
        ("WGANSchedule", {}),
        ("WGANSchedule", {"n_critic": 3, "burst_d_steps": 50, "burst_first_g_steps": 10, "burst_every": 200}),
    ],
)
def test_every_schedule_is_built_from_a_class_path_by_jsonargparse(class_path: str, init_args: dict) -> None:
    from jsonargparse import ArgumentParser

    from gan_lightning import schedules

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--schedule", type=DSteps)
    spec = {"class_path": f"gan_lightning.schedules.{class_path}", "init_args": init_args}
    cfg = parser.instantiate_classes(parser.parse_args(["--schedule", json.dumps(spec)]))
    assert type(cfg.schedule) is getattr(schedules, class_path)
    for key, value in init_args.items():
        assert getattr(cfg.schedule, key) == value
