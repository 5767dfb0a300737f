"""DDP on 2 CPU processes: ``ddp_all_reduce`` against ``ddp_find_unused_parameters_true``, G steps/s.

    python benchmarks/ddp.py --rounds 3

Each measurement is a real two-process ``python -m gan_lightning fit`` (gloo, one thread per process),
with logging, samples, validation and checkpoints off; rank 0 times the G steps after ``--warmup``.
The strategies alternate round by round (and swap which goes first), so drift in the machine's load
hits both alike; the median over the rounds is reported. Writes docs/ddp.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from gan_lightning.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["ddp_all_reduce", "ddp_find_unused_parameters_true"]
# name -> (what it is, CLI arguments, timed G steps); the MLPs are where per-step overhead shows
ROWS = {
    "ring MLP": ("2D ring, MLP G and D, batch 64 per process", ["--config", "configs/toy/ring.yaml"], 200),
    "ring MLP + GP": (
        "the same with the one-centered gradient penalty (a double backward)",
        ["--config", "configs/toy/ring.yaml", "--config", "configs/regularizer/gp1.yaml"],
        200,
    ),
    "DCGAN digits": (
        "the quickstart DCGAN (width 32) on 32x32 digits, batch 64 per process",
        ["--config", "configs/quickstart.yaml", "--trainer.accelerator", "cpu"],
        20,
    ),
}
QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.logger=false",
    "--trainer.limit_val_batches=0",
    "--samples.every_n_steps=0",
    "--checkpoint.every_n_train_steps=0",
    "--checkpoint.save_last=false",
]


class StepTimer(L.Callback):
    """Each rank writes ``out`` + ``.rank{r}``: G steps/s (wall) and CPU ms per G step (its process, all
    threads), over the steps after ``warmup``. On a shared machine the CPU time is the steadier measure."""

    def __init__(self, out: str, warmup: int) -> None:
        self.out, self.warmup, self.start, self.cpu = out, warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start, self.cpu = time.perf_counter(), time.process_time()

    def on_train_end(self, trainer, pl_module) -> None:
        seconds, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu
        steps = trainer.global_step - self.warmup
        result = {"rate": steps / seconds, "cpu_ms": 1000 * cpu / steps}
        atomic_write_text(Path(f"{self.out}.rank{trainer.global_rank}"), json.dumps(result))


def measure(row: str, strategy: str, steps: int, warmup: int, work: Path) -> tuple[float, float]:
    """One two-process run: rank 0's G steps/s, and the CPU ms per G step of both ranks together."""
    out = work / f"{row}-{strategy}".replace(" ", "_")
    timer = {"class_path": "ddp.StepTimer", "init_args": {"out": str(out), "warmup": warmup}}
    args = [
        *ROWS[row][1],
        *QUIET,
        f"--trainer.max_steps={steps + warmup}",
        "--trainer.devices=2",
        f"--trainer.strategy={strategy}",
        f"--trainer.default_root_dir={work}",
        "--data.init_args.batch_size=64",
        "--trainer.callbacks",
        json.dumps([timer]),
    ]
    path = os.pathsep.join(filter(None, [str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PYTHONPATH=path, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "gan_lightning", "fit", *args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if res.returncode:
        raise RuntimeError(f"{row} / {strategy} failed:\n{res.stderr[-3000:]}")
    ranks = [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(2)]
    return ranks[0]["rate"], sum(r["cpu_ms"] for r in ranks)


DEFAULT_ROWS = ["ring MLP", "DCGAN digits"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--steps", type=int, default=None, help="timed G steps per run (default: per row)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, choices=list(ROWS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs/ddp.md")
    a = parser.parse_args()
    load_before = os.getloadavg()
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {(r, s): [] for r in a.rows for s in STRATEGIES}
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        for i in range(a.rounds):
            for row in a.rows:
                for strategy in STRATEGIES if i % 2 == 0 else STRATEGIES[::-1]:
                    rate, cpu = measure(row, strategy, a.steps or ROWS[row][2], a.warmup, Path(tmp))
                    runs[row, strategy].append((rate, cpu))
                    print(
                        f"round {i + 1}: {row} / {strategy}: {rate:.1f} G steps/s, {cpu:.1f} CPU ms / G step"
                    )
    load_after = os.getloadavg()
    atomic_write_text(a.out, render(a, runs, load_before, load_after))
    print(a.out.read_text())


def render(a: argparse.Namespace, runs: dict, load_before: tuple, load_after: tuple) -> str:
    """docs/ddp.md: the command, the machine and its load, the medians, every round, the explanation."""
    rate = {key: statistics.median(r for r, _ in v) for key, v in runs.items()}
    cpu = {key: statistics.median(c for _, c in v) for key, v in runs.items()}
    command = f"python benchmarks/ddp.py --rounds {a.rounds} --warmup {a.warmup}"
    command += f" --steps {a.steps}" if a.steps else ""
    command += " --rows " + " ".join(f"'{r}'" for r in a.rows) if a.rows != DEFAULT_ROWS else ""
    load = [" / ".join(f"{x:.2f}" for x in avg) for avg in (load_before, load_after)]
    timed = ", ".join(f"{a.steps or ROWS[r][2]} ({r})" for r in a.rows)
    new, old = STRATEGIES
    lines = [
        "# DDP without the unused-parameter search",
        "",
        f"Command: `{command}`",
        f"on {os.cpu_count()} CPU cores, {platform.machine()}, torch {torch.__version__}, gloo, 2 processes of "
        "one thread each.",
        f"Load average (1, 5, 15 min): {load[0]} before, {load[1]} after. The machine is shared: other jobs'",
        "load moves the wall-clock rate from run to run, so the CPU time both processes spend per G step (all",
        "their threads, gloo's included) is the steadier measure of what each strategy costs.",
        f"{a.warmup} warm-up steps, then timed G steps: {timed}. D-first order, one D step per G step.",
        "Medians of the rounds, which alternate the strategies.",
        "",
        "| model | G steps/s: `ddp_all_reduce` | `ddp_find_unused_parameters_true` | ratio "
        "| CPU ms / G step: `ddp_all_reduce` | `ddp_find_unused_parameters_true` | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in a.rows:
        lines.append(
            f"| {row}: {ROWS[row][0]} | {rate[row, new]:.1f} | {rate[row, old]:.1f} "
            f"| {rate[row, new] / rate[row, old]:.2f}x | {cpu[row, new]:.1f} | {cpu[row, old]:.1f} "
            f"| {cpu[row, new] / cpu[row, old]:.2f}x |"
        )
    lines += ["", "Every round (G steps/s, CPU ms / G step):", ""]
    for (row, strategy), v in runs.items():
        lines.append(f"- {row}, `{strategy}`: " + "; ".join(f"{r:.1f}, {c:.1f}" for r, c in v))
    return "\n".join([*lines, "", EXPLANATION])


EXPLANATION = """\
## What differs

`ddp_find_unused_parameters_true` is Lightning's DDP: one `DistributedDataParallel` around the whole
LightningModule. Each `manual_backward` touches one network (D's step leaves G's parameters without
gradients, and the other way round), so after every backward DDP walks the autograd graph for the
parameters that took no part, all-reduces a map of them, and all-reduces its gradient buckets, the
unused network's zeros included; it also broadcasts the buffers before each forward. Per G step of the
D-first order with k D steps: k + 1 graph searches and about 2(k + 1) + 1 collectives.

`ddp_all_reduce` (`gan_lightning/distributed.py`) has no wrapper. Each optimizer step, D's uncounted ones
included, first averages the gradients of exactly the parameters it is about to step, concatenated into
one flat tensor per dtype, in one all-reduce (SUM, then divided by the world size: gloo has no AVG). The
parameters are broadcast from rank 0 at setup, and the buffers (BatchNorm statistics, the EMA G's) once
per G step, as one byte tensor. Per G step: k + 1 all-reduces and 1 broadcast, and no graph search. No
reducer hooks sit in the penalties' double backward.

What the tests (`tests/test_distributed.py`) show for it, on 2 gloo processes: the ranks' parameters and
buffers stay bitwise identical; every optimizer step applies the gradients one process computes on the
same global batch (to 1e-5), for each update order with the gradient penalty on; under 16-mixed the ranks
skip the same overflowing steps and keep one loss scale (the scaled gradients are averaged before the
unscale; unscaling is linear); two simulated nodes (`NODE_RANK`, `MASTER_ADDR`, `MASTER_PORT`,
`WORLD_SIZE`, one process each) train, checkpoint on rank 0 and resume.

Where it differs from DDP's behaviour:

- Gradients are averaged inside the optimizer step, so code that reads or changes them between the
  backward and `opt.step()` sees this rank's own (for example `self.clip_gradients(...)` called before
  the step; clip in `on_before_optimizer_step` instead, which runs after the average). The update loop
  does neither; the health monitor's gradient norms are read in `on_before_optimizer_step`.
- The wrapper's options (`find_unused_parameters`, `static_graph`, communication hooks, post-local-SGD
  model averaging) do not apply.
- Communication starts after the backward instead of overlapping with it. On GPUs with NCCL and large
  networks DDP's overlap may win back part of its overhead; that has not been measured (no GPU here).

## A hang at exit with Lightning 2.5 (why the lower bound is 2.6)

With Lightning 2.5.2, the lowest version first declared, a two-process CPU run sometimes hung after it
had finished:
- Rank 0 had written its last checkpoint and exited.
- Rank 1 was stuck in `destroy_process_group`, in `ProcessGroupGloo`'s destructor, which joins a gloo
  worker thread (native stack from `py-spy dump --native`).

In `tests/test_distributed.py`'s two-node test (two fits each), 3 of 6 runs hung: with torch 2.6 and
with torch 2.7.1 alike. One full-suite run at those versions also hung in another two-process test.

Ordering the teardown did not help: rank 0 waited on the store while the other ranks closed first, and
one of 3 runs still hung.

With Lightning 2.6.0, at torch 2.6.0 and at 2.7.1, none of 11 runs hung. So the declared range starts
at `lightning>=2.6`. No hang has been seen with the Lightning 2.6.6 / torch 2.14 the suite normally runs
on.
"""


if __name__ == "__main__":
    main()
