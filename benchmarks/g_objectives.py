"""G-side objectives against the plain GAN on the 2D mixtures (PacGAN protocol: 2,500 samples).

* ring (8 modes), the project's toy config: the plain GAN against unrolled k = 5 and k = 10 (exact, D's
  Adam unrolled), equal G steps; ``--metz`` runs the same entries in Metz et al. 2017's setting (appendix
  A, as we read it: G with 2 hidden layers of 128 ReLU units and a 256-d latent, D with 1 hidden layer of
  128 ReLU units, Adam(beta1 0.5), G lr 1e-3, D lr 1e-4, batch 512), where the plain GAN collapses;
* grid (25 modes), the project's toy config: the plain GAN against feature matching and historical
  averaging.

Seeds 0..S-1. Also the cost of each entry: seconds per G step, measured in this process over the same
run (the ratio to plain is what to read: the machine is shared). Writes docs/g_objectives.md (keeping the
hand-written text after its ANALYSIS marker) and docs/g_objectives_<dataset>.png (seed 0).

    python benchmarks/g_objectives.py --steps 3000 --seeds 3
    python benchmarks/g_objectives.py --metz --datasets ring --steps 10000 --seeds 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from common import ROOT, build
from mode_coverage import fmt, scatter_sheet

from gan_lightning.data.toy2d import MIXTURE_STD, mixture_means
from gan_lightning.io import atomic_write_text
from gan_lightning.metrics import mode_coverage
from gan_lightning.sample import generate

ANALYSIS = "<!-- ANALYSIS: hand-written, kept by reruns -->"
METZ = {
    "--model.generator.init_args.hidden": "128",
    "--model.generator.init_args.depth": "2",
    "--model.generator.init_args.latent_dim": "256",
    "--model.discriminator.init_args.hidden": "128",
    "--model.discriminator.init_args.depth": "1",
    "--model.discriminator.init_args.activation": "relu",
    "--model.g_optimizer.init_args.lr": "1e-3",
    "--model.d_optimizer.init_args.lr": "1e-4",
    "--data.init_args.batch_size": "512",
}
ENTRIES = {
    "ring": {
        "plain": ([], {}),
        "unrolled k=5": (["tricks/unrolled.yaml"], {"--model.unrolled.init_args.k": "5"}),
        "unrolled k=10": (["tricks/unrolled.yaml"], {"--model.unrolled.init_args.k": "10"}),
    },
    "grid": {
        "plain": ([], {}),
        "feature matching (+adv.)": (["tricks/feature_matching.yaml"], {}),
        "historical averaging": (["tricks/historical_averaging.yaml"], {}),
    },
}


class StepClock(L.Callback):
    """Seconds per G step after a warm-up of 20 steps (start-up and the first steps excluded)."""

    def __init__(self, warmup: int = 20) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif trainer.global_step > self.warmup:
            self.end, self.steps = time.perf_counter(), trainer.global_step - self.warmup

    def per_step(self) -> float:
        return (self.end - self.start) / max(self.steps, 1)


def run(dataset: str, name: str, seed: int, steps: int, out: Path) -> tuple[dict, torch.Tensor, float]:
    files, flags = ENTRIES[dataset][name]
    cli = build(
        [f"toy/{dataset}.yaml", *files],
        {
            **flags,
            "--seed_everything": str(seed),
            "--trainer.max_steps": str(steps),
            "--trainer.default_root_dir": str(out / f"{dataset}-{name.replace(' ', '_')}-{seed}"),
        },
    )
    clock = StepClock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    per_step = clock.per_step()
    samples = generate(cli.model, 2500, seed=1000 + seed)
    return mode_coverage(samples, mixture_means(dataset), MIXTURE_STD[dataset]), samples, per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["ring", "grid"])
    parser.add_argument("--metz", action="store_true", help="ring: Metz et al.'s networks and learning rates")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_g_objectives")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    a = parser.parse_args()
    if a.metz:  # the ring entries in Metz et al.'s networks and learning rates
        ENTRIES["ring"] = {
            name: (files, {**METZ, **flags}) for name, (files, flags) in ENTRIES["ring"].items()
        }
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    a.docs.mkdir(parents=True, exist_ok=True)
    lines = [
        "# G-side objectives on the 2D mixtures",
        "",
        f"Command: `python benchmarks/g_objectives.py --steps {a.steps} --seeds {a.seeds}` "
        f"({a.steps:,} G steps per run, seeds 0..{a.seeds - 1}; 2,500 samples per run, PacGAN protocol).",
        "",
    ]
    for dataset in a.datasets:
        lines += [
            f"## {dataset}",
            "",
            "| entry | modes | modes per seed | high-quality % | reverse KL | s per G step | cost vs plain |",
            "|---|---|---|---|---|---|---|",
        ]
        sheet, plain_cost = {}, None
        for name in ENTRIES[dataset]:
            rows, costs = [], []
            for seed in range(a.seeds):
                res, samples, per_step = run(dataset, name, seed, a.steps, a.out)
                rows.append(res)
                costs.append(per_step)
                if seed == 0:
                    sheet[name] = samples
                print(dataset, name, seed, res, f"{per_step * 1e3:.1f} ms/step", file=sys.stderr, flush=True)
            cost = statistics.mean(costs)
            plain_cost = plain_cost or cost
            lines.append(
                f"| {name} | {fmt([r['modes'] for r in rows])} | {', '.join(str(r['modes']) for r in rows)} "
                f"| {fmt([r['high_quality_pct'] for r in rows])} "
                f"| {fmt([r['reverse_kl'] for r in rows], 2)} | {cost * 1e3:.1f} ms | {cost / plain_cost:.1f}x |"
            )
        scatter_sheet(sheet, dataset, a.docs / f"g_objectives_{dataset}.png")
        lines += ["", f"![{dataset}, seed 0](g_objectives_{dataset}.png)", ""]
    doc = a.docs / "g_objectives.md"
    kept = doc.read_text().split(ANALYSIS, 1) if doc.is_file() else []
    analysis = [ANALYSIS + kept[1]] if len(kept) == 2 else []  # the hand-written reading is kept
    atomic_write_text(doc, "\n".join(lines + analysis) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
