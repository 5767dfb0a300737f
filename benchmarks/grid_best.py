"""The 2D-grid recipe (`configs/experiment/grid_best.yaml`) on every seed, with its ablation.

Each variant trains `configs/toy/grid.yaml` + `configs/experiment/grid_best.yaml` (+ the variant's
changes): the recipe and its ablation (without DRAGAN, without the LR decay) for seeds 0..S-1, the
other variants tried for one seed; then scores 2,500 samples with gan_lightning.metrics.mode_coverage (PacGAN
protocol) twice: from the EMA of G (what `sample` and `evaluate` use) and from the raw G of the same run.
EMA never feeds back into training, so the raw-G score is the "without EMA" ablation at no extra cost.
Finished runs are kept in `<out>/results.json` and not retrained. Writes docs/grid_best.md.

    python benchmarks/grid_best.py --seeds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from common import ROOT, build, load_runs, save_run
from mode_coverage import write_keeping_analysis

from gan_lightning.data.toy2d import MIXTURE_STD, mixture_means
from gan_lightning.metrics import mode_coverage
from gan_lightning.sample import generate

CONFIGS = ["toy/grid.yaml", "experiment/grid_best.yaml"]
NO_DRAGAN = {"--model.regularizers": "[]"}
DECAY = (  # linear LR decay to 0 over the 20,000 G steps, both networks
    ["schedule/linear_decay.yaml"],
    {f"--model.{n}_lr_scheduler.init_args.total_iters": "20000" for n in "gd"},
)
VARIANTS = {  # name: (extra config files, flag overrides, what it is)
    "recipe": ([], {}, "recipe"),
    "no_dragan": ([], NO_DRAGAN, "recipe without the DRAGAN penalty"),
    "decay": (*DECAY, "recipe + LR decayed linearly to 0"),
    "no_dragan+decay": (DECAY[0], {**DECAY[1], **NO_DRAGAN}, "recipe without DRAGAN, + LR decay to 0"),
    # tried before DRAGAN on seed 2, where "no_dragan+decay" keeps 21 modes: each added to it
    "no_dragan+decay+pacgan2": (
        [*DECAY[0], "tricks/pacgan2.yaml"],
        {**DECAY[1], **NO_DRAGAN},
        "without DRAGAN, + LR decay, + PacGAN2",
    ),
    "no_dragan+decay+mbstd": (
        DECAY[0],
        {**DECAY[1], **NO_DRAGAN, "--model.discriminator.init_args.minibatch_std_group": "4"},
        "without DRAGAN, + LR decay, + minibatch std in D (group 4)",
    ),
    "no_dragan+decay+batch512": (
        DECAY[0],
        {**DECAY[1], **NO_DRAGAN, "--data.init_args.batch_size": "512"},
        "without DRAGAN, + LR decay, + batch 512",
    ),
    "no_dragan+decay+latent16": (
        DECAY[0],
        {**DECAY[1], **NO_DRAGAN, "--model.generator.init_args.latent_dim": "16"},
        "without DRAGAN, + LR decay, + 16-d latent (not 2)",
    ),
}
ABLATION = ["recipe", "no_dragan", "decay", "no_dragan+decay"]
TRIED = [v for v in VARIANTS if v.startswith("no_dragan+decay+")]
TARGET = {"modes": 25, "high_quality_pct": 95.0, "reverse_kl": 0.02, "minutes": 10.0}


def score(samples: torch.Tensor) -> dict[str, float]:
    return mode_coverage(samples, mixture_means("grid"), MIXTURE_STD["grid"])


@torch.no_grad()
def raw_generator_samples(module, n: int, seed: int) -> torch.Tensor:
    """n samples from the raw (non-EMA) G, eval mode, latents from a seeded generator."""
    z = module.draw_latents(n, torch.Generator().manual_seed(seed))
    module.generator.eval()
    return module.generator(z.to(module.device)).float().cpu()


def run(variant: str, seed: int, out: Path) -> dict:
    files, overrides, _ = VARIANTS[variant]
    t0 = time.perf_counter()
    cli = build(
        CONFIGS + files,
        {
            **overrides,
            "--seed_everything": str(seed),
            "--trainer.default_root_dir": str(out / f"{variant}-{seed}"),
        },
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    minutes = (time.perf_counter() - t0) / 60
    return {
        "ema": score(generate(cli.model, 2500, seed=1000 + seed)),
        "raw": score(raw_generator_samples(cli.model, 2500, seed=1000 + seed)),
        "minutes": minutes,
        "steps": cli.trainer.global_step,
    }


def meets(m: dict, minutes: float) -> bool:
    return (
        m["modes"] >= TARGET["modes"]
        and m["high_quality_pct"] >= TARGET["high_quality_pct"]
        and m["reverse_kl"] <= TARGET["reverse_kl"]
        and minutes <= TARGET["minutes"]
    )


def rows(name: str, runs: dict[int, dict], which: str) -> list[str]:
    out = []
    for seed, r in runs.items():
        m = r[which]
        ok = "yes" if meets(m, r["minutes"]) else "**no**"
        out.append(
            f"| {name} | {seed} | {m['modes']} | {m['high_quality_pct']:.1f} | {m['reverse_kl']:.3f} "
            f"| {r['minutes']:.1f} | {ok} |"
        )
    return out


def summary(name: str, runs: dict[int, dict], which: str) -> str:
    ms = [r[which] for r in runs.values()]

    def stat(key: str, digits: int, worst: Callable) -> str:
        vals = [m[key] for m in ms if not math.isnan(m[key])]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f} ({worst(vals):.{digits}f})"

    passed = sum(meets(r[which], r["minutes"]) for r in runs.values())
    return (
        f"| {name} | {stat('modes', 1, min)} | {stat('high_quality_pct', 1, min)} "
        f"| {stat('reverse_kl', 3, max)} | {passed}/{len(runs)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 of the recipe and its ablation")
    parser.add_argument("--tried_seed", type=int, default=2, help="the one seed of the other variants tried")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_grid_best")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--doc_only", action="store_true", help="rewrite the doc from the finished runs only")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # small MLPs: threads cost more than they give
    a.out.mkdir(parents=True, exist_ok=True)
    cache = a.out / "results.json"
    results = load_runs(cache)
    plan = [(v, s) for v in ABLATION for s in range(a.seeds)] + [(v, a.tried_seed) for v in TRIED]
    for variant, seed in plan:
        key = f"{variant}/{seed}"
        if key not in results and not a.doc_only:
            results = save_run(cache, key, run(variant, seed, a.out))
        print(key, json.dumps(results.get(key)), flush=True)
    write_doc(results, a, " ".join(x for x in sys.argv[1:] if x != "--doc_only"))


def write_doc(results: dict, a: argparse.Namespace, argv: str) -> None:
    def runs(variant: str, seeds: list[int]) -> dict[int, dict]:
        return {s: results[f"{variant}/{s}"] for s in seeds if f"{variant}/{s}" in results}

    seeds = list(range(a.seeds))
    ablation = [
        (f"{VARIANTS[v][2]}{', raw G (without EMA)' if which == 'raw' else ''}", runs(v, seeds), which)
        for v in ABLATION
        for which in ("ema", "raw")
    ]
    tried = [(VARIANTS[v][2], runs(v, [a.tried_seed]), "ema") for v in ["recipe", "no_dragan+decay", *TRIED]]
    lines = [
        "# A 2D-grid recipe that covers all 25 modes on every seed (DRAGAN 0.1 + EMA of G)",
        "",
        f"Command: `{f'python benchmarks/grid_best.py {argv}'.strip()}` (CPU, one thread; finished runs are "
        "read back from `runs/bench_grid_best/results.json`). Recipe: `--config configs/toy/grid.yaml "
        "--config configs/experiment/grid_best.yaml`: the non-saturating MLP GAN of the toy config (G and "
        "D: 3 hidden layers of 128, 2-d latent, Adam lr 1e-3, betas (0.5, 0.999), batch 256) plus a DRAGAN "
        "penalty of weight 0.1 (k 1, c 0.5: `configs/toy/overrides/dragan.yaml`'s toy weight), 20,000 G "
        "steps at the toy's constant learning rate, samples from an EMA of G (decay 0.999 with its warm-up). "
        "Every row is the EMA G unless it says raw G. Scoring: 2,500 samples, PacGAN protocol (`gan_lightning/metrics/toy2d.py`). Target "
        "on every seed: 25/25 modes, ≥ 95 % high quality, reverse KL ≤ 0.02, ≤ 10 minutes (wall clock "
        "on a shared 2-core machine, build and scoring included). Every seed is reported.",
        "",
        "Raw-G rows score the same runs' non-averaged G: EMA never feeds back into training, so they are "
        "the without-EMA ablation at no extra cost. For scale: 2,500 samples drawn from the mixture itself "
        "have a reverse KL of about (K−1)/(2N) ≈ 0.005 from sampling noise alone.",
        "",
        "<!-- ANALYSIS -->",
        "<!-- /ANALYSIS -->",
        "",
        f"## The recipe and its ablation (seeds 0..{a.seeds - 1}; mean ± std, worst seed in brackets)",
        "",
        "| variant | modes | high-quality % | reverse KL | seeds meeting the target |",
        "|---|---|---|---|---|",
        *[summary(*x) for x in ablation if x[1]],
        "",
        "| variant | seed | modes | high-quality % | reverse KL | minutes | meets target |",
        "|---|---|---|---|---|---|---|",
        *[row for x in ablation for row in rows(*x)],
        "",
        f"## Also tried, on seed {a.tried_seed} only (where the recipe without DRAGAN keeps 21 modes)",
        "",
        "| variant | seed | modes | high-quality % | reverse KL | minutes | meets target |",
        "|---|---|---|---|---|---|---|",
        *[row for x in tried for row in rows(*x)],
        "",
    ]
    path = a.docs / "grid_best.md"
    write_keeping_analysis(path, lines)


if __name__ == "__main__":
    main()
