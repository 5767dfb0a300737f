"""Discriminator-side tricks (transforms of every D input, PacGAN packing, experience replay) and the
generator-side objectives (feature matching, historical averaging, the unrolled G loss).

The label tricks (smoothing, flipping) act on D's targets and live with the loss families in
:mod:`gan_lightning.losses`.
"""

from gan_lightning.tricks.base import DInputTransform
from gan_lightning.tricks.diffaugment import DiffAugment
from gan_lightning.tricks.g_objectives import FeatureMatching, HistoricalAveraging, UnrolledD
from gan_lightning.tricks.instance_noise import InstanceNoise
from gan_lightning.tricks.pacgan import pack, packed_shape
from gan_lightning.tricks.replay import ExperienceReplay

__all__ = [
    "DInputTransform",
    "DiffAugment",
    "ExperienceReplay",
    "FeatureMatching",
    "HistoricalAveraging",
    "InstanceNoise",
    "UnrolledD",
    "pack",
    "packed_shape",
]
