"""Normalization layers and the norm factory every network uses.

Conditional layers subclass :class:`ConditionalLayer` and are called as ``layer(x, c)``;
:class:`ConditionalSequential` passes ``c`` to those and calls the others as ``layer(x)``. Each wraps a
plain ``nn.BatchNorm*d(affine=False)`` child, so ``SyncBatchNorm.convert_sync_batchnorm`` converts the
statistics and keeps the conditional affine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import ConfigError

NORMS = ("batch", "instance", "layer", "group", "pixel", "switchable", "none")


class ConditionalLayer(nn.Module):
    """Marker base class: ``forward(x, c)`` takes a condition (class ids or a vector)."""


def call_with_condition(module: nn.Module, x: Tensor, c: Tensor | None) -> Tensor:
    return module(x, c) if isinstance(module, ConditionalLayer) else module(x)


class ConditionalSequential(nn.Sequential):
    """``nn.Sequential`` whose ``forward(x, c)`` hands ``c`` to its conditional layers."""

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for module in self:
            x = call_with_condition(module, x, c)
        return x


def _broadcast(v: Tensor, x: Tensor) -> Tensor:
    """(N, C) -> (N, C, 1, ..., 1) to scale an (N, C, ...) activation."""
    return v.view(*v.shape, *([1] * (x.dim() - 2)))


class ConditionalBatchNorm2d(ConditionalLayer):
    """Class-conditional BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018's G):
    ``y = gamma[c] * BN(x) + beta[c]``, one gain and bias per class, initialised to N(1, 0.02) and 0 (as
    mimicry and DCGAN's BN scales: the classes differ from the first step).

    Args:
        num_features: channels C.
        num_classes: number of classes; ``forward(x, y)`` takes (N,) long class ids.
    """

    _bn = nn.BatchNorm2d

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = self._bn(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.normal_(self.gain.weight, 1.0, 0.02)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        return _broadcast(self.gain(y), x) * self.bn(x) + _broadcast(self.bias(y), x)


class ConditionalBatchNorm1d(ConditionalBatchNorm2d):
    """:class:`ConditionalBatchNorm2d` for (N, C) features (MLP generators)."""

    _bn = nn.BatchNorm1d


class ProjectedBatchNorm2d(ConditionalLayer):
    """BigGAN's conditional BN (Brock et al. 2019, "ccbn"): gain and bias are linear projections of a
    condition vector c (the shared class embedding, and/or a chunk of z for the hierarchical latent):
    ``y = (1 + W_g c) * BN(x) + W_b c``. The 1 + makes the layer plain BN at init-scale projections.
    """

    def __init__(self, num_features: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:  # type: ignore[override]
        return (1 + _broadcast(self.gain(c), x)) * self.bn(x) + _broadcast(self.bias(c), x)


class PixelNorm(nn.Module):
    """Pixelwise feature normalization (Karras et al. 2018, PGGAN):
    ``b_xy = a_xy / sqrt(mean_j (a^j_xy)^2 + eps)`` over channels j; no parameters."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + self.eps)


class SwitchableNorm2d(nn.Module):
    """Switchable normalization (Luo et al. 2019): one learned mix of instance, layer and batch
    statistics, ``y = gamma * (x - sum_k w_k mu_k) / sqrt(sum_k w'_k var_k + eps) + beta`` with
    ``w = softmax(mean_weight)``, ``w' = softmax(var_weight)`` over k in (IN, LN, BN) in that order.
    The BN statistics are batch ones in training (updating running averages) and running ones in eval.
    Variances are biased (divide by the count), as in ``BatchNorm`` / ``InstanceNorm`` normalization.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.mean_weight = nn.Parameter(torch.ones(3))
        self.var_weight = nn.Parameter(torch.ones(3))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)
        mean_in = flat.mean(-1, keepdim=True)
        second_in = flat.square().mean(-1, keepdim=True)  # E[x^2], so LN/BN stats derive from IN's
        var_in = second_in - mean_in.square()
        mean_ln = mean_in.mean(1, keepdim=True)
        var_ln = second_in.mean(1, keepdim=True) - mean_ln.square()
        if self.training:
            mean_bn = mean_in.mean(0, keepdim=True)
            var_bn = second_in.mean(0, keepdim=True) - mean_bn.square()
            with torch.no_grad():
                self.running_mean.lerp_(mean_bn.flatten(), self.momentum)
                self.running_var.lerp_(var_bn.flatten(), self.momentum)
        else:
            mean_bn, var_bn = self.running_mean.view(1, c, 1), self.running_var.view(1, c, 1)
        wm, wv = F.softmax(self.mean_weight, 0), F.softmax(self.var_weight, 0)
        mean = wm[0] * mean_in + wm[1] * mean_ln + wm[2] * mean_bn
        var = wv[0] * var_in + wv[1] * var_ln + wv[2] * var_bn
        out = ((flat - mean) / torch.sqrt(var.clamp_min(0) + self.eps)).view_as(x)
        return out * _broadcast(self.weight.expand(n, c), x) + _broadcast(self.bias.expand(n, c), x)


def _groups(c: int) -> int:
    """The largest divisor of c up to 32 (GroupNorm's default of Wu & He 2018)."""
    return max(g for g in range(1, min(32, c) + 1) if c % g == 0)


def make_norm(kind: str, num_features: int, dims: int = 2) -> nn.Module:
    """The norm layer named by ``kind`` for C = ``num_features`` channels (``dims=2``: (N, C, H, W);
    ``dims=1``: (N, C) features). "layer" is GroupNorm(1, C) and "instance" GroupNorm(C, C), both with
    a per-channel affine: the form gradient-penalty critics use (Gulrajani et al. 2017), since batch
    statistics couple the samples the penalty treats separately.
    """
    if kind == "virtual":  # the generators build it themselves (nets/g_layers.py): it needs their reference
        raise ConfigError(
            "norm 'virtual' (virtual batch norm) needs a generator's fixed reference latents: it is a "
            "DCGANGenerator / MLPGenerator option; pick another norm here"
        )
    if kind not in NORMS:
        raise ConfigError(f"unknown norm {kind!r}; use one of {', '.join(repr(k) for k in NORMS)}")
    if dims == 1 and kind in ("instance", "group", "switchable"):
        raise ConfigError(f"norm {kind!r} needs image features; use 'batch', 'layer', 'pixel' or 'none'")
    c = num_features
    if kind == "batch":
        return nn.BatchNorm2d(c) if dims == 2 else nn.BatchNorm1d(c)
    if kind == "layer":
        return nn.GroupNorm(1, c)
    if kind == "instance":
        return nn.GroupNorm(c, c)
    if kind == "group":
        return nn.GroupNorm(_groups(c), c)
    if kind == "pixel":
        return PixelNorm()
    if kind == "switchable":
        return SwitchableNorm2d(c)
    return nn.Identity()
