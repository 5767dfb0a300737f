"""Training health: the signs that a GAN run is failing, logged and caught early.

:class:`HealthMonitor` logs, every ``every_n_steps`` generator steps (by default the trainer's
``log_every_n_steps``, so the values land in the logger at the steps it writes):

* ``grad_norm/G``, ``grad_norm/D``: the total L2 norm of each network's gradient, as its optimizer is
  about to step (D's last update of the step), read in ``on_before_optimizer_step``: Lightning calls it
  inside every ``optimizer.step()``, manual optimization and the D steps taken without counting included,
  after AMP's unscale;
* ``scores/acc_real``, ``scores/acc_fake``: D's accuracy on the reals and fakes of its last update. A real
  is right when its score is above the family's ``decision_threshold`` (0 for logits and hinge, the
  midpoint (a + b) / 2 of the least-squares targets), a fake when below it. Families with no fixed
  threshold (a Wasserstein critic, the relativistic families) are cut at the midpoint of the batch's mean
  real and mean fake score, so 100 % means the batch is separated by one cut;
* ``scores/wasserstein``: E D(x) - E D(G(z)) for the critics (WGAN, WGAN-GP, hinge); the means themselves
  (``scores/real``, ``scores/fake``) and each penalty (``loss/D/<regularizer>``) the module logs already.

At those steps it checks for four failures, each reported once, in one line naming the likely cause and
a fix, or set to stop the run (``<check>_action: stop``; ``off`` disables it):

* ``d_loss``: D's loss stays below ``d_loss_floor`` for ``d_loss_patience`` steps (not for Wasserstein,
  whose loss has no floor; label smoothing keeps the BCE loss above its floor, so there it never fires);
* ``grad_norm``: G's or D's gradient norm stays above ``grad_norm_limit`` for ``grad_norm_patience`` steps
  (infinite norms are AMP's skipped steps, not counted);
* ``d_accuracy``: D is right on every real and every fake for ``d_accuracy_patience`` steps;
* ``trend``: over the last ``trend_window`` steps G's loss rose and D's fell, each by more than
  ``trend_threshold`` of its own size (the means of the window's second half against its first half).

The values stay on the device between checks and are read once per check, one transfer. A stop raises
:class:`~gan_lightning.errors.TrainingUnhealthyError` before the checkpoint callbacks run (Lightning
orders them last), so the bad step is never saved; every rank takes part in the decision.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from gan_lightning.errors import ConfigError, TrainingUnhealthyError
from gan_lightning.losses import Hinge, Wasserstein

Action = Literal["warn", "stop", "off"]
log = logging.getLogger(__name__)

# the families whose E D(x) - E D(G(z)) is (or is reported as) a Wasserstein-1 estimate
CRITICS = (Wasserstein, Hinge)


def grad_norm(optimizer: torch.optim.Optimizer) -> Tensor | None:
    """Total L2 norm of the gradients of an optimizer's parameters (None when none has a gradient)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else None


def d_accuracy(real: Tensor, fake: Tensor, threshold: float | None) -> tuple[Tensor, Tensor]:
    """D's accuracy on reals (score above the threshold) and fakes (below it). ``None``: cut at the
    midpoint of the batch's mean real and mean fake score."""
    cut = 0.5 * (real.mean() + fake.mean()) if threshold is None else threshold
    return (real > cut).float().mean(), (fake < cut).float().mean()


def _say(message: str) -> None:
    rank_zero_only(log.warning)(message)


