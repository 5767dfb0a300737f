"""Data sources. Every one yields (x, y) batches with x in [-1, 1] on the device."""

from gan_lightning.data.base import GANDataModule, StepBatchSampler, TensorSamples, to_uint8, to_unit_range
from gan_lightning.data.digits import EmbeddedDigits
from gan_lightning.data.folder import ImageFolderImages
from gan_lightning.data.images import TorchvisionImages
from gan_lightning.data.stacked import StackedDigits
from gan_lightning.data.toy2d import GaussianMixture2D

__all__ = [
    "EmbeddedDigits",
    "GANDataModule",
    "GaussianMixture2D",
    "ImageFolderImages",
    "StackedDigits",
    "StepBatchSampler",
    "TensorSamples",
    "TorchvisionImages",
    "to_uint8",
    "to_unit_range",
]
