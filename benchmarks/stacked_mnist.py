"""Stacked MNIST (1000 modes): distinct digit triples among 26,000 samples, and the KL of their
histogram to uniform, for a plain DCGAN (VEEGAN / PacGAN protocol).

    python benchmarks/stacked_mnist.py --steps 5000 --seeds 2

Each run is `configs/stacked_mnist.yaml` trained for ``--steps`` generator steps; the modes are
counted by its metrics callback (the digit classifier on each channel). Writes docs/stacked_mnist.md
and docs/stacked_mnist_grid.png (seed 0).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from pathlib import Path

from common import ROOT, build

from gan_lightning.callbacks import save_grid

READING = """\
**Reading this table.** Our plain DCGAN covers far more triples than the published DCGANs (929 and 966
of 1000, against 99 and 78.9). The published numbers come from other architectures and budgets (the
unrolled-GAN / VEEGAN setups, some with a discriminator deliberately weakened to make collapse likely);
ours is the quickstart's DCGAN at width 32 (G 371 K, D 168 K parameters), with an EMA generator, 5,000
steps. So
this table shows that the pipeline (data, classifier, counting) works and that a well-matched DCGAN
does not collapse on this data; it is not an ablation. The PacGAN and minibatch-std comparison the
issue asks for needs those tricks, which no issue has added yet.
"""
PUBLISHED = """\
Published (26,000 samples, modes out of 1000 / KL to uniform):

| source | model | modes | KL |
|---|---|---|---|
| VEEGAN Table 2 | DCGAN | 99 | 3.4 |
| VEEGAN Table 2 | VEEGAN | 150 | 2.95 |
| PacGAN Table 2 | DCGAN | 78.9 ± 6.5 | — |
| PacGAN Table 2 | PacDCGAN2 | 1000 | 0.06 |
"""


def run(seed: int, steps: int, out: Path, num_fake: int) -> tuple[dict, object]:
    cli = build(
        ["stacked_mnist.yaml"],
        {
            "--seed_everything": str(seed),
            "--trainer.max_steps": str(steps),
            "--trainer.default_root_dir": str(out / f"seed{seed}"),
            "--metrics.num_fake": str(num_fake),
        },
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    metrics = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "GANMetrics")
    results = metrics.evaluate(cli.model, cli.datamodule)  # the final G
    return results, cli.model.sample(cli.model.fixed_noise).cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--num_fake", type=int, default=26000, help="samples whose triples are counted")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_stacked")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    rows = []
    for seed in range(a.seeds):
        t0 = time.perf_counter()
        results, grid = run(seed, a.steps, a.out, a.num_fake)
        rows.append({**results, "seconds": time.perf_counter() - t0})
        print(seed, rows[-1], flush=True)
        if seed == 0:
            save_grid(grid, a.docs / "stacked_mnist_grid.png")

    def stat(key: str, digits: int) -> str:
        vals = [r[key] for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"

    lines = [
        "# Stacked MNIST: modes of a plain DCGAN",
        "",
        f"Command: `python benchmarks/stacked_mnist.py --steps {a.steps} --seeds {a.seeds} --num_fake {a.num_fake}`"
        " (CPU). Each run is",
        f"`configs/stacked_mnist.yaml` (DCGAN width 32, non-saturating loss, EMA of G, batch 64) for {a.steps}",
        f"generator steps. Each of the {a.num_fake:,} samples of the EMA generator gets the digit triple that the",
        "classifier (`gan_lightning.metrics.DigitFeatures`, 99.0 % on held-out digits) reads from its three",
        "channels; modes = distinct triples, KL = KL(triple histogram || uniform over 1000).",
        "",
        "| seed | modes (of 1000) | KL | classifier-FID (3 channels) | minutes |",
        "|---|---|---|---|---|",
        *(
            f"| {i} | {r['digit_modes']:.0f} | {r['digit_mode_kl']:.3f} | {r['digit_fid']:.2f} | {r['seconds'] / 60:.1f} |"
            for i, r in enumerate(rows)
        ),
        f"| mean ± std | {stat('digit_modes', 1)} | {stat('digit_mode_kl', 3)} | {stat('digit_fid', 2)} | |",
        "",
        "![samples](stacked_mnist_grid.png)",
        "",
        READING,
        PUBLISHED,
    ]
    (a.docs / "stacked_mnist.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
