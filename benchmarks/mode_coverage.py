"""Mode coverage of every loss family on the 2D ring (8 modes) and grid (25 modes).

Each run: `configs/toy/<dataset>.yaml` + `configs/loss/<family>.yaml` (+ `configs/toy/overrides/<family>.yaml`
where the family's image-setting hyperparameters are off for 2D toys), the same generator-step budget,
seeds 0..S-1; then 2,500 samples scored by gan_lightning.metrics.mode_coverage (PacGAN protocol).
A family named `<family>@paper` is run without its toy override (the fragment's paper defaults as is).
Writes docs/mode_coverage.md (mean ± std over seeds, every setting used) and
docs/mode_coverage_<dataset>.png (seed 0). Text between the ANALYSIS markers of an existing
docs/mode_coverage.md is kept.

    python benchmarks/mode_coverage.py --steps 3000 --seeds 3
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from common import ROOT, build

from gan_lightning.data.toy2d import MIXTURE_STD, mixture_means
from gan_lightning.io import atomic_write_text
from gan_lightning.metrics import mode_coverage
from gan_lightning.sample import generate

FAMILIES = [
    "non_saturating",
    "minimax",
    "hinge",
    "lsgan",
    "wgan",
    "wgan_gp",
    "wgan_gp@paper",
    "dragan",
    "dragan@paper",
    "rsgan",
    "ragan",
    "ralsgan",
    "rahinge",
]
PAPER = "@paper"
OVERRIDES = ROOT / "configs/toy/overrides"
ANALYSIS = ("<!-- ANALYSIS -->", "<!-- /ANALYSIS -->")
PUBLISHED = """\
Published, 2,500 samples, same protocol (modes / high-quality % / reverse KL):

