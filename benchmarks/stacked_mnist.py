"""Stacked MNIST (1000 modes): distinct digit triples among 26,000 samples, and the KL of their
histogram to uniform (VEEGAN / PacGAN protocol), for the plain DCGAN against PacGAN2 and minibatch-std,
at equal G steps, with D at G's width and in PacGAN's Table 3 setting (D at a quarter of G's width).

    python benchmarks/stacked_mnist.py --steps 5000 --seeds 2                 # every run, one after another
    python benchmarks/stacked_mnist.py --steps 5000 --seeds 2 --variants plain --d_widths 8   # a share
    python benchmarks/stacked_mnist.py --steps 5000 --seeds 2 --only_seeds 1                  # another
    python benchmarks/stacked_mnist.py --steps 5000 --seeds 2 --doc_only      # the doc from what is done
    python benchmarks/stacked_mnist.py --steps 30000 --keep_checkpoints --out runs/bench_stacked_30k ...
    python benchmarks/stacked_mnist.py --steps 40000 --extend runs/bench_stacked_30k --out runs/bench_stacked_40k

Each run is `configs/stacked_mnist.yaml` (DCGAN, G width 32) plus the variant's flags, trained for
``--steps`` generator steps; the modes are counted by its metrics callback (the digit classifier on each
channel) on the final EMA generator. Finished runs are kept in ``<out>/results.json`` and not retrained,
so several processes can share the study (each with its own ``--variants``/``--d_widths``). Writes
docs/stacked_mnist.md and docs/stacked_mnist_grid.png (plain, seed 0, full-width D); text between the
ANALYSIS markers of an existing doc is kept.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from pathlib import Path

import torch
import yaml
from common import ROOT, build, load_runs, save_run
from mode_coverage import ANALYSIS, write_keeping_analysis

from gan_lightning.callbacks import save_grid
from gan_lightning.checkpoints import warm_start
from gan_lightning.data.stacked import StackedDigits
from gan_lightning.metrics import DigitFeatures
from gan_lightning.metrics.cache import extract
from gan_lightning.metrics.features import class_coverage
from gan_lightning.sample import load_module

G64 = {"--model.generator.init_args.width": "64"}  # G twice as wide as the config's (D stays at --d_widths)
VARIANTS: dict[str, dict[str, str]] = {
    "plain": {},
    "pacgan2": {"--model.pack": "2"},  # D sees 2 samples along channels (6 input channels)
    "mbstd": {"--model.discriminator.init_args.minibatch_std_group": "4"},
    "g64": G64,
    # the wider G with minibatch-std in D: the trick at the budget where the plain recipe is closest
    "g64_mbstd": {
        **G64,
        "--model.discriminator.init_args.minibatch_std_group": "4",
    },
    # the wider G with least squares in the paper's (-1, 1, 0) coding: G minimizes Pearson chi^2(p_d + p_g
    # || 2 p_g) = integral (p_d - p_g)^2 / (2 p_g), which punishes a digit G draws too rarely harder than
    # the non-saturating loss's reverse-KL-like objective does
    "g64_lsgan": {
        **G64,
        "--model.loss": '{"class_path": "gan_lightning.losses.LeastSquares", "init_args": {"a": -1, "b": 1, "c": 0}}',
    },
}
# the 5,000-step study (the default, and what --doc_only tabulates); the rest run only when named
STUDY = ["plain", "pacgan2", "mbstd", "g64"]
G_WIDTH = 32
# --finetune: a new run from a longer study's checkpoint (fit --init_from), with one setting changed
FINETUNES: dict[str, tuple[list[str], dict[str, str]]] = {
    "ema_0.9999": ([], {"--model.ema_decay": "0.9999"}),  # the EMA averages over ~10,000 G steps, not ~1,000
    "lr_decay": (["schedule/linear_decay.yaml"], {}),  # both learning rates decay linearly to 0
    "d_steps_2": (["schedule/d_steps_2.yaml"], {}),  # 2 D steps per G step: D nearer its optimum
}
PUBLISHED = """\
Published (26,000 samples, modes out of 1000 / KL to uniform):

| source | model | modes | KL |
|---|---|---|---|
| VEEGAN Table 2 | DCGAN | 99 | 3.4 |
| VEEGAN Table 2 | VEEGAN | 150 | 2.95 |
| PacGAN Table 2 | DCGAN | 78.9 ± 6.5 | — |
| PacGAN Table 2 | PacDCGAN2 | 1000 | 0.06 |

PacGAN's Table 3 weakens D to a quarter of G's size, where its plain DCGAN loses many modes and the
packed ones do not; its numbers are not reproduced here (not checked against the paper from this machine).
"""


def key(variant: str, d_width: int, seed: int, finetune: str | None = None) -> str:
    """A run's name in results.json and its folder; a fine-tune is named after its arm too."""
    return f"{variant}{f'+{finetune}' if finetune else ''}/d{d_width}/seed{seed}"


