"""Density and coverage (Naeem et al. 2020) against hand-computed sets, and through the metrics."""

import math

import pytest
import torch

from gan_lightning.evaluation import GANMetrics
from gan_lightning.metrics.precision_recall import density_coverage
from gan_lightning.metrics.scores import FeatureScores

REAL = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # k=1 radii: 1 each, balls (x-1, x+1), open


def test_density_counts_real_balls_per_sample_and_coverage_counts_balls_hit():
    fake = torch.tensor([[0.5], [1.5], [10.0]])
    out = density_coverage(REAL, fake, k=1)
    # 0.5 lies in the balls of 0 and 1; 1.5 in those of 1 and 2; 10 in none: 4 pairs / (k=1 * 3 samples)
    assert out["density"] == pytest.approx(4 / 3)
    assert out["coverage"] == 0.75  # balls of 0, 1, 2 hold a sample; the ball of 3 does not


def test_a_sample_on_a_ball_boundary_is_outside_as_in_the_authors_code():
    out = density_coverage(REAL, torch.tensor([[2.0]]), k=1)  # distance exactly 1 from 1 and from 3
    assert out["density"] == 1.0 and out["coverage"] == 0.25  # only the ball of 2 itself


def test_k_sets_the_radii_and_divides_the_density():
    # k=2 radii: 0 -> 2, 1 -> 1, 2 -> 1, 3 -> 2
    out = density_coverage(REAL, torch.tensor([[-1.5], [2.5]]), k=2)
    # -1.5: in the ball of 0 only (1.5 < 2); 2.5: balls of 2 (0.5 < 1) and 3 (0.5 < 2), not 1 (1.5)
    assert out["density"] == pytest.approx(3 / (2 * 2))
    assert out["coverage"] == 0.75


def test_density_is_near_one_for_samples_of_the_data_and_zero_far_away():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2000, 4, generator=g).split(1000)
    scores = FeatureScores(4, 3, ["density_coverage"])
    scores.update_real(real.double())
    scores.update_fake(fake.double(), torch.zeros(1000, 3))
    same = scores.compute()
    assert 0.8 < same["density"] < 1.2 and same["coverage"] > 0.9
    scores.reset_fake()
    scores.update_fake(fake.double() + 10, torch.zeros(1000, 3))
    assert scores.compute() == {"density": 0.0, "coverage": 0.0}


def test_density_coverage_is_an_optional_metric_with_its_own_k():
    metrics = GANMetrics(metrics=["fid", "density_coverage"], dc_k=7)
    assert metrics.score_args["dc_k"] == 7
    scores = FeatureScores(1, 1, ["density_coverage"], dc_k=1)
    scores.update_real(REAL.double())
    scores.update_fake(torch.tensor([[0.5], [1.5], [10.0]]).double(), torch.zeros(3, 1))
    out = scores.compute()
    assert out["density"] == pytest.approx(4 / 3) and math.isclose(out["coverage"], 0.75)
