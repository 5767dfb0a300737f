"""Real-data features, computed once and kept on disk.

The key names the data module, the split, the image size, the number of images, the extractor (its
name includes a hash of its weights) and a fingerprint of the split's content (its length and a few
images), so a changed root, seed or split can never reuse stale features. Under DDP every rank extracts
a strided shard and the shards are all-gathered, so each rank ends with the full set; rank 0 writes the
file (atomically: a crash never leaves a half-written cache).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from gan_lightning.checkpoints import CheckpointError, load_file
from gan_lightning.data.base import to_unit_range
from gan_lightning.metrics.features import FeatureExtractor, atomic_save, cache_dir


def subset_indices(n: int, num: int | None) -> Tensor:
    """All of ``n`` items, or a fixed random ``num`` of them (image folders are sorted by class, so the
    first ``num`` would be a biased reference set)."""
    if num is None or num >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:num]


def images_at(dataset: Dataset, indices: Tensor) -> Tensor:
    """The images at ``indices`` as one float batch in [-1, 1]."""
    idx = indices.tolist()
    if hasattr(dataset, "__getitems__"):
        x = dataset.__getitems__(idx)[0]
    else:
        x = torch.stack([torch.as_tensor(dataset[i][0]) for i in idx])
    return to_unit_range(x) if x.dtype == torch.uint8 else x.float()


def fingerprint(dataset: Dataset) -> str:
    """A hash of the dataset's length and of 8 images spread over it: cheap, and it changes whenever the
    split does (another seed, root, size or subset)."""
    n = len(dataset)  # type: ignore[arg-type]
    h = hashlib.sha1(str(n).encode())
    picks = torch.linspace(0, n - 1, steps=min(8, n)).round().long()
    h.update(images_at(dataset, picks).numpy().tobytes())
    return h.hexdigest()[:12]


def cache_key(source: str, split: str, dataset: Dataset, extractor: FeatureExtractor, num: int) -> str:
    shape = "x".join(str(s) for s in images_at(dataset, torch.tensor([0])).shape[1:])
    return f"{source}-{split}-{shape}-n{num}-{extractor.name}-{fingerprint(dataset)}"


@torch.no_grad()
def extract(
    dataset: Dataset, indices: Tensor, extractor: FeatureExtractor, batch_size: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    feats, logits = [], []
    for chunk in indices.split(batch_size):
        f, l = extractor(images_at(dataset, chunk).to(device))
        feats.append(f.float())
        logits.append(l.float())
    d, k = extractor.num_features, extractor.num_classes
    empty = (torch.empty(0, d, device=device), torch.empty(0, k, device=device))
    return (torch.cat(feats), torch.cat(logits)) if feats else empty


def real_features(
    dataset: Dataset,
    key: str,
    extractor: FeatureExtractor,
    num: int | None = None,
    batch_size: int = 250,
    device: torch.device | str = "cpu",
    use_cache: bool = True,
    rank: int = 0,
    world_size: int = 1,
    all_gather: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Features of the real images, from the disk cache when present; every rank gets all of them.
    (Their logits are not kept: IS and the mode counts score samples only.)"""
    device = torch.device(device)
    path = cache_dir() / "real_features" / f"{key}.pt"
    cached = _read_cached(path, device) if use_cache and path.is_file() else None
    if world_size > 1:  # one decision for all ranks, or some would wait in all_gather forever: a rank
        # without the file, or that could not read it, makes every rank recompute
        assert all_gather is not None, "world_size > 1 needs an all_gather"
        if not bool(all_gather(torch.tensor([int(cached is not None)], device=device)).min()):
            cached = None
    if cached is not None:
        return cached
    indices = subset_indices(len(dataset), num)  # type: ignore[arg-type]
    mine = indices[rank::world_size]
    f = extract(dataset, mine, extractor, batch_size, device)[0]
    if world_size > 1:
        f = _gather_strided(f, len(indices), rank, world_size, all_gather)
    if use_cache and rank == 0:
        atomic_save({"features": f.cpu(), "key": key}, path)
    return f


def _gather_strided(
    local: Tensor, n: int, rank: int, world_size: int, all_gather: Callable[[Tensor], Tensor]
) -> Tensor:
    """Rank r holds items r, r+W, r+2W, ...; return all n items in order on every rank."""
    per_rank = -(-n // world_size)
    padded = torch.zeros(per_rank, *local.shape[1:], dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    gathered = all_gather(padded)  # (W, per_rank, ...)
    out = torch.empty(n, *local.shape[1:], dtype=local.dtype, device=local.device)
    for r in range(world_size):
        count = len(range(r, n, world_size))
        out[r::world_size] = gathered[r][:count]
    return out


def _read_cached(path: Path, device: torch.device) -> Tensor | None:
    """The cached features, or None (with a warning) if the file is damaged: it is then recomputed."""
    try:
        features = load_file(path, "feature cache", "it is recomputed", map_location=device)["features"]
    except (CheckpointError, KeyError, TypeError) as err:
        warnings.warn(f"feature cache {path} is unusable ({err}); recomputing it", stacklevel=2)
        return None
    return features if isinstance(features, Tensor) else None
