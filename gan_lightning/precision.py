"""Mixed precision (``--trainer.precision bf16-mixed`` or ``16-mixed``) with manual optimization.

Lightning's ``MixedPrecision`` plugin runs ``training_step`` under autocast, scales every
``manual_backward`` by its ``GradScaler`` (``16-mixed`` only; bf16 has fp32's range and needs none), and
for every optimizer step, D's uncounted ones included, unscales the gradients, skips the step when they
hold an inf or NaN, and updates the scale. Three things are left to the module, and live here:

* **input gradients** taken with ``torch.autograd.grad`` (the gradient penalties, the fused order's
  image gradient) follow PyTorch's AMP gradient-penalty recipe (:func:`unscaled_grad`): differentiate
  the *scaled* output, so fp16's backward doesn't underflow, then multiply by 1/scale before use;
* **skipped steps are counted** (:func:`step_was_skipped`), per network;
* **one backward, two steps** (the simultaneous and fused orders): Lightning updates the shared scale
  after each step, so after D's step the scale G's gradients carry may no longer be the scaler's
  (:func:`rescale_gradients`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

GradScaler = torch.amp.GradScaler


def grad_scaler(trainer: object | None) -> GradScaler | None:
    """The trainer's enabled GradScaler (``16-mixed``), else None (fp32, ``bf16-mixed``, no trainer).
    Lightning's ``MixedPrecision`` plugin exposes it as the public ``scaler`` attribute."""
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def unscaled_grad(
    output: Tensor,
    inputs: Tensor,
    scaler: GradScaler | None = None,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> Tensor:
    """d ``output`` / d ``inputs`` (``output`` a scalar), the true gradient, with or without a scaler.

    With a scaler: ``autograd.grad(scaler.scale(output), ...) * (1 / scale)``, PyTorch's AMP
    gradient-penalty recipe (https://pytorch.org/docs/stable/notes/amp_examples.html#gradient-penalty).
    An overflow at that scale gives inf here, which the penalty carries into D's gradients; the scaler then
    skips the step and lowers its scale, as for any overflow.
    """
    if scaler is None:
        (grad,) = torch.autograd.grad(output, inputs, create_graph=create_graph, retain_graph=retain_graph)
        return grad
    (grad,) = torch.autograd.grad(
        scaler.scale(output), inputs, create_graph=create_graph, retain_graph=retain_graph
    )
    return grad * (1.0 / scaler.get_scale())


def step_was_skipped(step: Callable[[], object], scaler: GradScaler | None) -> bool:
    """Run ``step`` (one optimizer step through Lightning's precision plugin, which updates the scale
    after it); True when the scaler skipped it for inf/NaN gradients. The update halves the scale
    (``backoff_factor``) exactly when it found one, and otherwise keeps or grows it."""
    if scaler is None:
        step()
        return False
    before = scaler.get_scale()
    step()
    return scaler.get_scale() < before


@torch.no_grad()
def rescale_gradients(
    optimizer: torch.optim.Optimizer, scaler: GradScaler | None, grads_scale: float
) -> None:
    """Bring ``optimizer``'s gradients, produced at the scale ``grads_scale``, to the scaler's current
    scale, so its unscale gives the true gradient. Needed when one backward feeds two optimizer steps:
    Lightning updates the scale after the first (halved on a skip, doubled after ``growth_interval``
    clean steps), so the second would otherwise be unscaled by the wrong factor. Infs stay infs."""
    if scaler is None or scaler.get_scale() == grads_scale:
        return
    ratio = scaler.get_scale() / grads_scale
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad.mul_(ratio)
