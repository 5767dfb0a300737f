"""Blocks shared by the networks: spectral norm, init, resampling, gated and equalized convolutions,
maxout, self-attention, minibatch statistics, label conditioning, the discriminator head and BigGAN's
orthogonal penalty. Normalization layers live in :mod:`gan_lightning.nets.norms`.

The network contract (every G and D here):

* ``__init__(data_shape, num_classes=0, *, ...)``; ``num_classes == 0`` is unconditional.
* G: ``latent_dim``; ``forward(z, y=None)``. D: ``features(x, y=None) -> (N, F)``,
  ``head(h, y=None) -> (N,)`` (a :class:`DiscriminatorHead`), ``forward(x, y) == head(features(x, y), y)``.
* Conditional networks require ``y``, (N,) long class ids.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from gan_lightning.errors import ConfigError

G_CONDITIONING = ("cbn", "concat")
D_CONDITIONING = ("projection", "acgan", "input")
UPSAMPLES = ("nearest", "bilinear", "transposed", "pixel_shuffle")
DOWNSAMPLES = ("avg_pool", "strided")


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; use one of {', '.join(repr(c) for c in choices)}")
    return value


def g_conditioning(conditioning: str, num_classes: int, norm: str, who: str) -> str | None:
    """A generator's label conditioning: ``None`` when unconditional, else the checked choice; "cbn"
    replaces the batch norms, so it needs ``norm: batch``."""
    if not num_classes:
        return None
    check_choice(conditioning, G_CONDITIONING, "generator conditioning")
    if conditioning == "cbn" and norm != "batch":
        raise ConfigError(f"conditioning 'cbn' needs norm 'batch' in {who}; set conditioning 'concat'")
    return conditioning


def require_labels(y: Tensor | None, num_classes: int, who: str) -> Tensor:
    """``y`` for a conditional network; a clear error when the caller passed none."""
    if y is None:
        raise ConfigError(
            f"{who} is class-conditional (num_classes={num_classes}) but was called without labels y; "
            "pass the batch's labels, or use num_classes 0 for an unconditional model"
        )
    return y


def start_size(image_size: int, network: str) -> tuple[int, int]:
    """(s, n) with image_size = s * 2**n, 4 <= s <= 7, n >= 1; a clear error when there is none."""
    s, n = image_size, 0
    while s > 7 and s % 2 == 0:
        s, n = s // 2, n + 1
    if not (4 <= s <= 7 and n >= 1):
        raise ConfigError(
            f"{network} cannot produce {image_size}x{image_size} images: the size must be s*2^n with 4<=s<=7 "
            "and n>=1 (e.g. 28, 32, 48, 64, 128); change data.init_args.image_size"
        )
    return s, n


def check_image_shape(data_shape: tuple[int, ...], network: str = "DCGAN") -> tuple[int, int]:
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise ConfigError(
            f"{network} networks need square images (C, H, H), but the data has shape {tuple(data_shape)}; "
            "use gan_lightning.nets.MLPGenerator / MLPDiscriminator for 2D data"
        )
    return data_shape[0], data_shape[1]


# --- weights -----------------------------------------------------------------------------------------
def apply_spectral_norm(module: nn.Module, embeddings: bool = False) -> None:
    """Spectral normalization (Miyato et al. 2018), ``W_SN = W / sigma(W)``, on every conv and linear
    weight (and embedding when ``embeddings``: the projection D's class embedding, as mimicry's
    SNEmbedding), through torch's parametrization: one power-iteration step per training forward."""
    kinds: tuple[type, ...] = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    kinds += (nn.Embedding,) if embeddings else ()
    for m in list(module.modules()):
        if isinstance(m, kinds):
            _spectral_norm(m)


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN init: conv/linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def init_normal_weights(module: nn.Module, std: float) -> None:
    """Conv/linear weights ~ N(0, std²), biases 0 (norm layers keep scale 1, shift 0): Blocks'
    ``IsotropicGaussian(std)`` and ``Constant(0)``, as PacGAN's 2D-grid code initializes its MLPs."""
    if std <= 0:
        raise ConfigError(f"init_std must be positive, got {std}")
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


INITS = ("xavier", "ortho", "normal")


