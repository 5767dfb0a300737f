"""The framework tax: the project's ``fit`` against a plain PyTorch loop of the same GAN, in one process.

    python benchmarks/overhead.py --steps 300 --rounds 5 --threads 1

For each model (the quickstart DCGAN at batch 64; the 2D grid MLP of ``configs/toy/grid.yaml`` at batch
256) and each order (D-first, simultaneous), both loops train the same networks (one copy of the
CLI-built G and D each), with the same loss (non-saturating), optimizers, EMA, batch and order:

* **project**: ``Trainer.fit`` of the CLI-built module, validation, sample grids and checkpoints off,
  a CSV logger at the config's ``log_every_n_steps``, the default callbacks (health monitor included);
* **plain**: a hand-written loop over the same in-memory tensors (already in [-1, 1]), a random
  permutation per epoch, ``torch.randn`` noise, ``zero_grad``/``backward``/``step``.

* **floor**: Lightning alone, a bare Trainer fitting a module whose step moves two scalars (same data
  module and order): the per-step cost any loop inside Lightning pays, so plain / (plain + floor) is
  the best ratio this design can reach.

Rounds are interleaved (project, plain, floor, next model, ...) so that drift in the machine's load hits
them alike; each timing starts after ``--warmup`` steps and ends with the last training step. The ratio is project / plain throughput per round;
the table gives the median. ``--profile`` adds a cProfile summary of one project run per row: the
functions where the time per G step goes, outside the networks' own forward and backward.
Writes docs/overhead.md.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import logging
import os
import platform
import pstats
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from common import ROOT, build
from mode_coverage import ANALYSIS, write_keeping_analysis
from throughput import Timer
from torch.optim.swa_utils import AveragedModel

from gan_lightning.module import ema_with_warmup

MODELS: dict[str, tuple[list[str], dict[str, str]]] = {
    "quickstart DCGAN, batch 64": (["quickstart.yaml"], {}),
    "2D grid MLP, batch 256": (["toy/grid.yaml"], {}),
}
# the MLP's step is ~30x shorter than the DCGAN's: more steps give its timing the same precision
STEPS_FACTOR = {"quickstart DCGAN, batch 64": 1, "2D grid MLP, batch 256": 5}
ORDERS = ["d_first", "simultaneous"]


def _cli(model: str, order: str, max_steps: int, log_dir: str):
    configs, overrides = MODELS[model]
    return build(
        configs,
        {
            **overrides,
            "--model.order": order,
            "--trainer.max_steps": str(max_steps),
            "--trainer.accelerator": "cpu",
            "--trainer.default_root_dir": log_dir,
            "--trainer.logger": "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir": log_dir,
            "--trainer.val_check_interval": "null",
            "--trainer.check_val_every_n_epoch": "null",
            "--samples.every_n_steps": "0",  # grids and checkpoints are not training steps: off
            "--checkpoint.every_n_train_steps": "0",
        },
        trainer_defaults={"callbacks": []},
    )


def project_rate(
    model: str, order: str, steps: int, warmup: int, profile: cProfile.Profile | None = None
) -> tuple[float, float]:
    """Generator steps per second of the project's fit, after ``warmup`` steps (under ``profile``), and
    the ms per G step spent inside the module's ``training_step`` (the GAN step with its backward and
    optimizer calls); the rest is Lightning's per-batch loop, the callbacks and the loggers."""
    with tempfile.TemporaryDirectory() as log_dir:
        cli = _cli(model, order, steps + warmup, log_dir)
        timer = Timer(warmup)
        cli.trainer.callbacks.append(timer)
        module, inside = cli.model, [0.0]
        step = module.training_step

        def timed_step(*args):
            start = time.perf_counter()
            step(*args)
            if module.global_step > warmup:  # the same steps as the Timer's
                inside[0] += time.perf_counter() - start

        module.training_step = timed_step  # an instance attribute: Lightning calls it in the method's place
        if profile is None:
            cli.trainer.fit(module, cli.datamodule)
        else:
            profile.runcall(cli.trainer.fit, module, cli.datamodule)
    return timer.steps / timer.seconds, 1e3 * inside[0] / timer.steps


