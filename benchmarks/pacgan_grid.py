"""PacGAN's 2D-grid experiment in the paper's own setting: the plain GAN against PacGAN2, 3 and 4.

Each run: `configs/toy/grid.yaml` + `configs/model/mlp_pacgan.yaml` + `configs/experiment/pacgan_grid.yaml`
with `--model.pack m` and a batch of 100·m real points, i.e. 100 packed D inputs per step as in the
authors' code, for `--steps` G steps, seeds 0..S-1 (seed-major, so a cut-short study still has every
config on its first seeds). Every steps/evals G steps, 2,500 samples from G on fixed latents per seed are
scored with gan_lightning.metrics.mode_coverage (PacGAN protocol). Finished runs are kept in
`<out>/results.json` and not retrained. Writes docs/pacgan_grid.md and docs/pacgan_grid.png, with the
runs of `--longer` (another --out of this script, e.g. fewer configs for more steps) after the study's;
text between the ANALYSIS markers of an existing doc is kept.

    python benchmarks/pacgan_grid.py --steps 3000 --evals 6 --seeds 3
    python benchmarks/pacgan_grid.py --steps 12000 --evals 12 --seeds 1 --packs 1 4 --out runs/bench_pacgan_grid_long
    python benchmarks/pacgan_grid.py --longer runs/bench_pacgan_grid_long --doc_only
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import lightning as L
import torch
import yaml
from common import ROOT, build, load_runs, save_run
from grid_best import score
from mode_coverage import fmt, write_keeping_analysis

from gan_lightning.data.toy2d import mixture_means
from gan_lightning.sample import generate

CONFIGS = ["toy/grid.yaml", "model/mlp_pacgan.yaml", "experiment/pacgan_grid.yaml"]
PACKED_INPUTS = 100  # D inputs per step (the authors' batch_size); each holds m points
NUM_POINTS = 2500  # samples scored per evaluation (PacGAN protocol)
PAPER_STEPS = 400_000  # 400 epochs of 100,000 packed examples at batch 100
PUBLISHED = {  # PacGAN Table 1, 2D grid, 10 runs: (modes, high-quality %, reverse KL)
    1: ("17.3 ± 0.8", "94.8 %", "0.70"),
    4: ("24.8 ± 0.2", "93.6 %", "0.04"),
}
SETTINGS = (
    "Settings (`--config configs/toy/grid.yaml --config configs/model/mlp_pacgan.yaml --config "
    "configs/experiment/pacgan_grid.yaml`, as in fjxmlzn/PacGAN's `2DGrid_GAN&PacGAN/config.py`): the 25-mode "
    "grid (means {{-4,-2,0,2,4}}², std 0.05, 100,000 training points); G: 2-d N(0, I) latent, 4 hidden "
    "layers of 400 ReLU with BatchNorm; D: 3 hidden layers of 200 maxout units of 5 pieces, on m·2 inputs; "
    "non-saturating loss; Adam(1e-4, betas (0.2, 0.999)) for G and D (the authors' `beta1: 0.8` in Blocks, whose "
    "Adam takes 1 − β: its first moment is 0.8·grad + 0.2·mean); D and G updated together from one "
    "forward of D on [real; fake] (`model.order fused`; the authors' ALI training algorithm, and their D "
    "has no BatchNorm, so it is the simultaneous update); no EMA of G, no LR schedule. **Batch:** 100 D "
    "inputs per step, each m points packed along features, so 100·m real and 100·m fake points per step "
    "(`--data.init_args.batch_size 100·m`): the authors' data stream yields rows of m points and their G is "
    "run m times on 100 latents, so pack 3 needs no rounding. **Budget:** {steps:,} G steps per run "
    "({pct:.2g} % of the paper's 400 epochs × 1,000 steps), scored every {evals_every:,} steps; 2,500 "
    "samples from G (eval mode) on fixed latents per seed; a sample is high quality within 3σ of its "
    "nearest mode, a mode is covered with at least one, reverse KL = log 25 − H(histogram of the "
    "high-quality samples) (`gan_lightning/metrics/toy2d.py`). Every seed is reported."
)
METRICS = [
    ("modes", "modes (of 25)", 1),
    ("high_quality_pct", "high-quality %", 1),
    ("reverse_kl", "reverse KL", 3),
]


def cell(values: list[float], digits: int) -> str:
    """mean ± std over seeds; the value itself for one seed."""
    return f"{values[0]:.{digits}f}" if len(values) == 1 else fmt(values, digits)


def name(pack: int) -> str:
    return "GAN" if pack == 1 else f"PacGAN{pack}"


class ScoreAlongTraining(L.Callback):
    """Scores G every ``every`` G steps on the seed's fixed latents (own generator: the training RNG and
    BatchNorm's running statistics are untouched), with the wall time and the 1-minute load average."""

    def __init__(self, every: int, seed: int) -> None:
        self.every, self.seed = every, seed
        self.evals: list[dict] = []
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        step = trainer.global_step  # G steps
        if step % self.every == 0:
            metrics = score(generate(module, NUM_POINTS, seed=1000 + self.seed))
            minutes = (time.perf_counter() - self.start) / 60
            self.evals.append({"step": step, **metrics, "minutes": minutes, "load": os.getloadavg()[0]})


