"""Progressive growing (Karras et al. 2018, PGGAN): which stage and fade-in alpha a generator step trains,
and the real images of that stage.

Stage s trains at resolution 4·2^s. Every stage after the first opens with a fade-in of ``fade_steps``
G steps, in which alpha rises linearly from 0 to 1, then trains at alpha 1 for the rest of its
``stage_steps``; the last stage lasts until ``max_steps``. Both are functions of the generator step
alone, so a run resumed anywhere (mid-fade, at a stage boundary) trains exactly what the uninterrupted
run would have: nothing about the schedule needs to be checkpointed.

The loaders keep serving full-size images; :meth:`Growth.reals` makes each stage's reals from them on the
device, once per batch (box-filter downsampling, and PGGAN's crossfade of the reals during a fade-in so
that they match G's faded output). Doing it after the transfer, rather than in the datasets, keeps one
loader for the whole run, which is what makes resume at any step exact without rebuilding it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import ConfigError


def _per_stage(value: int | Sequence[int], n: int, name: str) -> list[int]:
    values = [int(value)] * n if isinstance(value, int) else [int(v) for v in value]
    if len(values) != n:
        raise ConfigError(
            f"model.growth.{name} has {len(values)} entries but the networks grow through {n} stages "
            f"before the last; give one number, or {n}"
        )
    return values


class Growth:
    """The stage schedule of a progressively grown G and D, in generator steps.

    Args:
        stage_steps: G steps of every stage but the last (one number, or one per stage), fade-in included.
        fade_steps: G steps of the fade-in that opens every stage after the first (one number, or one per
            stage after the first); ``None``: half of the stage (PGGAN's equal fade and stabilize phases;
            for the last, which trains until ``max_steps``, half of the stage before it).
    """

    def __init__(
        self, stage_steps: int | list[int] = 1000, fade_steps: int | list[int] | None = None
    ) -> None:
        self.stage_steps, self.fade_steps = stage_steps, fade_steps
        self.num_stages = 0  # set by bind()
        self._ends: list[int] = []
        self._fades: list[int] = []

    def bind(self, *networks: nn.Module) -> Growth:
        """Check that every network can grow, and read the number of stages from them."""
        for net in networks:
            if not all(hasattr(net, name) for name in ("stage", "alpha", "num_stages")):
                raise ConfigError(
                    f"model.growth needs networks that grow (stage, alpha, num_stages), and "
                    f"{type(net).__name__} does not; use configs/model/pggan.yaml's PGGAN networks"
                )
        counts = {net.num_stages for net in networks}
        if len(counts) != 1:
            raise ConfigError(f"G and D grow through different numbers of stages ({sorted(counts)})")
        n = counts.pop() - 1  # stages before the last
        steps = _per_stage(self.stage_steps, n, "stage_steps")
        halves = [length // 2 for length in steps[1:] + steps[-1:]]  # the last: as the one before
        fades = _per_stage(self.fade_steps if self.fade_steps is not None else halves, n, "fade_steps")
        for s, (length, fade) in enumerate(zip(steps, fades)):
            if length < 1 or not 0 <= fade <= length:
                raise ConfigError(
                    f"model.growth: stage {s} has {length} steps and a fade-in of {fade}; each stage needs "
                    "at least 1 step and a fade-in between 0 and its length"
                )
        ends = [sum(steps[: s + 1]) for s in range(n)]
        self.num_stages, self._ends, self._fades = n + 1, ends, fades
        return self

    def stage_ends(self) -> list[int]:
        """The generator steps after which each stage but the last is complete."""
        return list(self._ends)

    def at(self, step: int) -> tuple[int, float]:
        """(stage, alpha) trained by the generator step ``step`` (0-based: the step about to run)."""
        start = 0
        for s, end in enumerate(self._ends):
            if step < end:
                return s, self._alpha(s, step - start)
            start = end
        last = len(self._ends)
        return last, self._alpha(last, step - start)

    def _alpha(self, stage: int, into: int) -> float:
        if stage == 0:
            return 1.0
        fade = self._fades[stage - 1]
        return 1.0 if fade == 0 or into >= fade else into / fade

    @staticmethod
    def reals(x: Tensor, stage: int, alpha: float) -> Tensor:
        """Full-size images -> the images of ``stage`` (4·2^stage pixels): box-filter downsampling, then,
        while ``alpha < 1``, the crossfade ``lerp(up(pool(x_s)), x_s, alpha)`` that G's output follows."""
        res = 4 * 2**stage
        factor = x.shape[-1] // res
        x = F.avg_pool2d(x, factor) if factor > 1 else x
        if alpha >= 1 or stage == 0:
            return x
        coarse = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest")
        return torch.lerp(coarse, x, alpha)

    @staticmethod
    def full_size(x: Tensor, size: int) -> Tensor:
        """Stage images -> the data's size (nearest neighbour), for grids, metrics and ``sample``."""
        return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="nearest")
