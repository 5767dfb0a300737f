"""The standard Inception FID/KID of real digits against real digits: the floor a generator of the
embedded digits can reach at these sample counts.

    python benchmarks/inception_floors.py [--threads 1]

* the 500 held-out digits against the 4,500 training digits;
* two disjoint halves (2,250 each, a seeded split) of the training digits;
* 1,000 against 1,000 of those halves: the counts of ``configs/metrics/inception_at_end.yaml``.

The features go through the real-feature cache with the keys the metrics callback uses (data seed 0,
32x32, all 4,500 training digits), so a later `evaluate` of a quickstart checkpoint with
``--metrics.extractor gan_lightning.metrics.InceptionV3`` reads the training features from it. Weights:
torch.hub's file (official, or built by ``python -m gan_lightning.metrics.inception install``).
Writes docs/evaluation_inception.md's floor table to stdout.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import torch

from gan_lightning.data import EmbeddedDigits
from gan_lightning.metrics import InceptionV3
from gan_lightning.metrics.cache import cache_key, real_features
from gan_lightning.metrics.scores import FeatureScores


def scores(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    s = FeatureScores(real.shape[1], 1, ["fid", "kid"], kid_subset_size=min(1000, len(real), len(fake)))
    s.update_real(real)
    s.update_fake(fake, torch.zeros(len(fake), 1))
    return s.compute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--resize", default="tf1", choices=["tf1", "clean", "antialias"])
    a = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(a.threads)
    net = InceptionV3(resize=a.resize)
    dm = EmbeddedDigits(image_size=32)
    feats, seconds = {}, {}
    for split in ("train", "val"):
        dataset = dm.build(split)
        key = cache_key("EmbeddedDigits", split, dataset, net, len(dataset))
        t0 = time.perf_counter()
        feats[split] = real_features(dataset, key, net, len(dataset))
        seconds[split] = time.perf_counter() - t0
    train, val = feats["train"], feats["val"]
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    half_a, half_b = train[perm[: len(train) // 2]], train[perm[len(train) // 2 :]]
    rows = [
        ("500 held-out digits vs the 4,500 training digits", len(val), len(train), scores(train, val)),
        ("two disjoint halves of the training digits", len(half_b), len(half_a), scores(half_a, half_b)),
        # the counts of configs/metrics/inception_at_end.yaml
        ("1,000 vs 1,000 disjoint training digits", 1000, 1000, scores(half_a[:1000], half_b[:1000])),
    ]
    print(f"weights {net.name}, resize {a.resize}, {a.threads} threads; features: " + ", ".join(
        f"{k} {len(feats[k])} images in {seconds[k]:.0f} s" for k in feats
    ))  # fmt: skip
    print("| real sets | samples | reference | Inception FID | KID |")
    print("|---|---|---|---|---|")
    for name, n_fake, n_real, r in rows:
        print(f"| {name} | {n_fake} | {n_real} | {r['fid']:.2f} | {r['kid']:.5f} ± {r['kid_std']:.5f} |")


if __name__ == "__main__":
    main()