class HealthMonitor(L.Callback):
    """Logs the training-health values and warns (or stops) on the classic failures; see the module doc.

    Args:
        every_n_steps: generator steps between two checks (None: the trainer's ``log_every_n_steps``).
        grad_norm_limit: a G or D gradient norm above this, at every check for ``grad_norm_patience``
            steps, is an exploding gradient (a single spike is not: the healthy quickstart has one).
        d_loss_floor: a D loss below this counts as "near 0".
        d_loss_patience: steps D's loss must stay near 0 before the check fires.
        d_accuracy_patience: steps D must stay right on every sample before the check fires.
        trend_window: steps over which G's loss must rise and D's fall.
        trend_threshold: the relative change (of the window's first-half mean) each must exceed.
        grad_norm_action, d_loss_action, d_accuracy_action, trend_action: ``warn`` (one line, once),
            ``stop`` (end the run: one ``error:`` line, exit 2, checkpoints untouched) or ``off``.
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        grad_norm_limit: float = 100.0,
        grad_norm_patience: int = 100,
        d_loss_floor: float = 0.01,
        d_loss_patience: int = 500,
        d_accuracy_patience: int = 1000,
        trend_window: int = 1000,
        trend_threshold: float = 0.25,
        grad_norm_action: Action = "warn",
        d_loss_action: Action = "warn",
        d_accuracy_action: Action = "warn",
        trend_action: Action = "warn",
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(
                f"health.every_n_steps must be a positive number of steps or null, got {every_n_steps}"
            )
        self.every_n_steps = every_n_steps
        self.grad_norm_limit = grad_norm_limit
        self.grad_norm_patience = grad_norm_patience
        self.d_loss_floor = d_loss_floor
        self.d_loss_patience = d_loss_patience
        self.d_accuracy_patience = d_accuracy_patience
        self.trend_window = trend_window
        self.trend_threshold = trend_threshold
        self.actions: dict[str, str] = {
            "grad_norm": grad_norm_action,
            "d_loss": d_loss_action,
            "d_accuracy": d_accuracy_action,
            "trend": trend_action,
        }
        for check, action in self.actions.items():
            if action not in ("warn", "stop", "off"):
                raise ConfigError(f"health.{check}_action must be warn, stop or off, got {action!r}")
        self.fired: dict[str, int] = {}  # check -> generator step at which it fired
        self._since: dict[str, int | None] = {"grad_norm": None, "d_loss": None, "d_accuracy": None}
        self._losses: deque[tuple[int, float, float]] = deque()  # (step, G loss, D loss)
        self._due, self._every = False, 1
        self._grad_norms: dict[str, Tensor] = {}

    # --- collecting (cheap: a modulo per hook, until a step is due) -------------------------------------
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._every = self.every_n_steps or trainer.log_every_n_steps
        # due when this step ends with G step number global_step + 1 a multiple: the steps the logger writes
        self._due = (trainer.global_step + 1) % self._every == 0
        self._grad_norms = {}

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self._due:
            return
        g_opt, d_opt = pl_module.optimizers(use_pl_optimizer=False)
        who = "G" if optimizer is g_opt else "D" if optimizer is d_opt else None
        norm = grad_norm(optimizer) if who else None
        if norm is not None:
            self._grad_norms[who] = norm  # with several D steps, the last one's

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not self._due:
            return
        values = {f"grad_norm/{who}": norm for who, norm in self._grad_norms.items()}
        scores = getattr(pl_module, "last_d_scores", None)
        loss_family = getattr(pl_module, "loss", None)
        if scores is not None:
            real, fake = (s.float() for s in scores)
            threshold = getattr(loss_family, "decision_threshold", 0.0)
            values["scores/acc_real"], values["scores/acc_fake"] = d_accuracy(real, fake, threshold)
            if isinstance(loss_family, CRITICS):
                values["scores/wasserstein"] = real.mean() - fake.mean()
        if values:
            pl_module.log_dict(values)
        logged = getattr(pl_module, "step_values", {})  # this step's values, kept by the module
        for key in ("loss/G/main", "loss/D/main"):
            if key in logged:
                values[key] = logged[key]
        # one device-to-host transfer per check
        keys = list(values)
        if not keys:
            return
        flat = [values[k].detach().float().reshape(()).to(pl_module.device) for k in keys]
        read = dict(zip(keys, torch.stack(flat).tolist()))
        self._check(trainer, pl_module, trainer.global_step, read)

    # --- checking ----------------------------------------------------------------------------------------
    def _check(
        self, trainer: L.Trainer, pl_module: L.LightningModule, step: int, v: dict[str, float]
    ) -> None:
        found = self._failures(pl_module, step, v)
        stop_line = None
        for check, message in found.items():
            action = self.actions[check]
            if action == "off" or check in self.fired:
                continue
            self.fired[check] = step
            line = f"health ({check}) at generator step {step}: {message}"
            if action == "stop":
                stop_line = stop_line or line
            else:
                _say(f"warning: {line} (to stop the run instead: --health.{check}_action stop)")
        if "stop" not in self.actions.values():
            return
        # every rank takes part (the checks are at the same steps on all), so all of them stop together
        if trainer.strategy.reduce_boolean_decision(stop_line is not None, all=False):
            raise TrainingUnhealthyError(
                f"{stop_line or f'health check of another rank at generator step {step}'}; the run stopped "
                "before this step was checkpointed: start a new one from the last checkpoint's weights with "
                "the fix (fit --config RUN_DIR/config.yaml --init_from RUN_DIR/checkpoints/last.ckpt ...), "
                "or set the check's --health.*_action to warn"
            )

    def _failures(self, pl_module: L.LightningModule, step: int, v: dict[str, float]) -> dict[str, str]:
        """The checks that fail at this step, each with its cause and fix."""
        found = {}
        norms = {k[-1]: x for k, x in v.items() if k.startswith("grad_norm/") and math.isfinite(x)}
        over = {who: x for who, x in norms.items() if x > self.grad_norm_limit}
        if self._sustained("grad_norm", bool(over), step, self.grad_norm_patience):
            who, x = max(over.items(), key=lambda kv: kv[1])
            found["grad_norm"] = (
                f"{who}'s gradient norm has stayed above {self.grad_norm_limit:g} for "
                f"{self.grad_norm_patience} steps (now {x:.3g}): exploding gradients; "
                f"lower {who}'s learning rate, or add a gradient penalty (configs/regularizer/gp1.yaml) "
                "or spectral norm"
            )
        d_loss, g_loss = v.get("loss/D/main"), v.get("loss/G/main")
        has_floor = not isinstance(getattr(pl_module, "loss", None), Wasserstein)  # a critic's loss has none
        if d_loss is not None and has_floor:
            if self._sustained("d_loss", d_loss < self.d_loss_floor, step, self.d_loss_patience):
                found["d_loss"] = (
                    f"D's loss has stayed below {self.d_loss_floor:g} for {self.d_loss_patience} steps "
                    f"(now {d_loss:.3g}): D wins and G gets no useful gradient; lower D's learning rate or "
                    "its steps per G step, or regularize D (gradient penalty, spectral norm, instance noise)"
                )
        if "scores/acc_real" in v:
            perfect = v["scores/acc_real"] == 1.0 and v["scores/acc_fake"] == 1.0
            if self._sustained("d_accuracy", perfect, step, self.d_accuracy_patience):
                found["d_accuracy"] = (
                    f"D has been right on every real and fake sample for {self.d_accuracy_patience} steps: "
                    "D overpowers G; lower D's learning rate (or raise G's), or regularize D (gradient "
                    "penalty, spectral norm, DiffAugment, instance noise)"
                )
        trend = self._trend(step, g_loss, d_loss) if d_loss is not None and g_loss is not None else None
        if trend is not None:
            (g1, g2), (d1, d2) = trend
            found["trend"] = (
                f"over the last {self.trend_window} steps G's loss rose ({g1:.3g} -> {g2:.3g}) while D's "
                f"fell ({d1:.3g} -> {d2:.3g}): D is pulling away from G; lower D's learning rate or its "
                "steps per G step (or raise G's learning rate), or regularize D"
            )
        return found

    def _sustained(self, check: str, holds: bool, step: int, patience: int) -> bool:
        """Whether ``holds`` has been true at every check for at least ``patience`` steps."""
        if not holds:
            self._since[check] = None
            return False
        if self._since[check] is None:
            self._since[check] = step
        return step - self._since[check] >= patience

    def _trend(self, step: int, g_loss: float, d_loss: float) -> tuple[tuple[float, float], ...] | None:
        """((G first-half mean, G second-half mean), (D ...)) when, over a full window, G's loss rose and
        D's fell by more than ``trend_threshold`` of their first-half means (at least 0.1 in size)."""
        self._losses.append((step, g_loss, d_loss))
        while self._losses and self._losses[0][0] <= step - self.trend_window:
            self._losses.popleft()
        if len(self._losses) < 4 or self._losses[0][0] > step - self.trend_window + self._every:
            return None  # the window is not full yet
        half = len(self._losses) // 2
        first, second = list(self._losses)[:half], list(self._losses)[-half:]
        g1, d1 = (sum(x[i] for x in first) / half for i in (1, 2))
        g2, d2 = (sum(x[i] for x in second) / half for i in (1, 2))
        rose = g2 - g1 > self.trend_threshold * max(abs(g1), 0.1)
        fell = d1 - d2 > self.trend_threshold * max(abs(d1), 0.1)
        return ((g1, g2), (d1, d2)) if rose and fell else None
