"""Class-conditional DCGAN on the embedded digits: does G draw the digit it is asked for?

Trains `configs/quickstart.yaml` + `configs/experiment/conditional_digits.yaml` (conditional BatchNorm
in G, projection D), then scores the EMA G with gan_lightning.metrics.conditional and the offline digit
classifier (gan_lightning.metrics.digits): agreement (the fraction of the samples generated for class k
that the classifier labels k) and intra-FID (classifier-FID within each class, against the training
digits of that class), per class, ``--per_class`` samples each; and the class-balanced digit FID/KID/IS
of GANMetrics. Writes docs/conditional_digits.md and docs/conditional_digits_grid.png (one row per class).

    python benchmarks/conditional_digits.py
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import torch
from common import ROOT, build
from mode_coverage import ANALYSIS, kept_analysis

from gan_lightning.callbacks import save_grid
from gan_lightning.data.base import to_unit_range
from gan_lightning.io import atomic_write_text
from gan_lightning.metrics.conditional import conditional_scores
from gan_lightning.metrics.digits import DigitFeatures

CONFIGS = ["quickstart.yaml", "experiment/conditional_digits.yaml"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="G steps (default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per_class", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_conditional_digits")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--doc_only", action="store_true", help="rewrite the doc from <out>/results.json")
    a = parser.parse_args()
    grid = a.docs / "conditional_digits_grid.png"
    if a.doc_only:
        record = json.loads((a.out / "results.json").read_text())
        write_doc(record, a, grid, record["num_real"])
        return
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # a shared CPU: one thread, as the other benchmarks
    overrides = {"--seed_everything": str(a.seed), "--trainer.default_root_dir": str(a.out)}
    if a.steps is not None:
        overrides["--trainer.max_steps"] = str(a.steps)
    t0 = time.perf_counter()
    cli = build(CONFIGS, overrides)
    cli.trainer.fit(cli.model, cli.datamodule)
    train_minutes = (time.perf_counter() - t0) / 60
    model = cli.model.eval()
    a.docs.mkdir(parents=True, exist_ok=True)
    save_grid(model.sample(model.fixed_noise, model.fixed_labels).cpu(), grid)

    real = cli.datamodule.build("train")
    t1 = time.perf_counter()
    scores = conditional_scores(
        model,
        DigitFeatures(),
        to_unit_range(real.data),
        real.labels,
        per_class=a.per_class,
        seed=1000 + a.seed,
    )
    metrics = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "GANMetrics")
    overall = metrics.evaluate(model, cli.datamodule)
    eval_minutes = (time.perf_counter() - t1) / 60
    record = {**scores, "overall": overall, "train_minutes": train_minutes, "eval_minutes": eval_minutes}
    record.update(steps=cli.trainer.global_step, num_real=len(real), command=command_line())
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out / "results.json", json.dumps(record, indent=1))
    print(json.dumps(record), flush=True)
    write_doc(record, a, grid, len(real))


def command_line() -> str:
    return ("python benchmarks/conditional_digits.py " + " ".join(sys.argv[1:])).strip()


def write_doc(r: dict, a: argparse.Namespace, grid: Path, num_real: int) -> None:
    command = r.get("command", "python benchmarks/conditional_digits.py")
    per_real = num_real // 10
    rows = [
        f"| {k} | {100 * agree:.1f} | {fid:.2f} |"
        for k, (agree, fid) in enumerate(zip(r["agreement_per_class"], r["intra_fid_per_class"]))
    ]
    o = r["overall"]
    lines = [
        "# Class-conditional digits: agreement and intra-FID",
        "",
        f"Command: `{command}` (CPU, one thread; training {r['train_minutes']:.1f} min, scoring "
        f"{r['eval_minutes']:.1f} min). Model: `--config configs/quickstart.yaml --config "
        "configs/experiment/conditional_digits.yaml`: DCGAN width 32 with conditional BatchNorm in G and "
        f"a projection D (Miyato & Koyama 2018), non-saturating loss, EMA of G, {r['steps']:,} G steps, "
        f"seed {a.seed}, on the embedded digits' train split ({num_real:,} digits, about {per_real} per class).",
        "",
        f"Scoring (`gan_lightning/metrics/conditional.py`): {a.per_class:,} samples from the EMA G for each "
        "class, labelled by the offline digit classifier (`gan_lightning/metrics/digits.py`, 99 % on held-out "
        "digits). *Agreement*: the fraction of class-k samples the classifier labels k. *Intra-FID*: the "
        "classifier-feature FID (128-d) between the class-k samples and the class-k training digits, then "
        "the mean over classes. Intra-FID is on the classifier's features, not Inception's, so compare it only "
        "with other digit-classifier FIDs here (e.g. `docs/quickstart_metrics.md`).",
        "",
        f"**Overall agreement: {100 * r['agreement']:.1f} %** (target ≥ 95 %). "
        f"**Mean intra-FID: {r['intra_fid']:.2f}.**",
        "",
        *(kept_analysis(a.docs / "conditional_digits.md") or [ANALYSIS[0], ANALYSIS[1], ""]),
        "| class | agreement % | intra-FID |",
        "|---|---|---|",
        *rows,
        "",
        f"Class-balanced, all classes pooled (GANMetrics, {o.get('digit_modes', float('nan')):.0f} classes "
        f"covered): digit FID {o.get('digit_fid', float('nan')):.2f}, KID {o.get('digit_kid', float('nan')):.4f}, "
        f"IS {o.get('digit_is', float('nan')):.2f}.",
        "",
        f"Samples (one row per class, 0 to 9; `{grid.relative_to(ROOT) if grid.is_relative_to(ROOT) else grid}`):",
        "",
        f"![conditional digits]({grid.name})",
        "",
    ]
    atomic_write_text(a.docs / "conditional_digits.md", "\n".join(lines))


if __name__ == "__main__":
    main()
