"""Discriminator rejection sampling (Azadi et al. 2019) on a Stacked MNIST checkpoint: does D's
density-ratio estimate correct the EMA G's per-channel digit bias (too few 1s)?

    python benchmarks/stacked_drs.py runs/g64_20k/g64/d32/seed1/checkpoints/last.ckpt --pool 120000
    python benchmarks/stacked_drs.py CKPT --pool 120000 --calibrate 1500   # D fine-tuned on real vs EMA G

It draws ``--pool`` samples from the checkpoint's EMA G (latents seeded 0, as the metrics draw them),
scores each with D (eval mode; with ``--calibrate N``, a copy of D first trained N steps on real
triples against the EMA G's samples, BatchNorm at its running statistics, since D was trained against
the raw G), and accepts sample x with DRS's probability sigmoid(F(x) - gamma), where
F(x) = D(x) - M - log(1 - exp(D(x) - M - eps)), M is the largest score of a burn-in of the first 10,000
samples and gamma a percentile of their F (gamma = 0 is exact rejection sampling by exp(D(x) - M)).
The first 26,000 accepted samples are read by the digit classifier: modes, KL to uniform, and the share
of 1s, 7s and 9s over the three channels. Prints a markdown table; the numbers go in the doc by hand.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from stacked_mnist import read_samples

from gan_lightning.data.base import to_unit_range
from gan_lightning.data.stacked import StackedDigits
from gan_lightning.errors import GanLightningError
from gan_lightning.metrics.features import class_coverage
from gan_lightning.sample import load_module

BURN_IN = 10_000
EPS = 1e-6


def calibrated(module, steps: int, seed: int = 123) -> torch.nn.Module:
    """A copy of D trained ``steps`` steps (Adam 1e-4, batch 64 + 64) on real vs the EMA G's samples."""
    d = copy.deepcopy(module.discriminator).eval()  # eval: BatchNorm stays at D's running statistics
    opt = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.5, 0.999))
    train, g = StackedDigits().build("train"), torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(train), (64,), generator=g).tolist()
        real = to_unit_range(train.__getitems__(idx)[0].clone())
        fake = module.sample(module.draw_latents(64, g))
        loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return d


def drs_accept(scores: torch.Tensor, burn: torch.Tensor, percentile: float | None) -> torch.Tensor:
    """DRS's acceptance probabilities; ``percentile`` of the burn-in's F as gamma (None: gamma = 0)."""
    m = burn.max()

    def f(s: torch.Tensor) -> torch.Tensor:
        return s - m - torch.log1p(-torch.exp(s - m - EPS))

    gamma = 0.0 if percentile is None else torch.quantile(f(burn), percentile / 100)
    return torch.sigmoid(f(scores) - gamma)


def row(name: str, triples: torch.Tensor, accepted: torch.Tensor, rate: float, num: int) -> str:
    kept = triples[accepted][:num]
    digits = torch.stack([kept // 100, kept // 10 % 10, kept % 10], 1)
    share = " / ".join(f"{100 * (digits == k).float().mean():.1f}" for k in (1, 7, 9))
    cov = class_coverage(kept, 1000)
    return f"| {name} | {rate:.3f} | {len(kept):,} | {int(cov['modes'])} | {cov['mode_kl']:.4f} | {share} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--pool", type=int, default=120_000, help="EMA samples drawn and scored")
    parser.add_argument("--num", type=int, default=26_000, help="accepted samples counted")
    parser.add_argument("--calibrate", type=int, default=0, help="steps of D's calibration (0: D as saved)")
    parser.add_argument("--percentiles", nargs="+", type=float, default=[50, 80, 90, 95])
    a = parser.parse_args()
    torch.manual_seed(0)
    try:
        module = load_module(a.ckpt)  # a missing, damaged or pickled file: one line, as in the CLI
    except GanLightningError as err:
        parser.exit(2, f"error: {err}\n")
    module.eval()
    d = calibrated(module, a.calibrate) if a.calibrate else module.discriminator.eval()
    triples, scores = read_samples(module, a.pool, score=d)
    u = torch.rand(len(scores), generator=torch.Generator().manual_seed(1))
    burn = scores[: min(BURN_IN, len(scores))]
    print(f"{a.ckpt} (D {'calibrated ' + str(a.calibrate) + ' steps' if a.calibrate else 'as saved'}):")
    print("| sampler | acceptance | samples counted | modes | KL | 1s / 7s / 9s (%) |")
    print("|---|---|---|---|---|---|")
    print(row("no rejection", triples, torch.ones_like(u, dtype=torch.bool), 1.0, a.num))
    for p in [None, *a.percentiles]:
        accepted = u < drs_accept(scores, burn, p)
        name = "DRS, gamma 0 (exact)" if p is None else f"DRS, gamma at F's {p:g}th percentile"
        print(row(name, triples, accepted, accepted.float().mean().item(), a.num))


if __name__ == "__main__":
    main()