def init_weights(module: nn.Module, scheme: str, gain: float = 1.0) -> None:
    """Init every conv/linear weight under ``module``: "xavier" (uniform, with ``gain``: SNGAN and
    mimicry use sqrt(2) in residual branches, 1 elsewhere), "ortho" (BigGAN) or "normal" (N(0, 0.02));
    biases 0."""
    check_choice(scheme, INITS, "init")
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight, gain)
            elif scheme == "ortho":
                nn.init.orthogonal_(m.weight)
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def orthogonal_penalty(module: nn.Module, exclude: tuple[type, ...] = (nn.Embedding,)) -> Tensor:
    """BigGAN's orthogonal regularization (Brock et al. 2019, eq. 3) without its weight beta:
    ``sum_W ||W W^T ⊙ (1 - I)||_F^2`` over every weight W of two or more dims, reshaped to
    (out, in·k·k) so the Gram matrix holds the filters' pairwise inner products. The raw weight is used
    under spectral norm (as BigGAN's code). Class embeddings are excluded (BigGAN's blacklist); biases
    and norm gains are 1-D. BigGAN adds ``beta * penalty`` to G's loss with beta = 1e-4."""
    skipped = {id(p) for m in module.modules() if isinstance(m, exclude) for p in m.parameters()}
    total = None
    for p in module.parameters():
        if p.dim() < 2 or id(p) in skipped:
            continue
        w = p.flatten(1)
        gram = w @ w.T
        off = gram * (1 - torch.eye(len(w), device=w.device, dtype=w.dtype))
        total = off.square().sum() if total is None else total + off.square().sum()
    return total if total is not None else torch.zeros(())


# --- layers --------------------------------------------------------------------------------------------
class EqualizedLinear(nn.Module):
    """Equalized learning rate (Karras et al. 2018): weights stored ~ N(0, 1) and scaled at run time by
    He's constant ``gain / sqrt(fan_in)``, so Adam's per-parameter step moves every layer equally."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gain: float = 2**0.5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualizedConv2d(nn.Module):
    """:class:`EqualizedLinear` for convolutions: ``conv(x, W * gain / sqrt(C_in k^2))``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
        bias: bool = True, gain: float = 2**0.5,
    ) -> None:  # fmt: skip
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class GatedConv2d(nn.Module):
    """Gated convolution (Yu et al. 2019, "Free-form image inpainting with gated convolution"):
    ``O = phi(W_f * x) ⊙ sigmoid(W_g * x)``, a learned soft mask per pixel and channel. ``phi`` is the
    identity by default: in a residual block the block's own BN + ReLU follow. Same arguments as
    ``nn.Conv2d``, so it can stand in for one."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
        activation: nn.Module | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, kernel_size, stride, padding)
        self.activation = activation or nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        feature, gate = self.conv(x).chunk(2, dim=1)
        return self.activation(feature) * torch.sigmoid(gate)


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al. 2013): ``h_i = max_j (W x + b)_{ij}`` over ``pieces`` linear
    pieces; PacGAN's 2D-grid D uses 5 pieces."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 5) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).unflatten(1, (-1, self.pieces)).amax(-1)


def make_upsample(kind: str, in_channels: int, out_channels: int, conv: Callable = nn.Conv2d) -> nn.Module:
    """Doubles H and W while mapping channels: "nearest" or "bilinear" resize then conv 3x3 (SNGAN;
    avoids the checkerboard of transposed convs, Odena et al. 2016), "transposed" conv 4/2, or
    "pixel_shuffle" (conv 3x3 to 4C then sub-pixel shuffle, Shi et al. 2016). ``conv`` replaces
    ``nn.Conv2d`` (e.g. :class:`GatedConv2d`)."""
    check_choice(kind, UPSAMPLES, "upsample")
    if kind == "transposed":
        if conv is not nn.Conv2d:
            raise ConfigError("gated convolutions need upsample 'nearest', 'bilinear' or 'pixel_shuffle'")
        return nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1)
    if kind == "pixel_shuffle":
        return nn.Sequential(conv(in_channels, 4 * out_channels, 3, 1, 1), nn.PixelShuffle(2))
    return nn.Sequential(nn.Upsample(scale_factor=2, mode=kind), conv(in_channels, out_channels, 3, 1, 1))


def make_downsample(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    """Halves H and W while mapping channels: "avg_pool" (conv 3x3 then 2x2 average pooling, SNGAN's D)
    or "strided" (conv 4/2, DCGAN's D)."""
    check_choice(kind, DOWNSAMPLES, "downsample")
    if kind == "strided":
        return nn.Conv2d(in_channels, out_channels, 4, 2, 1)
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1), nn.AvgPool2d(2))


