"""Generator-side objectives of seed 001's catalogue (Salimans et al. 2016; Metz et al. 2017).

* :class:`FeatureMatching`: G matches the mean D features of real and fake batches.
* :class:`HistoricalAveraging`: a penalty ``||theta - mean of past theta||^2`` on G, D or both.
* :class:`UnrolledD`: G's loss is taken against D after ``k`` look-ahead updates.

Each is a config switch on :class:`~gan_lightning.module.GANModule` (``feature_matching``,
``historical_averaging``, ``unrolled``), off by default. They read D only through its public contract:
``D.features(x, y)`` (every network in :mod:`gan_lightning.nets` has it) or a named submodule of D.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.optim.swa_utils import AveragedModel

from gan_lightning.errors import ConfigError


class FeatureMatching(nn.Module):
    """Feature matching (Salimans et al. 2016, sec. 3.1): ``|| E f(x) - E f(G(z)) ||_2^2``, with ``f`` D's
    features on its (prepared) inputs; the real features carry no gradient.

    Args:
        weight: the term's weight in G's loss.
        layer: the D submodule whose output is ``f`` (a name from ``D.named_modules()``, e.g. ``body.3``);
            ``None``: ``D.features``, the input of D's last layer, as in the paper.
        replace_adversarial: G's loss is the feature-matching term alone (the paper's form); ``False``
            adds it to the adversarial G loss.
    """

    def __init__(self, weight: float = 1.0, layer: str | None = None, replace_adversarial: bool = False):
        super().__init__()
        if weight <= 0:
            raise ConfigError(f"feature_matching.weight must be > 0, got {weight}")
        self.weight = weight
        self.layer = layer
        self.replace_adversarial = replace_adversarial

    def check(self, discriminator: nn.Module) -> None:
        """Fail at construction, not at the first G step, when D cannot give features."""
        if self.layer is None and not hasattr(discriminator, "features"):
            raise ConfigError(
                f"feature matching needs D.features(x, y); {type(discriminator).__name__} has none: name "
                "a D layer with model.feature_matching.init_args.layer"
            )
        if self.layer is not None:
            names = dict(discriminator.named_modules())
            if self.layer not in names:
                some = ", ".join(n for n in list(names)[1:9])
                raise ConfigError(
                    f"feature_matching.layer {self.layer!r} is not a layer of {type(discriminator).__name__} "
                    f"(e.g. {some}, ...)"
                )

    def features(self, discriminator: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
        """D's features of prepared inputs ``x`` (labels ``y`` for a conditional D), flattened per sample."""
        args = (x, y) if y is not None else (x,)
        if self.layer is None:
            return discriminator.features(*args).flatten(1)
        captured: list[Tensor] = []
        hook = discriminator.get_submodule(self.layer).register_forward_hook(
            lambda _m, _i, out: captured.append(out)
        )
        try:
            discriminator(*args)
        finally:
            hook.remove()
        return captured[0].flatten(1)

    def distance(
        self,
        discriminator: nn.Module,
        real_in: Tensor,
        fake_in: Tensor,
        y_real: Tensor | None,
        y_fake: Tensor | None,
    ) -> Tensor:
        """Squared L2 distance of the batch means of D's features of prepared real and fake inputs; the
        real features carry no gradient."""
        with torch.no_grad():
            real_mean = self.features(discriminator, real_in, y_real).mean(0)
        return (real_mean - self.features(discriminator, fake_in, y_fake).mean(0)).pow(2).sum()

    def combine(self, adversarial: Tensor, distance: Tensor) -> Tensor:
        """G's loss: the weighted distance, plus the adversarial loss unless it is replaced."""
        return (adversarial * 0.0 if self.replace_adversarial else adversarial) + self.weight * distance