def run(pack: int, seed: int, steps: int, evals: int, out: Path) -> dict:
    cli = build(
        CONFIGS,
        {
            "--model.pack": str(pack),
            "--data.init_args.batch_size": str(PACKED_INPUTS * pack),
            "--trainer.max_steps": str(steps),
            "--seed_everything": str(seed),
            "--trainer.default_root_dir": str(out / f"{name(pack)}-{seed}"),
        },
    )
    scorer = ScoreAlongTraining(steps // evals, seed)
    cli.trainer.callbacks.append(scorer)
    cli.trainer.fit(cli.model, cli.datamodule)
    samples = generate(cli.model, NUM_POINTS, seed=1000 + seed)
    torch.save(samples, out / f"{name(pack)}-{seed}.pt")  # for the figure
    return {"evals": scorer.evals, "minutes": (time.perf_counter() - scorer.start) / 60}


def shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


@dataclass
class Study:
    """The finished runs in one output folder: ``runs[m]`` holds the seeds' results of pack m."""

    out: Path
    runs: dict[int, list[dict]]

    @classmethod
    def load(cls, out: Path) -> Study:
        results = load_runs(out / "results.json")
        runs: dict[int, list[dict]] = {}
        for key in sorted(results, key=lambda k: tuple(map(int, k.split("/")))):
            runs.setdefault(int(key.split("/")[0]), []).append(results[key])
        return cls(out, runs)

    @cached_property
    def init(self) -> str:
        """The networks' initialization and Adam's betas these runs used, read back from a run's config."""
        run_dir = next(p for p in sorted(self.out.iterdir()) if (p / "config.yaml").is_file())
        model = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
        std = model["generator"]["init_args"].get("init_std")
        momentum = model["generator"]["init_args"].get("bn_momentum", 0.1)
        betas = tuple(model["g_optimizer"]["init_args"]["betas"])
        init = (
            f"PyTorch's default `Linear` init, BatchNorm momentum {momentum}"
            if std is None
            else f"the authors' init (weights N(0, {std}²), biases 0), BatchNorm momentum {momentum}"
        )
        return f"{init}; Adam betas {betas}"

    @property
    def steps(self) -> list[int]:
        return sorted({e["step"] for rs in self.runs.values() for r in rs for e in r["evals"]})

    def at(self, pack: int, step: int) -> list[dict]:
        """Every seed's scores of pack ``pack`` at G step ``step``."""
        return [e for r in self.runs[pack] for e in r["evals"] if e["step"] == step]

    def command(self) -> str:
        """The command that makes this folder (read back from its results)."""
        seeds = max(len(rs) for rs in self.runs.values())
        packs = " ".join(map(str, self.runs))
        steps = self.steps
        return (
            f"python benchmarks/pacgan_grid.py --steps {steps[-1]} --evals {len(steps)} --seeds {seeds} "
            f"--packs {packs} --out {shown(self.out)}"
        )

    def cost(self) -> str:
        minutes = [r["minutes"] for rs in self.runs.values() for r in rs]
        loads = [e["load"] for rs in self.runs.values() for r in rs for e in r["evals"]]
        return (
            f"{len(minutes)} runs, {sum(minutes):.0f} min of wall time in all ({min(minutes):.1f}–"
            f"{max(minutes):.1f} min per run); 1-minute load average of the shared 2-core machine at the "
            f"evaluations {min(loads):.1f}–{max(loads):.1f} (mean {statistics.mean(loads):.1f})"
        )

    def curve_tables(self) -> list[str]:
        lines = []
        for key, label, digits in METRICS:
            lines += [
                f"**{label}**",
                "",
                "| G steps | " + " | ".join(name(p) for p in self.runs) + " |",
                "|---|" + "---|" * len(self.runs),
            ]
            for step in self.steps:
                cells = [cell([e[key] for e in self.at(p, step)], digits) for p in self.runs]
                lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
            lines.append("")
        return lines

    def final_table(self) -> list[str]:
        last = self.steps[-1]
        lines = [
            "| config | modes | modes per seed | high-quality % | high-quality samples per seed | reverse KL "
            f"| Table 1 ({PAPER_STEPS:,} G steps, 10 runs): modes / high quality / reverse KL |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in self.runs:
            final = self.at(p, last)
            lines.append(
                f"| {name(p)} | {cell([e['modes'] for e in final], 1)} | {', '.join(str(e['modes']) for e in final)} "
                f"| {cell([e['high_quality_pct'] for e in final], 1)} "
                f"| {', '.join(str(round(e['high_quality_pct'] * NUM_POINTS / 100)) for e in final)} "
                f"| {cell([e['reverse_kl'] for e in final], 3)} "
                f"| {' / '.join(PUBLISHED[p]) if p in PUBLISHED else '—'} |"
            )
        return [*lines, ""]


def figure(studies: list[Study], path: Path) -> None:
    """Per study, two rows: seed 0's samples at the last step per config; each metric over training,
    mean ± std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 * len(studies), 4, figsize=(13, 3.2 * 2 * len(studies)), dpi=50)
    means = mixture_means("grid")
    for row, study in zip(axes[::2], studies):
        last = study.steps[-1]
        for ax, pack in zip(row, study.runs):
            file = study.out / f"{name(pack)}-0.pt"
            if file.is_file():
                pts = torch.load(file, weights_only=True)
                ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.3, rasterized=True)
            ax.scatter(means[:, 0], means[:, 1], s=12, marker="x", c="red")
            ax.set(
                xlim=(-5.5, 5.5), ylim=(-5.5, 5.5), aspect="equal", title=f"{name(pack)}, seed 0, {last:,}"
            )
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in row[len(study.runs) :]:
            ax.axis("off")
    for row, study in zip(axes[1::2], studies):
        for ax, (key, label, _) in zip(row, METRICS):
            for pack in study.runs:
                vals = [[e[key] for e in study.at(pack, s) if not math.isnan(e[key])] for s in study.steps]
                mean = [statistics.mean(v) if v else math.nan for v in vals]
                sd = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
                ax.errorbar(study.steps, mean, yerr=sd, label=name(pack), capsize=2, marker="o", ms=3)
            seeds = max(len(rs) for rs in study.runs.values())
            ax.set(xlabel="G steps", title=f"{label} ({seeds} seed{'s' if seeds > 1 else ''})")
            if key == "reverse_kl":
                ax.set_yscale("log")
        row[0].legend(fontsize=8)
        row[3].axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="G steps per run")
    parser.add_argument("--evals", type=int, default=6, help="evaluations per run, evenly spaced")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--only_seeds",
        nargs="+",
        type=int,
        help="train just these of the seeds (to share a study between processes)",
    )
    parser.add_argument(
        "--packs", type=int, nargs="+", default=[1, 2, 3, 4], help="m of each config (1: GAN)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_pacgan_grid")
    parser.add_argument(
        "--longer",
        nargs="*",
        type=Path,
        default=[],
        help="the --out of longer runs of this script, shown after",
    )
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--doc_only", action="store_true", help="rewrite the doc from the finished runs only")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # small MLPs: threads cost more than they give
    a.out.mkdir(parents=True, exist_ok=True)
    cache = a.out / "results.json"
    results = load_runs(cache)
    for seed in a.only_seeds if a.only_seeds is not None else range(a.seeds):
        for pack in a.packs:
            key = f"{pack}/{seed}"
            if key not in results and not a.doc_only:
                results = save_run(cache, key, run(pack, seed, a.steps, a.evals, a.out))
            print(key, json.dumps(results.get(key, {}).get("evals", [])[-1:]), flush=True)
    studies = [Study.load(out) for out in (a.out, *a.longer)]
    figure([s for s in studies if s.init == studies[0].init], a.docs / "pacgan_grid.png")  # one init
    write_doc(studies, a)


def write_doc(studies: list[Study], a: argparse.Namespace) -> None:
    study = studies[0]
    packs = "/".join(str(p) for p in study.runs if p > 1)
    seeds = max(len(rs) for rs in study.runs.values())
    lines = [
        f"# PacGAN's 2D grid in the paper's setting: GAN vs PacGAN{packs}",
        "",
        f"Command: `{study.command()}`{''.join(f' then `{s.command()}`' for s in studies[1:])}; the doc "
        f"and figure: the first command with `--longer {' '.join(str(shown(s.out)) for s in studies[1:])} "
        "--doc_only`. CPU, one thread, "
        f"sharing the machine with other jobs (the load below says how much). {study.cost()}. Init: {study.init}.",
        "",
        SETTINGS.format(
            steps=study.steps[-1],
            evals_every=study.steps[0],
            pct=100 * study.steps[-1] / PAPER_STEPS,
        ),
        "",
        "<!-- ANALYSIS -->",
        "<!-- /ANALYSIS -->",
        "",
        f"## Over training (mean ± std over seeds 0..{seeds - 1}; 2,500 samples from G at each step)",
        "",
        *study.curve_tables(),
        "![samples of seed 0 at the last step, and the metrics over training](pacgan_grid.png)",
        "",
        f"## At the last step ({study.steps[-1]:,} G steps) beside PacGAN's Table 1",
        "",
        *study.final_table(),
    ]
    for longer in studies[1:]:
        n = max(len(rs) for rs in longer.runs.values())
        lines += [
            f"## {' vs '.join(name(p) for p in longer.runs)} for {longer.steps[-1]:,} G steps "
            f"({n} seed{'s' if n > 1 else ''}; {100 * longer.steps[-1] / PAPER_STEPS:.2g} % of the paper's"
            f"{'' if longer.init == study.init else '; ' + longer.init})",
            "",
            f"`{longer.command()}`: {longer.cost()}. Init: {longer.init}. "
            + (
                f"Same settings; the first {study.steps[-1]:,} steps of each seed are the same run as above "
                "(same seed, same draws)."
                if longer.init == study.init
                else "Otherwise the same settings as above. These runs predate the current configs: to rerun them, "
                "set the init and betas above in `configs/model/mlp_pacgan.yaml` and "
                "`configs/experiment/pacgan_grid.yaml`."
            ),
            "",
            *longer.curve_tables(),
            *longer.final_table(),
        ]
    path = a.docs / "pacgan_grid.md"
    write_keeping_analysis(path, lines)


if __name__ == "__main__":
    main()
