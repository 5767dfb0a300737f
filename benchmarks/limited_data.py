"""Limited data: the quickstart DCGAN on 10 % of the embedded digits, with and without DiffAugment.

Each run trains `configs/quickstart.yaml` with `--data.init_args.num_train N` (the first N digits of the
shuffled train split; default 450 of 4,500) with no D augmentation, with `configs/tricks/diffaugment.yaml`,
or with `configs/tricks/adaptive_diffaugment.yaml`, for the same number of G steps (each of ``--steps``, a
separate run); seeds 0..S-1. The score is the classifier-FID of GANMetrics (the offline digit
classifier, 5,000 samples of the EMA G) against the 500 held-out digits, which neither arm trains on, so
memorizing the 450 cannot lower it. ``--full`` adds the same runs on all 4,500 digits for reference.
Finished runs are kept in `<out>/results.json`. Writes docs/limited_data.md.

    python benchmarks/limited_data.py --steps 1500 6000 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from common import ROOT, build, load_runs, save_run
from mode_coverage import ANALYSIS, kept_analysis

from gan_lightning.io import atomic_write_text

ARMS = {  # name: (config fragments, what the doc calls it)
    "plain": ([], "none"),
    "diffaugment": (["tricks/diffaugment.yaml"], "DiffAugment, every D input"),
    "adaptive": (["tricks/adaptive_diffaugment.yaml"], "DiffAugment, adaptive p (target 0.6)"),
}


def run(arm: str, num_train: int | None, seed: int, steps: int, out: Path) -> dict:
    t0 = time.perf_counter()
    overrides = {
        "--seed_everything": str(seed),
        "--trainer.max_steps": str(steps),
        "--trainer.default_root_dir": str(out / f"{arm}-{num_train}-{seed}-{steps}"),
        "--metrics.real_split": "val",  # the held-out digits: the same reference for every arm and size
        "--metrics.metrics": "[fid, is, modes]",  # KID's 1,000-sample subsets need more than the 500 reals
    }
    if num_train is not None:
        overrides["--data.init_args.num_train"] = str(num_train)
    cli = build(["quickstart.yaml", *ARMS[arm][0]], overrides)
    cli.trainer.fit(cli.model, cli.datamodule)
    metrics = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "GANMetrics")
    scores = metrics.evaluate(cli.model, cli.datamodule)  # the final EMA G
    return {
        **scores,
        "minutes": (time.perf_counter() - t0) / 60,
        "train_size": len(cli.datamodule.build("train")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[1500], help="generator steps per run (budgets)"
    )
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--num_train", type=int, default=450)
    parser.add_argument("--full", action="store_true", help="also train on all 4,500 digits")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_limited_data")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--doc_only", action="store_true", help="rewrite the doc from the finished runs only")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # a shared CPU: one thread, as the other benchmarks
    a.out.mkdir(parents=True, exist_ok=True)
    cache = a.out / "results.json"
    results = load_runs(cache)
    sizes = [a.num_train] + ([None] if a.full else [])
    for steps in a.steps:
        for size in sizes:
            for seed in range(a.seeds):
                for arm in a.arms:
                    key = f"{arm}/{size or 'all'}/{steps}/{seed}"
                    if key not in results and not a.doc_only:
                        results = save_run(cache, key, run(arm, size, seed, steps, a.out))
                    print(key, json.dumps(results.get(key)), flush=True)
    write_doc(results, a, sizes)


def write_doc(results: dict, a: argparse.Namespace, sizes: list[int | None]) -> None:
    command = "python benchmarks/limited_data.py " + " ".join(x for x in sys.argv[1:] if x != "--doc_only")
    lines = [
        "# Limited data: 10 % of the digits, with and without DiffAugment",
        "",
        f"Command: `{command.strip()}` (CPU, one thread). Each run: `configs/quickstart.yaml` (DCGAN width "
        f"32, non-saturating loss, EMA of G, batch 64) for {' or '.join(f'{s:,}' for s in a.steps)} G steps, "
        "trained on the first `--data.init_args.num_train` digits of the shuffled train split, with no D "
        "augmentation, with `configs/tricks/diffaugment.yaml` (DiffAugment color + translation + cutout on "
        "every D input, Zhao et al. 2020), or with `configs/tricks/adaptive_diffaugment.yaml` (the same, "
        "applied with stylegan2-ada's adaptive probability p, target r_t = 0.6). Score: classifier-FID (`gan_lightning.metrics.DigitFeatures`) of 5,000 EMA-G samples "
        "against the 500 held-out digits (`--metrics.real_split val`), the same reference for every run; "
        f"seeds 0..{a.seeds - 1}, every seed reported.",
        "",
        *(kept_analysis(a.docs / "limited_data.md") or [ANALYSIS[0], ANALYSIS[1], ""]),
        "| G steps | train digits | D augmentation | classifier-FID per seed | mean | IS (digits) | classes "
        "| minutes/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for steps in a.steps:
        for size in sizes:
            for arm in a.arms:
                runs = [results.get(f"{arm}/{size or 'all'}/{steps}/{s}") for s in range(a.seeds)]
                if None not in runs:
                    lines.append(row(steps, arm, runs))
    lines.append("")
    atomic_write_text(a.docs / "limited_data.md", "\n".join(lines))


def row(steps: int, arm: str, runs: list[dict]) -> str:
    fids = [r["digit_fid"] for r in runs]
    return (
        f"| {steps:,} | {runs[0]['train_size']:,} | {ARMS[arm][1]} "
        f"| {', '.join(f'{f:.2f}' for f in fids)} | {statistics.mean(fids):.2f} "
        f"| {statistics.mean(r['digit_is'] for r in runs):.2f} "
        f"| {', '.join(str(round(r['digit_modes'])) for r in runs)} "
        f"| {statistics.mean(r['minutes'] for r in runs):.1f} |"
    )


if __name__ == "__main__":
    main()
