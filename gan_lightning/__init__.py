"""gan_lightning: a PyTorch Lightning research template for GANs."""

__version__ = "0.1.0"
