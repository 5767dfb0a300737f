import math

import torch

from gan_lightning.data.toy2d import MIXTURE_STD, mixture_means, sample_mixture
from gan_lightning.metrics import mode_coverage


def test_true_mixture_covers_every_mode_with_high_quality_and_near_zero_kl():
    g = torch.Generator().manual_seed(0)
    for kind, k in (("ring", 8), ("grid", 25)):
        x, _ = sample_mixture(kind, 2500, g)
        m = mode_coverage(x, mixture_means(kind), MIXTURE_STD[kind])
        assert m["modes"] == k
        assert 97.5 < m["high_quality_pct"] < 99.9  # a 2D Gaussian has 1 - exp(-4.5) = 98.9% within 3 sigma
        assert m["reverse_kl"] < 0.02


def test_recovers_a_known_number_of_modes_from_a_collapsed_generator():
    means = mixture_means("grid")
    g = torch.Generator().manual_seed(1)
    picked = means[[0, 3, 7, 12, 20]]  # samples on 5 of the 25 modes, evenly
    x = picked.repeat_interleave(100, 0) + 0.05 * torch.randn(500, 2, generator=g)
    m = mode_coverage(x, means, 0.05)
    assert m["modes"] == 5
    assert math.isclose(m["reverse_kl"], math.log(25) - math.log(5), abs_tol=0.01)


def test_off_mode_samples_are_not_high_quality_and_cover_nothing():
    means = mixture_means("ring")
    x = torch.zeros(100, 2)  # the ring's center: radius 1 away from every mode
    m = mode_coverage(x, means, 0.01)
    assert m["modes"] == 0 and m["high_quality_pct"] == 0.0 and math.isnan(m["reverse_kl"])


def test_all_samples_on_one_mode_give_kl_log_k():
    means = mixture_means("ring")
    x = means[2].expand(50, 2)
    m = mode_coverage(x, means, 0.01)
    assert m["modes"] == 1 and math.isclose(m["reverse_kl"], math.log(8), rel_tol=1e-9)
