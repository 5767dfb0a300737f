"""The cost of the unrolled G loss per k: seconds per G step and the autograd memory of one G loss.

The ring config (MLP G and D, batch 256 unless ``--batch``), D-first, one process, one thread, interleaved
rounds (each entry trains ``--steps`` G steps per round after a warm-up; the median over rounds is kept),
so the ratios to the plain GAN are what to read on a shared machine. Memory: the peak bytes of the tensors
autograd holds for the backward while one G loss is formed (``torch.autograd.graph.saved_tensors_hooks``):
what the exact form keeps for its k look-ahead updates (G's own graph included in every row). Writes docs/unrolled_cost.md.

    python benchmarks/unrolled_cost.py --steps 60 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings

import torch
from common import ROOT, build
from g_objectives import StepClock

from gan_lightning.io import atomic_write_text
from gan_lightning.losses import NonSaturating

ENTRIES = {
    "plain": [],
    "k=1 exact": ["1", "true"],
    "k=5 exact": ["5", "true"],
    "k=10 exact": ["10", "true"],
    "k=5 first-order": ["5", "false"],
    "k=10 first-order": ["10", "false"],
}


def flags(entry: list[str], steps: int, batch: int) -> tuple[list[str], dict[str, str]]:
    files = ["toy/ring.yaml"] + (["tricks/unrolled.yaml"] if entry else [])
    over = {"--trainer.max_steps": str(steps), "--data.init_args.batch_size": str(batch)}
    if entry:
        over.update({"--model.unrolled.init_args.k": entry[0], "--model.unrolled.init_args.exact": entry[1]})
    return files, over


def seconds_per_step(entry: list[str], steps: int, batch: int) -> float:
    files, over = flags(entry, steps + 10, batch)
    cli = build(files, over)
    clock = StepClock(warmup=10)
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    return clock.per_step()


class _Saved:
    """A tensor autograd saved for the backward; counts the live bytes while it exists."""

    live = peak = 0

    def __init__(self, t: torch.Tensor) -> None:
        self.t, self.size = t, t.numel() * t.element_size()
        _Saved.live += self.size
        _Saved.peak = max(_Saved.peak, _Saved.live)

    def __del__(self) -> None:
        _Saved.live -= self.size


def saved_bytes(entry: list[str], batch: int) -> int:
    """Peak bytes of the tensors autograd holds for the backward while one G loss (the unrolled one when
    configured) is formed, on a fresh ring model (the first-order look-ahead frees each update's graph)."""
    files, over = flags(entry, 1, batch)
    module = build(files, over).model
    real = torch.randn(batch, 2)
    fake = module.generator(module.noise(batch))
    loss = NonSaturating()
    d_opt = torch.optim.Adam(module.discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    _Saved.live = _Saved.peak = 0
    with torch.autograd.graph.saved_tensors_hooks(_Saved, lambda h: h.t):
        if module.unrolled is None:
            g_loss = loss.g_loss(module.discriminator(fake))
        else:
            g_loss = module.unrolled.g_loss(
                module.discriminator, d_opt, loss.d_loss, loss.g_loss, real, fake, None, None
            )
    del g_loss
    return _Saved.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {name: [] for name in ENTRIES}
    for _ in range(a.rounds):
        for name, entry in ENTRIES.items():
            times[name].append(seconds_per_step(entry, a.steps, a.batch))
    plain = statistics.median(times["plain"])
    mem_plain = saved_bytes([], a.batch)
    lines = [
        "# The cost of the unrolled G loss per k",
        "",
        f"Command: `python benchmarks/unrolled_cost.py --steps {a.steps} --rounds {a.rounds} --batch {a.batch}` "
        "(ring MLPs, D-first, one thread, interleaved rounds; the machine is shared, read the ratios).",
        "",
        "| entry | ms per G step (median) | × plain | autograd memory of one G loss | × plain |",
        "|---|---|---|---|---|",
    ]
    for name, entry in ENTRIES.items():
        t = statistics.median(times[name])
        mem = saved_bytes(entry, a.batch)
        lines.append(
            f"| {name} | {t * 1e3:.1f} | {t / plain:.1f} | {mem / 2**20:.2f} MiB | {mem / mem_plain:.1f} |"
        )
    atomic_write_text(ROOT / "docs/unrolled_cost.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