class SelfAttention(nn.Module):
    """Self-attention (Zhang et al. 2019, SAGAN; BigGAN's form with 2x2 max-pooled keys and values):
    ``beta = softmax(theta(x)^T phi(x))``, ``o = W_o (g(x) beta^T)``, ``y = x + gamma * o``. The gate
    ``gamma`` starts at 0, so the block is the identity at init and the network learns to use it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 8:
            raise ConfigError(f"self-attention needs at least 8 channels, got {channels}; widen the network")
        c = channels
        self.theta = nn.Conv2d(c, c // 8, 1, bias=False)
        self.phi = nn.Conv2d(c, c // 8, 1, bias=False)
        self.g = nn.Conv2d(c, c // 2, 1, bias=False)
        self.o = nn.Conv2d(c // 2, c, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        pool = (lambda t: F.max_pool2d(t, 2)) if h % 2 == 0 and w % 2 == 0 else (lambda t: t)
        theta = self.theta(x).flatten(2)  # (N, C/8, HW)
        phi = pool(self.phi(x)).flatten(2)  # (N, C/8, HW/4)
        g = pool(self.g(x)).flatten(2)  # (N, C/2, HW/4)
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (N, HW, HW/4): each query's weights
        o = self.o((g @ beta.transpose(1, 2)).view(n, c // 2, h, w))
        return x + self.gamma * o


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, PGGAN 3): per group of ``group_size`` samples,
    the std of each feature over the group, averaged over features and positions, appended as one extra
    channel (images) or feature (vectors). Sample i belongs to group i mod (N / G). When N is not a
    multiple of the group size, G = gcd(N, group_size), so odd-sized evaluation batches still work."""

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        self.group_size, self.eps = group_size, eps

    def forward(self, x: Tensor) -> Tensor:
        n = len(x)
        g = math.gcd(n, self.group_size)
        y = x.reshape(g, n // g, *x.shape[1:])
        std = (y.var(0, correction=0) + self.eps).sqrt()  # (N/G, ...)
        std = std.flatten(1).mean(1).repeat(g)  # (N,), row i gets its group's value
        return torch.cat([x, std.view(n, 1, *([1] * (x.dim() - 2))).expand(n, 1, *x.shape[2:])], 1)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, 3.2): ``M_i = f(x_i) T`` reshaped to (B, C);
    ``c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_1)``; ``o(x_i)_b = sum_j c_b(x_i, x_j)`` (j = i
    included, as the paper's sum and code). Returns ``[f(x), o(x)]``: B = ``num_kernels`` more features."""

    def __init__(self, in_features: int, num_kernels: int, kernel_dim: int = 5) -> None:
        super().__init__()
        self.num_kernels, self.kernel_dim = num_kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, num_kernels * kernel_dim) * 0.05)

    def forward(self, h: Tensor) -> Tensor:
        m = (h @ self.T).view(len(h), self.num_kernels, self.kernel_dim)
        l1 = (m.unsqueeze(1) - m.unsqueeze(0)).abs().sum(-1)  # (N, N, B)
        return torch.cat([h, torch.exp(-l1).sum(1)], 1)


class InputConditioning(nn.Module):
    """Input conditioning for D (ganhacks #16; Mirza & Osindero 2014): a low-dimensional label
    embedding, broadcast to the image size and concatenated as ``dim`` extra input channels (or to the
    flattened input for vector data)."""

    def __init__(self, num_classes: int, dim: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        e = self.embed(y)
        if x.dim() > 2:
            e = e.view(*e.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
        return torch.cat([x, e], 1)


class DiscriminatorHead(nn.Module):
    """D's last layer, from the penultimate features h (N, F) to one raw score per sample.

    * unconditional (``num_classes == 0``), or ``conditioning`` "input" (the label entered at D's
      input): ``score = w^T h + b``;
    * "projection" (Miyato & Koyama 2018): ``score = w^T h + b + <embed(y), h>``;
    * "acgan" (Odena et al. 2017): ``score = w^T h + b``, plus ``classify(h)``: (N, num_classes)
      auxiliary class logits for the ACGAN loss.
    """

    def __init__(self, in_features: int, num_classes: int = 0, conditioning: str = "projection") -> None:
        super().__init__()
        check_choice(conditioning, D_CONDITIONING, "discriminator conditioning")
        self.in_features, self.num_classes = in_features, num_classes
        self.conditioning = conditioning if num_classes else None
        self.linear = nn.Linear(in_features, 1)
        self.embed = nn.Embedding(num_classes, in_features) if self.conditioning == "projection" else None
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)  # mimicry's SNEmbedding init
        self.classifier = nn.Linear(in_features, num_classes) if self.conditioning == "acgan" else None

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(require_labels(y, self.num_classes, "the projection D")) * h).sum(1)
        return out

    def classify(self, h: Tensor) -> Tensor:
        """ACGAN's auxiliary classifier: (N, num_classes) logits."""
        if self.classifier is None:
            raise ConfigError(
                "this discriminator has no auxiliary classifier; set its conditioning to 'acgan' "
                "(and num_classes > 0) to use the ACGAN loss"
            )
        return self.classifier(h)
