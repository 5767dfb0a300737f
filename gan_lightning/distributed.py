"""DDP for GANs without ``find_unused_parameters``: ``--trainer.strategy ddp_all_reduce``.

Lightning's DDP wraps the whole LightningModule, G and D together, in one ``DistributedDataParallel``.
A GAN's backward passes each touch one network, so every pass leaves the other's parameters unused and
DDP must search the graph for them after each backward (``ddp_find_unused_parameters_true``,
Lightning #20328), and its reducer's hooks constrain how a penalty's double backward may be run
(PyTorch #47562, #63812).

:class:`AllReduceDDPStrategy` is Lightning's ``DDPStrategy`` with the wrapper left out, and the three
things the wrapper did done by hand:

* **gradients**: each optimizer step first replaces the gradients of exactly the parameters it is about
  to step with their mean over the ranks, in one flat all-reduce per dtype
  (:func:`all_reduce_gradients`). Every step goes through ``Strategy.optimizer_step``: G's
  ``opt.step()`` and D's uncounted steps (:func:`gan_lightning.updates._step_without_counting`) alike, so
  this one override is the whole hook into the update loop. The mean is taken after the backward and
  before the precision plugin's unscale, inf check and step: under ``16-mixed`` the ranks average the
  *scaled* gradients (unscaling is linear, so the result is the same), an inf on any rank reaches every
  rank, and all ranks skip the same steps and keep one loss scale;
* **parameters** start as rank 0's (broadcast at setup, as DDP's constructor does), and stay bitwise
  identical: every rank applies the same averaged gradients with the same optimizer state;
* **buffers** (BatchNorm's running statistics, the EMA generator's, the step counters) are broadcast
  from rank 0 once per training step, like DDP's ``broadcast_buffers``. DDP does it before the forward;
  here it is done after the step, which gives the next step the same values and also leaves every rank
  with rank 0's model for validation, metrics and sampling between steps.

Everything else is Lightning's DDP: the launcher, the process group, the DistributedSampler, ``sync_dist``
logging, rank-0 checkpointing. Between a backward and its step, a rank's gradients are still its own:
read or clip them in ``on_before_optimizer_step``, which runs after the average. docs/ddp.md compares
this strategy with ``ddp_find_unused_parameters_true``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch import Tensor


def _groups(tensors: Iterable[Tensor], by_dtype: bool = True) -> list[list[Tensor]]:
    """The tensors in groups that can be concatenated into one flat tensor each."""
    groups: dict[tuple, list[Tensor]] = defaultdict(list)
    for t in tensors:
        groups[(t.device, t.dtype) if by_dtype else (t.device,)].append(t)
    return list(groups.values())


@torch.no_grad()
def broadcast_from_rank_zero(tensors: Iterable[Tensor]) -> None:
    """Overwrite ``tensors`` (parameters, buffers) in place with rank 0's values, bit for bit: their bytes,
    whatever their dtypes, in one broadcast per device."""
    for group in _groups(tensors, by_dtype=False):
        group.sort(key=lambda t: -t.element_size())  # each slice's byte offset stays aligned to its dtype
        flat = torch.cat([t.reshape(-1).view(torch.uint8) for t in group])
        dist.broadcast(flat, src=0)
        sizes = [t.numel() * t.element_size() for t in group]
        for t, value in zip(group, flat.split(sizes)):
            t.copy_(value.view(t.dtype).view_as(t))


@torch.no_grad()
def all_reduce_gradients(params: Iterable[Tensor]) -> None:
    """Replace each trainable parameter's gradient with its mean over the ranks, in one flat all-reduce per
    dtype. A gradient that is ``None`` on some ranks counts as zero there (as in DDP with unused
    parameters); one that is ``None`` on every rank stays ``None``. A per-parameter "has a gradient" count
    travels in the same all-reduce and is read only by a rank that lacks some gradient."""
    world = dist.get_world_size()
    for group in _groups(p for p in params if p.requires_grad):
        present = [p.grad is not None for p in group]
        grads = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in group]
        flat = torch.cat([*grads, torch.tensor(present, dtype=group[0].dtype, device=group[0].device)])
        dist.all_reduce(flat)  # SUM, then / world below: gloo (CPU) has no ReduceOp.AVG
        n = flat.numel() - len(group)
        flat[:n].div_(world)
        counts = None if all(present) else flat[n:].tolist()  # no device sync in the usual case
        for i, (p, mean) in enumerate(zip(group, flat[:n].split([p.numel() for p in group]))):
            if p.grad is not None:
                p.grad.copy_(mean.view_as(p))
            elif counts[i] > 0:  # another rank has this gradient: take the same mean it does
                p.grad = mean.view_as(p).clone()


# Explicit all-reduce, not separate G/D DDP wrappers: no reducer hooks inside the penalties' double backward
class AllReduceDDPStrategy(DDPStrategy):
    """DDP with no ``DistributedDataParallel`` wrapper: each optimizer step all-reduces the gradients of
    exactly the network it steps (see the module docstring). Registered as ``ddp_all_reduce``."""

    def configure_ddp(self) -> None:
        # instead of the wrapper: every rank starts from rank 0's weights and buffers, as DDP's would
        broadcast_from_rank_zero([*self.model.parameters(), *self.model.buffers()])

    def optimizer_step(
        self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any], model: Any = None, **kwargs: Any
    ) -> Any:
        def closure_then_average() -> Any:
            result = closure()  # manual optimization: a no-op; the backward has already run
            all_reduce_gradients(p for group in optimizer.param_groups for p in group["params"])
            return result

        # the precision plugin calls the closure, then unscales, checks for infs and steps
        return super().optimizer_step(optimizer, closure_then_average, model, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        output = super().training_step(*args, **kwargs)
        broadcast_from_rank_zero(self.lightning_module.buffers())
        return output


if "ddp_all_reduce" not in StrategyRegistry:
    StrategyRegistry.register(
        "ddp_all_reduce",
        AllReduceDDPStrategy,
        description="DDP without the LightningModule wrapper: gradients all-reduced per optimizer step",
    )
