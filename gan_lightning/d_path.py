"""The one way into D (after stylegan2-ada's ``run_D``): every D evaluation, in every update order, every
penalty and the evaluation scores, goes through :class:`DiscriminatorPath`.

``prepare`` applies the configured D-input transforms (DiffAugment, instance noise, ...) to one batch,
each with its own random draws (real and fake are prepared separately, so their draws are independent),
then packs ``pack`` samples into one (PacGAN). ``scores`` calls D on prepared inputs, with the labels
when D is conditional, and returns the ACGAN class logits when D has that head.

**Penalties see D's actual inputs.** A gradient penalty is computed on the prepared (transformed, packed)
real and fake batches of the same D step, and differentiates D w.r.t. those inputs: it constrains the
function D computes on what it is shown, which is what the penalty's theory is about (Mescheder et al.
2018 for R1/R2; Gulrajani et al. 2017 interpolate between the samples the critic compares). With PacGAN,
interpolates are therefore packed exactly as the loss's inputs are (Lin et al. 2018 pack every D input).
(stylegan2-ada takes R1 w.r.t. the un-augmented image through the augmentation instead; with
differentiable augmentations the two differ by the augmentation's Jacobian, identity for translation.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigError
from gan_lightning.tricks.pacgan import pack, packed_shape

__all__ = ["DOutput", "DiscriminatorPath", "pack", "packed_shape"]


@dataclass
class DOutput:
    scores: Tensor  # one raw score per (packed) sample
    class_logits: Tensor | None = None  # ACGAN's auxiliary classifier, when D has it


class DiscriminatorPath:
    """Transforms, packing and the (conditional) call of D, in one place. A plain object: D and the
    transforms are registered on the GANModule (their weights and buffers are saved once, there).

    Args:
        discriminator: D; conditional when ``num_classes > 0`` (called as ``D(x, y)``).
        transforms: D-input transforms applied in order to every D input.
        pack: PacGAN's m (1: no packing).
        num_classes: classes D is conditioned on (0: unconditional).
        compiled: ``torch.compile(discriminator)`` (same weights) for the loss's D forwards; the penalties
            always run ``discriminator`` itself, since compiled graphs cannot be differentiated twice
            (PyTorch #91469: "torch.compile with aot_autograd does not currently support double backward").
    """

    def __init__(
        self,
        discriminator: nn.Module,
        transforms: Sequence[nn.Module] = (),
        pack: int = 1,
        num_classes: int = 0,
        compiled: nn.Module | None = None,
    ) -> None:
        if pack < 1:
            raise ConfigError(f"model.pack must be >= 1, got {pack}")
        if pack > 1 and num_classes:
            raise ConfigError("PacGAN packing of a class-conditional D is not supported; set model.pack 1")
        self.discriminator = discriminator
        self.compiled = compiled
        self.transforms = transforms
        self.pack = pack
        self.num_classes = num_classes
        head = getattr(discriminator, "head", None)
        self.acgan = getattr(head, "conditioning", None) == "acgan" and num_classes > 0

    def prepare(
        self, x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor | None]:
        """What D sees for the batch ``x`` (labels ``y``): transformed, then packed."""
        for transform in self.transforms:
            x = transform(x, generator)
        return pack(x, self.pack), y

    def scores(
        self, x: Tensor, y: Tensor | None = None, with_logits: bool = False, eager: bool = False
    ) -> DOutput:
        """D on prepared inputs (compiled when there is a compiled D, unless ``eager``)."""
        d = self.discriminator
        if self.num_classes and y is None:
            raise ConfigError("this D is class-conditional: it needs labels with every input")
        if with_logits and self.acgan:
            h = d.features(x, y)
            return DOutput(d.head(h, y), d.head.classify(h))
        d = self.compiled if self.compiled is not None and not eager else d
        return DOutput(d(x, y) if self.num_classes else d(x))

    def run(
        self, x: Tensor, y: Tensor | None, generator: torch.Generator | None, with_logits: bool = False
    ) -> tuple[DOutput, Tensor, Tensor | None]:
        """prepare + scores: (D's output, the prepared inputs, their labels)."""
        xp, yp = self.prepare(x, y, generator)
        return self.scores(xp, yp, with_logits), xp, yp

    def scorer(self, y: Tensor | None) -> Callable[[Tensor], Tensor]:
        """D's scores as a function of prepared inputs with fixed labels: what the penalties differentiate."""
        return lambda x: self.scores(x, y, eager=True).scores
