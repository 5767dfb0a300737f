"""Progressive growing on the embedded digits at 32x32: a grid per stage and the classifier-FID along the way.

    python -m gan_lightning fit --config configs/quickstart.yaml --config configs/experiment/pggan_digits.yaml \\
        --trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir runs/pggan_digits
    python benchmarks/pggan_digits.py --run runs/pggan_digits/lightning_logs/version_0

The first command trains (stages 4, 8, 16, 32 px; the quickstart's classifier metrics every 500 G steps).
This script reads that run's metrics.csv and its sample grids. It writes the table of docs/pggan_digits.md
(between the markers, so the prose around it stays) and docs/pggan_digits_grid.png: the grid at the end of
each stage and the final one, side by side.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import numpy as np
from PIL import Image

from gan_lightning.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results -->", "<!-- end results -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", type=Path, required=True, help="the run's lightning_logs/version_N directory"
    )
    parser.add_argument("--doc", type=Path, default=ROOT / "docs/pggan_digits.md")
    parser.add_argument("--grid", type=Path, default=ROOT / "docs/pggan_digits_grid.png")
    a = parser.parse_args()
    with open(a.run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/digit_fid")]
    grids = sorted((a.run / "samples").glob("step_*_*x*.png"))
    by_step = {int(re.search(r"step_(\d+)_", p.name).group(1)): p for p in grids}
    lines = [
        BEGIN,
        "| G step | stage resolution | classifier-FID (EMA G, 5,000 samples) | classes covered | class KL |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        step = int(r["step"]) + 1
        res = re.search(r"_(\d+x\d+)\.png", by_step[step].name).group(1) if step in by_step else "?"
        lines.append(
            f"| {step} | {res} | {float(r['val/digit_fid']):.1f} | {float(r['val/digit_modes']):.0f} | "
            f"{float(r['val/digit_mode_kl']):.2f} |"
        )
    lines.append(END)
    # the last grid of each resolution: the end of every stage, and the final one
    last_of: dict[str, Path] = {}
    for p in grids:
        last_of[re.search(r"_(\d+x\d+)\.png", p.name).group(1)] = p
    images = [np.asarray(Image.open(p).convert("L")) for p in last_of.values()]
    gap = np.full((images[0].shape[0], 8), 255, dtype=np.uint8)
    strip = np.concatenate([x for img in images for x in (img, gap)][:-1], axis=1)
    Image.fromarray(strip).save(a.grid, optimize=True)
    text = a.doc.read_text() if a.doc.exists() else f"{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    atomic_write_text(a.doc, head + "\n".join(lines) + rest.split(END, 1)[1])
    print("\n".join(lines))
    print("grids:", ", ".join(p.name for p in last_of.values()))


if __name__ == "__main__":
    main()
