"""GPU training speed: fp32 eager against bf16-mixed + torch.compile + channels_last, in one command.

    python benchmarks/gpu.py          # or: make bench-gpu

For DCGAN at 64x64 (configs/model/dcgan.yaml) and the SNGAN ResNet-32 (configs/model/sngan.yaml with
the hinge loss), built by the real CLI on synthetic uint8 images (no download), batch 64, one D step per
G step, EMA of G on, logging, samples and checkpoints off, ``trainer.benchmark`` (cuDNN autotuning) on in
both settings. Each run times ``--steps`` generator steps after ``--warmup`` (which absorbs compilation),
and reads the peak of ``torch.cuda.max_memory_allocated`` over the timed steps. Runs are interleaved
over ``--repeats`` rounds; the median is reported. Writes a markdown table to ``--out`` (docs/gpu.md).

The fast setting is the model's own options: ``model.channels_last`` (G, its EMA copy, D and the real
batches) and ``model.compile_generator`` / ``model.compile_discriminator``. SNGAN's D is left uncompiled:
with spectral norm, a compiled D fails in the D step's backward ("modified by an inplace operation" on
the power-iteration vector, as D runs on the real and the fake batch before one backward; eager torch
clones that vector to avoid it), seen with torch 2.14.1 on CPU. The table says what ran compiled. CUDA
only: without it, one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from common import ROOT, build

from gan_lightning.data.base import GANDataModule, TensorSamples
from gan_lightning.io import atomic_write_text

MODELS = {  # name: (configs, image size, compile D too)
    "DCGAN-64": (["model/dcgan.yaml"], 64, True),
    "SNGAN ResNet-32": (["model/sngan.yaml", "loss/hinge.yaml"], 32, False),  # spectral norm: D stays eager
}
SETTINGS = {  # name: (trainer.precision, channels_last and compile)
    "fp32 eager": ("32-true", False),
    "bf16 + compile + channels_last": ("bf16-mixed", True),
}


class SyntheticImages(GANDataModule):
    """Random uint8 RGB images of one size, generated in memory: data loading costs next to nothing."""

    def __init__(self, image_size: int = 64, num_samples: int = 4096, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_size, self.num_samples = image_size, num_samples

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    def build(self, split: str) -> TensorSamples:
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        n = self.num_samples if split == "train" else self.batch_size
        return TensorSamples(torch.randint(0, 256, (n, *self.data_shape), dtype=torch.uint8, generator=g))


class Timer(L.Callback):
    """Wall time (CUDA events) and peak allocated memory of the generator steps after ``warmup``."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.Event(enable_timing=True)
            self.start.record()

    def on_train_end(self, trainer, pl_module) -> None:
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        torch.cuda.synchronize()
        self.seconds = self.start.elapsed_time(end) / 1000
        self.steps = trainer.global_step - self.warmup
        self.peak = torch.cuda.max_memory_allocated()


def measure(model: str, setting: str, steps: int, warmup: int, batch_size: int) -> dict[str, Any]:
    configs, size, compile_d = MODELS[model]
    precision, fast = SETTINGS[setting]
    options = {
        "--model.channels_last": str(fast).lower(),
        "--model.compile_generator": str(fast).lower(),
        "--model.compile_discriminator": str(fast and compile_d).lower(),
    }
    timer = Timer(warmup)
    cli = build(
        configs,
        {
            **options,
            "--data": f"{SyntheticImages.__module__}.SyntheticImages",
            "--data.init_args.image_size": str(size),
            "--data.init_args.batch_size": str(batch_size),
            "--trainer.max_steps": str(steps + warmup),
            "--trainer.accelerator": "gpu",
            "--trainer.devices": "1",
            "--trainer.precision": precision,
            "--trainer.benchmark": "true",
            "--trainer.default_root_dir": str(ROOT / "runs/bench_gpu"),
        },
        trainer_defaults={"callbacks": [timer]},
    )
    compiled = " and ".join(n for n, on in (("G", fast), ("D", fast and compile_d)) if on) or "none"
    cli.trainer.fit(cli.model, cli.datamodule)
    result = {
        "g_steps_per_s": timer.steps / timer.seconds,
        "peak_mib": timer.peak / 2**20,
        "compiled": compiled,
    }
    del cli
    torch._dynamo.reset()  # the next run compiles its own graphs, not reusing these
    torch.cuda.empty_cache()
    return result


def table(results: dict[tuple[str, str], list[dict[str, Any]]], models: list[str], batch_size: int) -> str:
    rows = [
        "| model | setting | compiled | G steps/s | images/s | peak memory (MiB) | speed-up | memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        base = None
        for setting in SETTINGS:
            runs = results[(model, setting)]
            rate = statistics.median(r["g_steps_per_s"] for r in runs)
            peak = statistics.median(r["peak_mib"] for r in runs)
            base = base or (rate, peak)
            rows.append(
                f"| {model} | {setting} | {runs[0]['compiled']} | {rate:.1f} | {rate * batch_size:,.0f} | {peak:,.0f} | "
                f"{rate / base[0]:.2f}x | {peak / max(base[1], 1e-9):.2f}x |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed generator steps per run")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps first (compilation)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the median is reported")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs/gpu.md")
    a = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "error: benchmarks/gpu.py measures CUDA training and torch.cuda.is_available() is False here; "
            "run it on a machine with an NVIDIA GPU",
            file=sys.stderr,
        )
        return 2

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(a.repeats):  # interleaved, so drift in clocks or load hits every setting alike
        for model in a.models:
            for setting in SETTINGS:
                r = measure(model, setting, a.steps, a.warmup, a.batch_size)
                results.setdefault((model, setting), []).append(r)
                print(
                    f"{model:16s} {setting:32s} {r['g_steps_per_s']:8.1f} G steps/s  {r['peak_mib']:8.0f} MiB"
                )
    command = "python benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(
        [
            "# GPU training speed: fp32 eager against bf16-mixed + torch.compile + channels_last",
            "",
            f"`{command.strip()}` (or `make bench-gpu`), on {torch.cuda.get_device_name()}, torch "
            f"{torch.__version__}, Python {platform.python_version()}. Batch {a.batch_size}, one D step per "
            f"G step, EMA of G on; {a.steps} timed generator steps after {a.warmup} warm-up steps, median of "
            f"{a.repeats} interleaved round(s). Peak memory is `torch.cuda.max_memory_allocated` over the "
            "timed steps. The fast setting is the model's `channels_last`, `compile_generator` and "
            "`compile_discriminator` options; a D with spectral norm stays eager (see the script's docstring).",
            "",
            table(results, a.models, a.batch_size),
            "",
        ]
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
