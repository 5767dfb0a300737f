"""Networks. Each is built as ``Net(data_shape, num_classes)`` (both linked from the data module by the
CLI) plus its config arguments; the contract is in :mod:`gan_lightning.nets.layers`."""

from gan_lightning.nets.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_start_size
from gan_lightning.nets.layers import DiscriminatorHead, orthogonal_penalty
from gan_lightning.nets.mlp import MLPDiscriminator, MLPGenerator
from gan_lightning.nets.multiscale import MultiScaleDiscriminator
from gan_lightning.nets.pggan import PGGANDiscriminator, PGGANGenerator
from gan_lightning.nets.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DiscriminatorHead",
    "MLPDiscriminator",
    "MLPGenerator",
    "MultiScaleDiscriminator",
    "PGGANDiscriminator",
    "PGGANGenerator",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "dcgan_start_size",
    "orthogonal_penalty",
]
