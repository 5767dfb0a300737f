"""Networks. Each takes ``data_shape`` as its first argument, linked from the data module by the CLI."""

from gan_lightning.nets.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_start_size
from gan_lightning.nets.mlp import MLPDiscriminator, MLPGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLPDiscriminator", "MLPGenerator", "dcgan_start_size"]
