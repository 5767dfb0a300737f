"""Discriminator-side tricks: transforms of every D input, PacGAN packing and experience replay.

The label tricks (smoothing, flipping) act on D's targets and live with the loss families in
:mod:`gan_lightning.losses`.
"""

from gan_lightning.tricks.base import DInputTransform
from gan_lightning.tricks.diffaugment import DiffAugment
from gan_lightning.tricks.instance_noise import InstanceNoise
from gan_lightning.tricks.pacgan import pack, packed_shape
from gan_lightning.tricks.replay import ExperienceReplay

__all__ = ["DInputTransform", "DiffAugment", "ExperienceReplay", "InstanceNoise", "pack", "packed_shape"]
