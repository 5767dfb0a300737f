"""Training throughput of the update orders on the same DCGAN and data, measured in one process.

    python benchmarks/throughput.py --steps 100

Builds the quickstart (DCGAN on the embedded digits) once per order, runs warm-up steps, then times
``--steps`` generator steps (one D and one G update each, batch 64). Writes docs/throughput.md.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from common import ROOT, build

from gan_lightning.io import atomic_write_text

ORDERS = ["d_first", "g_first", "simultaneous", "fused"]


class Timer(L.Callback):
    """Wall time of the training steps after ``warmup`` (data loading and logging included), up to the
    end of the last step: the end-of-fit grid and checkpoint, which callbacks earlier in the list write
    in ``on_train_end``, are not training steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.seconds = 0.0
        self.steps = 0
        self.cuda = torch.cuda.is_available()  # once: without a driver each call probes NVML (~50 us)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            if self.cuda:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self.warmup:
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self.start
            self.steps = trainer.global_step - self.warmup


def measure(order: str, steps: int, warmup: int, width: int, accelerator: str) -> float:
    timer = Timer(warmup)
    cli = build(
        ["quickstart.yaml"],
        {
            "--model.order": order,
            "--model.generator.init_args.width": str(width),
            "--model.discriminator.init_args.width": str(width),
            "--trainer.max_steps": str(steps + warmup),
            "--trainer.accelerator": accelerator,
            "--trainer.default_root_dir": str(ROOT / "runs/bench_throughput"),
        },
        trainer_defaults={"callbacks": [timer]},
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    return timer.steps * cli.datamodule.batch_size / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/throughput.md")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if a.threads:
        torch.set_num_threads(a.threads)
    rates: dict[str, list[float]] = {o: [] for o in ORDERS}
    for _ in range(a.repeats):  # interleaved, so drift in machine load hits every order alike
        for order in ORDERS:
            rates[order].append(measure(order, a.steps, a.warmup, a.width, a.accelerator))
            print(order, f"{rates[order][-1]:.1f} real images/s", flush=True)
    median = {o: sorted(r)[len(r) // 2] for o, r in rates.items()}
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    lines = [
        "# Throughput of the update orders",
        "",
        f"Command: `python benchmarks/throughput.py --steps {a.steps} --width {a.width} --repeats {a.repeats}"
        f" --threads {a.threads}`",
        f"on {device}, {platform.machine()}, torch {torch.__version__}. Quickstart DCGAN (width {a.width}) on the",
        "embedded digits, 32x32, batch 64, one D and one G update per generator step. Median of the interleaved",
        "rounds; images/s counts real images consumed (64 per generator step).",
        "",
        "| order | real images / s | vs d_first | all rounds |",
        "|---|---|---|---|",
    ]
    for order in ORDERS:
        runs = ", ".join(f"{r:.0f}" for r in rates[order])
        lines.append(f"| {order} | {median[order]:.0f} | {median[order] / median['d_first']:.2f}x | {runs} |")
    atomic_write_text(a.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