class HistoricalAveraging(nn.Module):
    """Historical averaging (Salimans et al. 2016, sec. 3.3): ``weight * sum_p ||p - mean of p's past
    values||^2`` added to the loss of each averaged network.

    The mean is over the values the parameters had at every earlier step of that network (strictly past:
    at the first step there is no history and the penalty is 0). It is an equal-weight average, kept with
    ``torch.optim.swa_utils.AveragedModel`` (SWA's running mean), registered under the GANModule, so it is
    saved in every checkpoint and a resumed run continues it.

    Args:
        weight: the penalty's weight.
        apply_to: "g", "d" or "both" (not ``on``: YAML 1.1 reads a key ``on`` as the boolean true).
    """

    def __init__(self, weight: float = 1.0, apply_to: Literal["g", "d", "both"] = "both") -> None:
        super().__init__()
        if weight <= 0:
            raise ConfigError(f"historical_averaging.weight must be > 0, got {weight}")
        if apply_to not in ("g", "d", "both"):
            raise ConfigError(f"historical_averaging.apply_to must be 'g', 'd' or 'both', got {apply_to!r}")
        self.weight = weight
        self.apply_to = apply_to
        self.averages = nn.ModuleDict()

    def attach(self, generator: nn.Module, discriminator: nn.Module) -> None:
        for name, net in (("g", generator), ("d", discriminator)):
            if self.apply_to in (name, "both"):
                avg = AveragedModel(net, use_buffers=False)
                avg.module.requires_grad_(False)  # a record of the past, never trained
                self.averages[name] = avg

    def penalty(self, name: str, net: nn.Module) -> Tensor | None:
        """The penalty of network ``name`` ("g" or "d") against its past mean; ``None`` when not averaged."""
        if name not in self.averages:
            return None
        avg = self.averages[name]
        if int(avg.n_averaged) == 0:
            return next(net.parameters()).new_zeros(())
        pairs = zip(net.parameters(), avg.module.parameters())
        return self.weight * sum((p - a).pow(2).sum() for p, a in pairs)

    def record(self, name: str, net: nn.Module) -> None:
        """Add the network's current values to its history (call after the backward, before the step)."""
        if name in self.averages:
            self.averages[name].update_parameters(net)


class UnrolledD(nn.Module):
    """Unrolled GAN (Metz et al. 2017): G's loss is the G loss against ``D_k``, D after ``k`` look-ahead
    updates on D's loss (on the current real batch and the G step's fakes).

    * ``exact``: the look-ahead updates are differentiated through (``torch.func.functional_call`` with
      ``create_graph``), so G's gradient includes how D would react to G's samples: the paper's form,
      whose cost grows with ``k`` in time and memory (the graphs of all k updates are kept).
    * first-order (``exact: false``): D_k is computed without a graph and G's gradient is taken through
      D_k held fixed (cheaper, no second-order terms).

    The look-ahead updates are D's own optimizer's (``optimizer: d``; Adam, AdamW or SGD): they start from
    its state (moment estimates, step count, momentum) and apply its update rule, written out so it can be
    differentiated (torch's optimizers update in place, outside autograd), as Metz et al. unroll their
    Adam. ``optimizer: sgd``: plain gradient steps of size ``lr``. D's real parameters,
    buffers (BatchNorm statistics, spectral-norm vectors) and optimizer state are never changed: the
    look-ahead works on copies. Penalties are not part of the look-ahead loss. Needs a separate G step:
    ``order`` d_first or g_first.

    Args:
        k: look-ahead updates (Metz et al.: 5 to 10 on the 2D ring).
        exact: differentiate through the look-ahead (see above).
        optimizer: "d" (D's optimizer: its rule, state and settings) or "sgd" (plain gradient steps).
        lr: the step size; ``None``: D's optimizer's learning rate.
    """

    def __init__(
        self, k: int = 5, exact: bool = True, optimizer: Literal["d", "sgd"] = "d", lr: float | None = None
    ) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"unrolled.k must be >= 1, got {k}")
        if lr is not None and lr <= 0:
            raise ConfigError(f"unrolled.lr must be > 0 or null, got {lr}")
        if optimizer not in ("d", "sgd"):
            raise ConfigError(f"unrolled.optimizer must be 'd' or 'sgd', got {optimizer!r}")
        self.k, self.exact, self.optimizer, self.lr = k, exact, optimizer, lr

    def g_loss(
        self,
        discriminator: nn.Module,
        d_optimizer: torch.optim.Optimizer,
        d_loss: Callable[[Tensor, Tensor], Tensor],
        g_loss: Callable[[Tensor, Tensor], Tensor],
        real_in: Tensor,
        fake_in: Tensor,
        y_real: Tensor | None,
        y_fake: Tensor | None,
    ) -> Tensor:
        """G's loss against D after ``k`` look-ahead updates. ``d_loss(real_scores, fake_scores)`` and
        ``g_loss(fake_scores, real_scores)`` are the loss family's; ``fake_in`` carries G's graph."""
        params = {n: p.detach().clone().requires_grad_(True) for n, p in discriminator.named_parameters()}
        buffers = {n: b.clone() for n, b in discriminator.named_buffers()}
        step = _LookAhead(discriminator, d_optimizer, self.optimizer, self.lr)

        def scores(p: dict[str, Tensor], x: Tensor, y: Tensor | None) -> Tensor:
            return functional_call(discriminator, {**p, **buffers}, (x, y) if y is not None else (x,))

        real_in = real_in.detach()
        fakes = fake_in if self.exact else fake_in.detach()
        with torch.enable_grad():
            for _ in range(self.k):
                loss = d_loss(scores(params, real_in, y_real), scores(params, fakes, y_fake))
                grads = torch.autograd.grad(loss, list(params.values()), create_graph=self.exact)
                params = step(params, grads)
                if not self.exact:
                    params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        if not self.exact:
            params = {n: p.detach() for n, p in params.items()}
        return g_loss(scores(params, fake_in, y_fake), scores(params, real_in, y_real))