def run(
    variant: str,
    d_width: int,
    seed: int,
    steps: int,
    out: Path,
    num_fake: int,
    keep: bool = False,
    resume: Path | None = None,
    finetune: str | None = None,
) -> tuple[dict, object]:
    """Train one run and score its final EMA G. ``keep``: leave ``checkpoints/last.ckpt`` in its folder;
    ``resume``: continue that checkpoint of a shorter run (resuming is bitwise the same run, so this is
    the longer run itself, minus the steps already paid for); with ``finetune`` (a FINETUNES arm),
    ``resume`` is instead where a new run takes its weights from (``fit --init_from``)."""
    keeping = {"--checkpoint.save_last": "true"} if keep else {}
    configs, changes = FINETUNES[finetune] if finetune else ([], {})
    if finetune == "lr_decay":  # to 0 at the end of this run
        changes = {f"--model.{n}_lr_scheduler.init_args.total_iters": str(steps) for n in ("g", "d")}
    cli = build(
        ["stacked_mnist.yaml", *configs],
        {
            "--seed_everything": str(seed),
            "--trainer.max_steps": str(steps),
            "--trainer.default_root_dir": str(out / key(variant, d_width, seed, finetune)),
            "--model.discriminator.init_args.width": str(d_width),
            "--metrics.num_fake": str(num_fake),
            **VARIANTS[variant],
            **keeping,
            **changes,
        },
    )
    if finetune:
        warm_start(cli.model, resume)
        resume = None
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=resume)
    metrics = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "GANMetrics")
    results = metrics.evaluate(cli.model, cli.datamodule)  # the final (EMA) G
    return results, cli.model.sample(cli.model.fixed_noise).cpu()


def real_triples(num: int, seed: int = 0) -> torch.Tensor:
    """The triples the classifier reads from ``num`` random training images. Their modes and KL are the
    floor: what a generator that sampled the training set itself would score (sampling noise plus the
    classifier's errors)."""
    train = StackedDigits().build("train")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:num]
    return extract(train, idx, DigitFeatures(channels=3), 1000, torch.device("cpu"))[1].argmax(1)