class FloorModule(L.LightningModule):
    """Lightning's own per-step cost: a manual-optimization step that only moves two scalars, one
    optimizer each, in the row's order (two backwards for D-first, one for the joint orders)."""

    def __init__(self, order: str) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.order = order
        self.g, self.d = torch.nn.Parameter(torch.zeros(())), torch.nn.Parameter(torch.zeros(()))

    def configure_optimizers(self):
        return [torch.optim.SGD([self.g], lr=0.0), torch.optim.SGD([self.d], lr=0.0)]

    def training_step(self, batch, batch_idx) -> None:
        g_opt, d_opt = self.optimizers()
        if self.order == "d_first":
            self.manual_backward(2.0 * self.d)
            d_opt.step()
            self.manual_backward(2.0 * self.g)
            g_opt.step()
        else:
            self.manual_backward(2.0 * self.d + 2.0 * self.g)
            d_opt.step()
            g_opt.step()


def floor_ms(model: str, order: str, steps: int, warmup: int) -> float:
    """ms per step of :class:`FloorModule` on the row's data module, in a bare Trainer (no logger, no
    callbacks but the timer): what any Lightning loop pays per step before the GAN does anything."""
    with tempfile.TemporaryDirectory() as log_dir:
        datamodule = _cli(model, order, 1, log_dir).datamodule
        timer = Timer(warmup)
        trainer = L.Trainer(
            max_steps=steps + warmup,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            default_root_dir=log_dir,
        )
        trainer.fit(FloorModule(order), datamodule)
    return 1e3 * timer.seconds / timer.steps


class PlainLoop:
    """The same GAN as a researcher's own loop: no framework, nothing logged."""

    def __init__(self, model: str, order: str) -> None:
        with tempfile.TemporaryDirectory() as log_dir:
            cli = _cli(model, order, 1, log_dir)
        module, dm = cli.model, cli.datamodule
        dm.setup("fit")
        data = dm.splits["train"].data
        self.data = data.float() / 127.5 - 1.0 if data.dtype == torch.uint8 else data.float()
        self.batch, self.order = dm.batch_size, order
        self.g, self.d = copy.deepcopy(module.generator), copy.deepcopy(module.discriminator)
        self.g_opt, self.d_opt = (
            module._g_opt_factory(self.g.parameters()),
            module._d_opt_factory(self.d.parameters()),
        )
        decay = module.hparams.ema_decay
        self.ema = (
            None
            if decay is None
            else AveragedModel(self.g, multi_avg_fn=ema_with_warmup(decay), use_buffers=True)
        )
        self.latent_dim, self.perm, self.pos = module.latent_dim, torch.randperm(len(self.data)), 0

    def real(self) -> torch.Tensor:
        if self.pos + self.batch > len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.data)), 0
        idx = self.perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return self.data[idx]

    def step(self) -> None:
        real, n = self.real(), self.batch
        if self.order == "d_first":
            with torch.no_grad():
                fake = self.g(torch.randn(n, self.latent_dim))
            d_loss = F.softplus(-self.d(real)).mean() + F.softplus(self.d(fake)).mean()
            self.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_opt.step()
            g_loss = F.softplus(-self.d(self.g(torch.randn(n, self.latent_dim)))).mean()
            self.g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            self.g_opt.step()
        else:  # one backward: D's loss on the detached fakes, G's through D held fixed (stop-gradient)
            fake = self.g(torch.randn(n, self.latent_dim))
            real_out, fake_sg, fake_out = self.d(real), self.d(fake.detach()), self.d(fake)
            d_loss = F.softplus(-real_out).mean() + F.softplus(fake_sg).mean()
            g_term = F.softplus(-fake_out).mean() - F.softplus(-fake_sg).mean()
            self.d_opt.zero_grad(set_to_none=True)
            self.g_opt.zero_grad(set_to_none=True)
            (d_loss + g_term).backward()
            self.d_opt.step()
            self.g_opt.step()
        if self.ema is not None:
            self.ema.update_parameters(self.g)

    def rate(self, steps: int, warmup: int) -> float:
        # as in a process that never imported Lightning (which sets this variable, making every Adam step
        # probe NVML): the loop a researcher would write, not one slowed by our import
        saved = os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
        try:
            for _ in range(warmup):
                self.step()
            start = time.perf_counter()
            for _ in range(steps):
                self.step()
            return steps / (time.perf_counter() - start)
        finally:
            if saved is not None:
                os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = saved


