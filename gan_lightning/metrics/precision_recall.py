"""Improved precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al.
2020), written here because torchmetrics has none.

Each set's manifold is the union of balls around its points, each ball reaching the point's k-th
nearest neighbour in the same set. *Precision*: the fraction of fake samples inside the real manifold
(how many samples look real). *Recall*: the fraction of real samples inside the fake manifold (how much
of the data the generator covers). The paper uses k = 3.

Density and coverage use the real balls only (real outliers inflate a fake manifold's balls, which is
what makes recall unreliable): *density* = (1 / kM) sum over fake samples of the number of real balls
each one is in (about 1 for samples distributed like the data; above 1 where samples crowd the dense
regions); *coverage* = the fraction of real balls holding at least one fake sample. As in the authors'
``prdc`` code, "in" is a strict ``<`` and the paper's k is 5.
"""

from __future__ import annotations

import torch
from torch import Tensor


def knn_radii(points: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Distance from each point to its k-th nearest neighbour among the others."""
    if len(points) <= k:
        raise ValueError(f"k={k} nearest neighbours need more than {k} points, got {len(points)}")
    radii = []
    for rows in points.split(chunk):
        d = torch.cdist(rows, points)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return torch.cat(radii)


def inside_fraction(queries: Tensor, points: Tensor, radii: Tensor, chunk: int = 1024) -> float:
    """Fraction of ``queries`` within ``radii[i]`` of some ``points[i]``."""
    inside = [(torch.cdist(q, points) <= radii).any(dim=1) for q in queries.split(chunk)]
    return torch.cat(inside).double().mean().item()


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> dict[str, float]:
    real, fake = real.double(), fake.double()
    return {
        "precision": inside_fraction(fake, real, knn_radii(real, k)),
        "recall": inside_fraction(real, fake, knn_radii(fake, k)),
    }


def density_coverage(real: Tensor, fake: Tensor, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    real, fake = real.double(), fake.double()
    radii = knn_radii(real, k, chunk)
    in_balls = torch.zeros(len(real), dtype=torch.long)  # fake samples in each real ball
    total = 0  # (fake, real ball) pairs
    for rows in fake.split(chunk):
        inside = torch.cdist(rows, real) < radii  # (chunk, N_real)
        total += int(inside.sum())
        in_balls += inside.sum(0).cpu()
    return {
        "density": total / (k * len(fake)),
        "coverage": (in_balls > 0).double().mean().item(),
    }