def channels(triples: torch.Tensor) -> dict:
    """Where a triple histogram's KL comes from: each channel's digit frequencies and their KL to
    uniform over 10 (for independent channels, the triple KL is their sum plus the sampling noise)."""
    digits = [triples // 100, triples // 10 % 10, triples % 10]
    freqs = [(torch.bincount(d, minlength=10).double() / len(d)).tolist() for d in digits]
    return {
        "kl": class_coverage(triples, 1000)["mode_kl"],
        "channel_kl": [class_coverage(d, 10)["mode_kl"] for d in digits],
        "freqs": freqs,
    }


def read_samples(module, num: int, score=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The triples the classifier reads from the ``num`` samples of the module's EMA G that the metrics
    callback scored (the same latents: drawn at once from its default seed, 0), and ``score`` of each
    sample (flattened) when a scorer is given (benchmarks/stacked_drs.py passes D)."""
    classifier, triples, scores = DigitFeatures(channels=3), [], []
    z = module.draw_latents(num, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for part in z.split(1000):
            x = module.sample(part)
            triples.append(classifier(x)[1].argmax(1))
            if score is not None:
                scores.append(score(x).flatten())
    return torch.cat(triples), torch.cat(scores) if score is not None else None


def sampled_triples(ckpt: Path, num: int) -> torch.Tensor:
    """:func:`read_samples`' triples for a checkpoint."""
    return read_samples(load_module(ckpt), num)[0]


def channel_table(outs: list[Path], num: int, real: torch.Tensor) -> list[str]:
    """Per-channel digit frequencies of every kept checkpoint in ``outs`` (cached in <out>/channels.json)."""
    rows = [("real training triples", channels(real))]
    for out in outs:
        cache = load_runs(out / "channels.json")
        for k, row in load_runs(out / "results.json").items():
            ckpt = out / k / "checkpoints/last.ckpt"
            if k not in cache and ckpt.is_file():
                cache = save_run(out / "channels.json", k, channels(sampled_triples(ckpt, num)))
            if k in cache:
                steps = run_steps(out, k, row)
                rows.append((f"{k.split('/')[0]}, seed {k.split('/')[-1][4:]}, {steps:,} G steps", cache[k]))
    if len(rows) == 1:
        return []

    def freq(f: list[float]) -> str:
        return " / ".join(f"{100 * x:.1f}" for x in f)

    return [
        "## Where the KL comes from",
        "",
        f"The {num:,} samples the metrics scored, for each run that kept its checkpoint",
        "(`--keep_checkpoints`), read again by the classifier: each channel's digit frequencies (R / G / B, %)",
        "and their KL to uniform over 10. Were the channels independent, the triple KL would be the sum of",
        "the three plus the sampling noise and classifier errors that the real row shows.",
        "",
        "| samples | triple KL | channel KLs (sum) | digit 1 | digit 7 | digit 9 |",
        "|---|---|---|---|---|---|",
        *[
            f"| {name} | {c['kl']:.3f} | {' + '.join(f'{x:.4f}' for x in c['channel_kl'])} = "
            f"{sum(c['channel_kl']):.3f} | {freq([f[1] for f in c['freqs']])} | "
            f"{freq([f[7] for f in c['freqs']])} | {freq([f[9] for f in c['freqs']])} |"
            for name, c in rows
        ],
        "",
    ]


def mean_sd(vals: list[float], digits: int) -> str:
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"


def doc(done: dict, a: argparse.Namespace, real: torch.Tensor) -> list[str]:
    floor = class_coverage(real, 1000)
    lines = [
        "# Stacked MNIST: plain DCGAN against PacGAN2 and minibatch-std",
        "",
        f"Command: `python benchmarks/stacked_mnist.py --steps {a.steps} --seeds {a.seeds} --num_fake {a.num_fake}`"
        " (CPU; the runs can be shared",
        "between processes with `--variants` / `--d_widths` / `--only_seeds`, then `--doc_only`"
        + (f" `--longer {' '.join(str(p) for p in a.longer)}`" if a.longer else "")
        + "). Each run is",
        f"`configs/stacked_mnist.yaml` (DCGAN, G width {G_WIDTH}, non-saturating loss, EMA of G, batch 64) for",
        f"{a.steps} generator steps, with: plain; PacGAN2 (`--model.pack 2`, the config",
        "`configs/experiment/stacked_mnist_pacgan.yaml`); minibatch-std (group 4, before D's last layer,",
        f"`--model.discriminator.init_args.minibatch_std_group 4`). Each of the {a.num_fake:,} samples of the final",
        "EMA generator gets the digit triple that the classifier (`gan_lightning.metrics.DigitFeatures`,",
        "99.0 % on held-out digits) reads from its three channels; modes = distinct triples,",
        "KL = KL(triple histogram || uniform over 1000). Target for the best config: 1000 modes, KL ≤ 0.05.",
        "",
        f"**The floor:** {a.num_fake:,} random training triples, read by the same classifier, score"
        f" {floor['modes']} modes and KL {floor['mode_kl']:.3f}: what a generator that sampled the training set"
        " itself would score (sampling noise and the classifier's errors).",
        "",
    ]
    for d_width in a.d_widths:
        title = "D at G's width" if d_width == G_WIDTH else f"D at width {d_width} (PacGAN's Table 3 setting)"
        lines += [
            f"## {title}",
            "",
            "| config | seed | modes (of 1000) | KL | classifier-FID (3 channels) | minutes |",
            "|---|---|---|---|---|---|",
        ]
        summary = []
        for variant in a.variants:
            rows = [done[k] for s in range(a.seeds) if (k := key(variant, d_width, s)) in done]
            for s in range(a.seeds):
                r = done.get(key(variant, d_width, s))
                if r is not None:
                    lines.append(
                        f"| {variant} | {s} | {r['digit_modes']:.0f} | {r['digit_mode_kl']:.3f} | "
                        f"{r['digit_fid']:.2f} | {r['seconds'] / 60:.1f} |"
                    )
            if rows:
                summary.append(
                    f"| {variant} | {len(rows)} | {mean_sd([r['digit_modes'] for r in rows], 1)} | "
                    f"{mean_sd([r['digit_mode_kl'] for r in rows], 3)} | {mean_sd([r['digit_fid'] for r in rows], 2)} |"
                )
        lines += [
            "",
            "| config | seeds | modes | KL | classifier-FID |",
            "|---|---|---|---|---|",
            *summary,
            "",
        ]
    return [
        *lines,
        *longer(a.longer),
        *channel_table(a.longer, a.num_fake, real),
        "![samples: plain DCGAN, seed 0](stacked_mnist_grid.png)",
        "",
        *ANALYSIS,
        "",
        PUBLISHED,
    ]


def run_steps(out: Path, k: str, row: dict) -> int:
    """The G steps behind run ``k`` of study ``out`` (its results ``row``): recorded since fine-tunes
    (theirs plus the shorter run's), else the max_steps its config trained to."""
    if "g_steps" in row:
        return int(row["g_steps"])
    return yaml.safe_load((out / k / "config.yaml").read_text())["trainer"]["max_steps"]


def longer(outs: list[Path]) -> list[str]:
    """The runs of other ``--out`` folders (longer budgets), each with the G steps its config trained."""
    rows = []
    for out in outs:
        for k, r in load_runs(out / "results.json").items():
            steps = run_steps(out, k, r)
            variant, d, seed = k.split("/")
            rows.append(
                (
                    steps,
                    k,
                    f"| {steps:,} | {variant} | {d[1:]} | {seed[4:]} | {r['digit_modes']:.0f} | "
                    f"{r['digit_mode_kl']:.3f} | {r['digit_fid']:.2f} | {r['seconds'] / 60:.1f} | `{out.name}` |",
                )
            )
    if not rows:
        return []
    return [
        "## Longer budgets",
        "",
        "| G steps | config | D width | seed | modes | KL | classifier-FID | minutes | folder |",
        "|---|---|---|---|---|---|---|---|---|",
        *[row for *_, row in sorted(rows)],
        "",
    ]


def writes_doc(a: argparse.Namespace, default_out: Path) -> bool:
    """Whether this invocation rewrites the doc: for the doc's own study (the default ``--out``), for
    ``--doc_only``, or when ``--docs`` is named. A side study (a longer budget or a fine-tune in another
    ``--out``) holds a few rows, and writing them would replace the doc's tables with those rows."""
    return a.doc_only or a.write_doc or a.out == default_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--only_seeds",
        nargs="+",
        type=int,
        help="train just these of the seeds (to share a study between processes)",
    )
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=STUDY)
    parser.add_argument("--d_widths", nargs="+", type=int, default=[G_WIDTH, G_WIDTH // 4])
    parser.add_argument("--num_fake", type=int, default=26000, help="samples whose triples are counted")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_stacked")
    parser.add_argument(
        "--docs",
        type=Path,
        help="where stacked_mnist.md goes (default docs/, written only for the doc's own study: see writes_doc)",
    )
    parser.add_argument("--doc_only", action="store_true", help="write the doc from the finished runs")
    parser.add_argument(
        "--keep_checkpoints",
        action="store_true",
        help="leave each run's checkpoints/last.ckpt, so a longer budget can continue it (--extend)",
    )
    parser.add_argument(
        "--extend",
        type=Path,
        help="an --out folder of shorter runs made with --keep_checkpoints: continue each from there",
    )
    parser.add_argument(
        "--finetune",
        choices=list(FINETUNES),
        help="with --extend: a new run from each checkpoint's weights with this change, for --steps more",
    )
    parser.add_argument(
        "--longer",
        nargs="*",
        type=Path,
        default=[],
        help="other --out folders (longer budgets) to list in the doc",
    )
    a = parser.parse_args()
    a.write_doc, a.docs = a.docs is not None, a.docs or ROOT / "docs"
    if a.finetune and a.extend is None:
        parser.error("--finetune starts from the checkpoints of an --extend folder: give one")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    results = a.out / "results.json"
    done = load_runs(results)
    seeds = [] if a.doc_only else (a.only_seeds if a.only_seeds is not None else range(a.seeds))
    for seed in seeds:  # seed-major: a cut-short study has every config
        for d_width in a.d_widths:
            for variant in a.variants:
                name = key(variant, d_width, seed, a.finetune)
                if name in done:
                    continue
                t0, before, resume, g_steps = time.perf_counter(), 0.0, None, a.steps
                if a.extend is not None:  # minutes stay those of the whole run: the shorter one's, plus these
                    shorter_key = key(variant, d_width, seed)
                    shorter = load_runs(a.extend / "results.json")[shorter_key]
                    before = shorter["seconds"]
                    resume = a.extend / shorter_key / "checkpoints/last.ckpt"
                    if a.finetune:  # a new run of --steps: the G steps add up
                        g_steps += run_steps(a.extend, shorter_key, shorter)
                row, grid = run(
                    variant, d_width, seed, a.steps, a.out, a.num_fake, a.keep_checkpoints, resume, a.finetune
                )
                seconds = before + time.perf_counter() - t0
                row = {k: float(v) for k, v in row.items()} | {"seconds": seconds, "g_steps": g_steps}
                done = save_run(results, name, row)
                print(name, row, flush=True)
                if (variant, d_width, seed, a.finetune) == ("plain", G_WIDTH, 0, None):
                    save_grid(grid, a.docs / "stacked_mnist_grid.png")
    if a.doc_only:
        a.variants, a.d_widths = STUDY, [G_WIDTH, G_WIDTH // 4]  # the whole study
    lines = doc(done, a, real_triples(a.num_fake))
    print("\n".join(lines))
    if writes_doc(a, parser.get_default("out")):
        write_keeping_analysis(a.docs / "stacked_mnist.md", lines)
    else:
        print(
            f"\nnot written to {a.docs / 'stacked_mnist.md'}: --out is a side study (name --docs to write it)"
        )


if __name__ == "__main__":
    main()