def hot_spots(stats: pstats.Stats, steps: int, top: int = 12) -> list[str]:
    """The functions with the most own time (ms per G step), the networks' ops included for scale."""
    rows = []
    for (file, line, name), (_, calls, tottime, _, _) in sorted(
        stats.stats.items(), key=lambda kv: -kv[1][2]
    )[:top]:
        where = f"{Path(file).name}:{line}" if line else file
        rows.append(f"| `{name}` ({where}) | {calls / steps:.1f} | {1e3 * tottime / steps:.3f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs/overhead.md")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    rows = [(m, o) for m in a.models for o in ORDERS]
    loops = {row: PlainLoop(*row) for row in rows}
    project: dict[tuple, list[float]] = {row: [] for row in rows}
    plain: dict[tuple, list[float]] = {row: [] for row in rows}
    floor: dict[tuple, list[float]] = {row: [] for row in rows}
    inside: dict[tuple, list[float]] = {row: [] for row in rows}
    for r in range(a.rounds):
        for row in rows:
            steps = a.steps * STEPS_FACTOR[row[0]]
            rate, inside_ms = project_rate(*row, steps, a.warmup)
            project[row].append(rate)
            inside[row].append(inside_ms)
            plain[row].append(loops[row].rate(steps, a.warmup))
            floor[row].append(floor_ms(*row, steps, a.warmup))
            ratio = project[row][-1] / plain[row][-1]
            print(
                f"round {r}: {row}: project {project[row][-1]:.1f}, plain {plain[row][-1]:.1f} G steps/s, ratio {ratio:.3f}",
                flush=True,
            )
    split_rows = []
    for row in rows:
        ms, ins = 1e3 / statistics.median(plain[row]), statistics.median(inside[row])
        outside = statistics.median(1e3 / x - i for x, i in zip(project[row], inside[row]))
        split_rows.append(f"| {row[0]} | {row[1]} | {ms:.3f} | {ins:.3f} | {outside:.3f} |")
    lines = [
        "# The framework tax: project against a plain PyTorch loop",
        "",
        f"Command: `python benchmarks/overhead.py --steps {a.steps} --warmup {a.warmup} --rounds {a.rounds} "
        f"--threads {a.threads}{' --profile' if a.profile else ''}` (the MLP runs {STEPS_FACTOR['2D grid MLP, batch 256']}x the steps)",
        f"on CPU ({a.threads} thread(s)), {platform.machine()}, torch {torch.__version__}. Same networks, loss,",
        "optimizers, EMA, batch and order in both; the project with a CSV logger at the config's",
        "`log_every_n_steps` and its default callbacks, validation, grids and checkpoints off. The ratio is",
        "project / plain G steps per second within one round; the median over the interleaved rounds.",
        "",
        "The last two columns: Lightning's own cost per step (a manual-optimization step that moves two",
        "scalars, in a bare Trainer on the same data module), and the ratio a loop inside Lightning could",
        "reach at best if the GAN step itself cost exactly the plain loop's: plain / (plain + floor).",
        "",
        "The split: of the project's ms per G step, the part inside its `training_step` (the GAN step, with",
        "Lightning's `manual_backward` and optimizer wrappers and their hooks) against the plain loop's ms per",
        "step, and the part outside it (Lightning's per-batch loop, the batch-level callback hooks, the logger).",
        "",
        "| model | order | plain (ms/step) | project inside `training_step` (ms/step) | project outside it (ms/step) |",
        "|---|---|---|---|---|",
        *split_rows,
        "",
        "| model | order | plain (G steps/s) | project (G steps/s) | ratio (median) | ratio per round | ms per G step outside the plain loop | Lightning floor (ms/step) | best ratio inside Lightning |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, order in rows:
        ratios = [p / q for p, q in zip(project[(model, order)], plain[(model, order)])]
        p, q = statistics.median(project[(model, order)]), statistics.median(plain[(model, order)])
        extra = 1e3 * (1 / p - 1 / q)
        lf = statistics.median(floor[(model, order)])
        lines.append(
            f"| {model} | {order} | {q:.1f} | {p:.1f} | {statistics.median(ratios):.3f} | "
            f"{', '.join(f'{x:.3f}' for x in ratios)} | {extra:.2f} | {lf:.3f} | {1e3 / q / (1e3 / q + lf):.3f} |"
        )
    if a.profile:
        for row in rows:
            prof, steps = cProfile.Profile(), a.steps * STEPS_FACTOR[row[0]]
            project_rate(*row, steps, a.warmup, profile=prof)
            stats = pstats.Stats(prof)
            lines += [
                "",
                f"### Profile: {row[0]}, {row[1]}",
                "",
                "| function (own time) | calls per G step | ms per G step |",
                "|---|---|---|",
            ]
            lines += hot_spots(stats, steps + a.warmup)
    write_keeping_analysis(a.out, [*lines, "", *ANALYSIS, ""])  # the hand-written reading survives a re-run
    print("\n".join(lines))


if __name__ == "__main__":
    main()
