"""Cost of each network: G and D parameters, and generator steps per second at batch 64 on this machine.

    python benchmarks/architectures.py --steps 3 --warmup 1 --repeats 2 --threads 1

Parameters are counted on CIFAR-shaped data (3x32x32, the papers' setting) and on the embedded digits
(1x32x32) the timing runs on. Each network is the quickstart (digits, non-saturating loss, Adam, one D
step per G step, batch 64) with ``configs/model/<name>.yaml`` composed on top, built by the real CLI and
trained for ``--warmup`` + ``--steps`` generator steps; rounds are interleaved across networks so that
drift in the machine's load hits each alike, and the median is reported. Writes docs/architectures.md.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import platform
import warnings
from pathlib import Path

import torch
from common import ROOT, build
from throughput import Timer

from gan_lightning.io import atomic_write_text

# name -> (model configs composed on the quickstart, extra overrides)
NETWORKS: dict[str, tuple[list[str], dict[str, str]]] = {
    "DCGAN (quickstart, width 32)": ([], {}),
    "DCGAN (width 64)": (
        ["model/dcgan.yaml"],
        {"--model.generator.init_args.width": "64", "--model.discriminator.init_args.width": "64"},
    ),
    "SNGAN ResNet": (["model/sngan.yaml"], {}),
    "SAGAN (SNGAN + SN on G + attention at 16)": (["model/sagan.yaml"], {}),
    "BigGAN-style (CIFAR widths)": (["model/biggan.yaml"], {}),
    "DCGAN G + multi-scale DCGAN D": (["model/multiscale.yaml"], {}),
}


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def factory(spec) -> object:
    """A network factory ``(data_shape, num_classes) -> net`` from a resolved ``class_path`` config."""
    module, name = spec.class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    kwargs = {k: v for k, v in vars(spec.init_args).items() if k != "num_classes"}
    kwargs = {k: factory(v) if hasattr(v, "class_path") else v for k, v in kwargs.items()}
    return lambda shape, k: cls(shape, k, **kwargs)


def measure(
    configs: list[str], overrides: dict[str, str], steps: int, warmup: int
) -> tuple[float, list[int]]:
    """G steps/s, and G and D parameters on the digits and on 3x32x32 (the config the CLI resolved)."""
    timer = Timer(warmup)
    cli = build(
        ["quickstart.yaml", *configs],
        {
            **overrides,
            "--trainer.max_steps": str(steps + warmup),
            "--trainer.accelerator": "cpu",
            "--trainer.default_root_dir": str(ROOT / "runs/bench_architectures"),
        },
        trainer_defaults={"callbacks": [timer]},
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    model = cli.config.fit.model if "fit" in cli.config else cli.config.model
    cifar = [_count(factory(model[role])((3, 32, 32), 0)) for role in ("generator", "discriminator")]
    return timer.steps / timer.seconds, [_count(cli.model.generator), _count(cli.model.discriminator), *cifar]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only", nargs="*", help="substrings of network names to run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/architectures.md")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    names = [n for n in NETWORKS if not a.only or any(s in n for s in a.only)]
    rates: dict[str, list[float]] = {n: [] for n in names}
    counts: dict[str, list[int]] = {}
    for _ in range(a.repeats):
        for name in names:
            rate, counts[name] = measure(*NETWORKS[name], a.steps, a.warmup)
            rates[name].append(rate)
            print(f"{name}: {rate:.3f} G steps/s", flush=True)
    lines = [
        "| network | G params (3×32×32) | D params (3×32×32) | G / D params (1×32×32, timed) "
        "| G steps/s (median) | all rounds |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        g1, d1, g3, d3 = counts[name]
        r = sorted(rates[name])
        median = r[len(r) // 2] if len(r) % 2 else sum(r[len(r) // 2 - 1 : len(r) // 2 + 1]) / 2
        runs = ", ".join(f"{x:.3f}" for x in rates[name])
        lines.append(f"| {name} | {g3:,} | {d3:,} | {g1:,} / {d1:,} | {median:.3f} | {runs} |")
    command = (
        f"python benchmarks/architectures.py --steps {a.steps} --warmup {a.warmup} --repeats {a.repeats} "
        f"--threads {a.threads}"
    )
    header = [
        f"Command: `{command}` on CPU ({a.threads} thread(s)), {platform.machine()}, torch {torch.__version__}.",
        "Batch 64; one generator step = one D update (G forward without gradients, D forward and backward on",
        "real and fake) and one G update (G and D forward and backward); the quickstart's non-saturating loss",
        "and Adam; embedded digits at 1×32×32. Median of the interleaved rounds.",
        "",
    ]
    table = "\n".join(header + lines) + "\n"
    print(table)
    marker = "<!-- cost table -->"
    text = a.out.read_text() if a.out.exists() else marker + "\n"
    if marker in text:
        before, _, rest = text.partition(marker)
        after = rest.split("<!-- end cost table -->", 1)[-1] if "<!-- end cost table -->" in rest else ""
        atomic_write_text(a.out, f"{before}{marker}\n{table}<!-- end cost table -->{after}")
    else:
        atomic_write_text(a.out, text + f"\n{marker}\n{table}<!-- end cost table -->\n")


if __name__ == "__main__":
    main()