class _LookAhead:
    """One differentiable update of D's parameters with D's optimizer's rule and state (Adam, AdamW, SGD
    with momentum), or a plain gradient step.

    Written by hand: torch's optimizers step in place under ``no_grad``, which autograd cannot see through.
    """

    def __init__(self, d: nn.Module, opt: torch.optim.Optimizer, kind: str, lr: float | None) -> None:
        names = {p: n for n, p in d.named_parameters()}
        if kind == "sgd":
            self.rule = "plain"
        elif isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)):
            self.rule = "adamw" if isinstance(opt, torch.optim.AdamW) else "adam"
        elif isinstance(opt, torch.optim.SGD):
            self.rule = "sgd"
        else:
            raise ConfigError(
                f"unrolled.optimizer 'd' can mirror Adam, AdamW and SGD, not {type(opt).__name__}; set "
                "model.unrolled.init_args.optimizer sgd (plain gradient steps)"
            )
        self.settings: dict[str, dict] = {}
        self.state: dict[str, dict] = {}
        for group in opt.param_groups:
            for p in group["params"]:
                if p in names:
                    self.settings[names[p]] = {**group, "lr": lr if lr is not None else group["lr"]}
                    self.state[names[p]] = {
                        k: v.detach() if torch.is_tensor(v) else v for k, v in opt.state.get(p, {}).items()
                    }

    def __call__(self, params: dict[str, Tensor], grads: tuple[Tensor, ...]) -> dict[str, Tensor]:
        out = {}
        for (name, p), g in zip(params.items(), grads):
            s, state = self.settings[name], self.state[name]
            if self.rule == "plain":
                out[name] = p - s["lr"] * g
                continue
            wd = s["weight_decay"]
            if wd and self.rule != "adamw":
                g = g + wd * p
            if self.rule == "sgd":
                if s["momentum"]:
                    buf = state.get("momentum_buffer")
                    buf = g if buf is None else s["momentum"] * buf + (1 - s["dampening"]) * g
                    state["momentum_buffer"] = buf
                    g = g + s["momentum"] * buf if s["nesterov"] else buf
                out[name] = p - s["lr"] * g
                continue
            (b1, b2), eps = s["betas"], s["eps"]
            t = float(state.get("step", 0)) + 1
            m = b1 * state.get("exp_avg", torch.zeros_like(p)) + (1 - b1) * g
            v = b2 * state.get("exp_avg_sq", torch.zeros_like(p)) + (1 - b2) * g * g
            state.update(step=t, exp_avg=m, exp_avg_sq=v)
            # clamp: sqrt's derivative at 0 is inf, and inf * 0 would make G's gradient NaN
            denom = (v / (1 - b2**t)).clamp_min(1e-30).sqrt() + eps
            p = p * (1 - s["lr"] * wd) if wd and self.rule == "adamw" else p
            out[name] = p - s["lr"] * (m / (1 - b1**t)) / denom
        return out