| source | dataset | GAN | best reported |
|---|---|---|---|
| VEEGAN Table 1 | ring (8) | 1.0 / 99.3 % / — | VEEGAN 8.0 / 52.9 % |
| VEEGAN Table 1 | grid (25) | 3.3 / 0.5 % / — | VEEGAN 24.6 / 40.0 % |
| PacGAN Table 1 | grid (25) | 17.3 / 94.8 % / 0.70 | PacGAN4 24.8 / 94.3 % / 0.038 |
"""


def configs(dataset: str, name: str) -> list[str]:
    """The config files of one benchmark entry, relative to configs/."""
    family = name.removesuffix(PAPER)
    files = [f"toy/{dataset}.yaml", f"loss/{family}.yaml"]
    if not name.endswith(PAPER) and (OVERRIDES / f"{family}.yaml").is_file():
        files.append(f"toy/overrides/{family}.yaml")
    return files


def run(dataset: str, name: str, seed: int, steps: int, out: Path) -> tuple[dict, torch.Tensor, Any]:
    cli = build(
        configs(dataset, name),
        {
            "--seed_everything": str(seed),
            "--trainer.max_steps": str(steps),
            "--trainer.default_root_dir": str(out / f"{dataset}-{name.replace(PAPER, '-paper')}-{seed}"),
        },
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    samples = generate(cli.model, 2500, seed=1000 + seed)
    return mode_coverage(samples, mixture_means(dataset), MIXTURE_STD[dataset]), samples, cli.config


def _plain(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def describe(ns: Any, every_arg: bool = True) -> str:
    """``Class(arg=value, ...)`` for a class_path/init_args namespace: every argument, or (``every_arg=False``,
    for optimizers) ``lr``, ``betas`` and the arguments that differ from the class defaults."""
    if ns is None:
        return "—"
    if isinstance(ns, list):
        return ", ".join(describe(x, every_arg) for x in ns) or "—"
    module, _, name = ns.class_path.rpartition(".")
    params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    given = vars(ns.init_args) if ns.get("init_args") is not None else {}
    args = [
        f"{k}={_plain(v)}"
        for k, v in given.items()
        if every_arg or k in ("lr", "betas") or k not in params or params[k].default != _plain(v)
    ]
    return f"{name}({', '.join(args)})"


def family_settings(config: Any) -> str:
    m = config.model
    schedule = describe(m.schedule) if m.schedule else "FixedDSteps(d_steps_per_g_step=1)"
    sched = (
        ""
        if m.g_lr_scheduler is None and m.d_lr_scheduler is None
        else (f"; LR schedule G {describe(m.g_lr_scheduler)}, D {describe(m.d_lr_scheduler)}")
    )
    return (
        f"{describe(m.loss)} | {describe(m.regularizers)} | {schedule} "
        f"| G {describe(m.g_optimizer, False)}; D {describe(m.d_optimizer, False)}{sched}"
    )


def common_settings(config: Any) -> str:
    m, d = config.model, config.data.init_args
    ema = "off" if m.ema_decay is None else f"decay {m.ema_decay}"
    return (
        f"G {describe(m.generator)}, D {describe(m.discriminator)}; batch {d.batch_size} real + "
        f"{d.batch_size} fake per D step (a fresh real batch for each D step), {d.num_samples:,} training "
        f"points drawn with the run's seed; update order {m.order}; EMA of G {ema}; no LR schedule unless "
        "listed; optimizer arguments not shown are PyTorch's defaults"
    )


def fmt(values: list[float], digits: int = 1) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "—"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"


def scatter_sheet(samples: dict[str, torch.Tensor], dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(samples)
    cols = 4
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), dpi=80, squeeze=False)
    means = mixture_means(dataset)
    lim = 1.6 if dataset == "ring" else 5.5
    for ax, (name, pts) in zip(axes.flat, samples.items()):
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
        ax.scatter(means[:, 0], means[:, 1], s=20, marker="x", c="red")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=name, aspect="equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def kept_analysis(path: Path) -> list[str]:
    """The hand-written block between the ANALYSIS markers of an existing table, markers included."""
    if not path.is_file():
        return []
    text = path.read_text()
    start, end = text.find(ANALYSIS[0]), text.find(ANALYSIS[1])
    if start < 0 or end < start:
        return []
    return [text[start : end + len(ANALYSIS[1])], ""]


def write_keeping_analysis(path: Path, lines: list[str]) -> None:
    """Write the doc ``lines``, whose empty ANALYSIS marker pair takes the existing doc's hand-written block."""
    analysis = kept_analysis(path)
    if analysis:
        i = lines.index(ANALYSIS[0])
        lines[i : i + 2] = analysis[:1]
    atomic_write_text(path, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="generator steps per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["ring", "grid"])
    parser.add_argument("--families", nargs="+", default=FAMILIES, help=f"add {PAPER} to skip a toy override")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_modes")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # small MLPs: threads cost more than they give
    a.docs.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results: dict = {}
    settings: dict[str, str] = {}
    files: dict[str, list[str]] = {}
    common = ""
    for dataset in a.datasets:
        sheet = {}
        for name in a.families:
            for seed in range(a.seeds):
                t0 = time.perf_counter()
                metrics, samples, config = run(dataset, name, seed, a.steps, a.out)
                metrics["seconds"] = time.perf_counter() - t0
                results.setdefault(dataset, {}).setdefault(name, []).append(metrics)
                print(dataset, name, seed, json.dumps(metrics), flush=True)
                if seed == 0:
                    sheet[name] = samples
                    settings[name] = family_settings(config)
                    files[name] = configs("<dataset>", name)[1:]
                    common = common_settings(config)
        scatter_sheet(sheet, dataset, a.docs / f"mode_coverage_{dataset}.png")
    minutes = (time.perf_counter() - t_start) / 60
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out / "results.json", json.dumps(results, indent=1))
    command = "python benchmarks/mode_coverage.py " + " ".join(sys.argv[1:])
    md = a.docs / "mode_coverage.md"
    lines = [
        "# Mode coverage on the 2D mixtures",
        "",
        f"Command: `{command.strip()}` (CPU, one thread, {minutes:.0f} min in all). Every run: "
        f"{a.steps:,} generator steps, seeds 0..{a.seeds - 1}, `configs/toy/<dataset>.yaml` + the files "
        "listed per family below; then 2,500 samples from G; mean ± std over seeds (every seed is "
        "reported, none is dropped). A sample is high quality within 3σ of its nearest mode; a mode is "
        "covered with at least one high-quality sample; reverse KL = log K − H(histogram of the "
        "high-quality samples over modes), averaged over the seeds that have any. "
        "Implementation: `gan_lightning/metrics/toy2d.py`.",
        "",
        *kept_analysis(md),
    ]
    for dataset, by_family in results.items():
        k = len(mixture_means(dataset))
        lines += [
            f"## {dataset} ({k} modes)",
            "",
            "| family | modes | modes per seed | high-quality % | reverse KL | s/run |",
            "|---|---|---|---|---|---|",
        ]
        for name, runs in by_family.items():
            lines.append(
                f"| {name} | {fmt([r['modes'] for r in runs])} | {', '.join(str(r['modes']) for r in runs)} "
                f"| {fmt([r['high_quality_pct'] for r in runs])} | {fmt([r['reverse_kl'] for r in runs], 2)} "
                f"| {statistics.mean(r['seconds'] for r in runs):.0f} |"
            )
        lines += ["", f"![{dataset}](mode_coverage_{dataset}.png)", ""]
    lines += [
        "## Settings",
        "",
        f"Common (from `configs/toy/<dataset>.yaml`): {common}.",
        "",
        "| family | config files after `toy/<dataset>.yaml` | loss | regularizers | D steps per G step "
        "| optimizers |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {' + '.join(f'`{f}`' for f in files[name])} | {settings[name]} |" for name in files
    ]
    lines += ["", PUBLISHED]
    atomic_write_text(md, "\n".join(lines))


if __name__ == "__main__":
    main()
