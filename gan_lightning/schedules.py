"""How many discriminator steps to take for each generator step.

A schedule answers one question, ``d_steps(g_step)``: the number of D updates that precede generator
step ``g_step`` (0-based). The GANModule (to split its batch) and the data pipeline (to fetch exactly
that many fresh real batches) both ask it, so they always agree.
"""

from __future__ import annotations

from gan_lightning.errors import ConfigError


class DSteps:
    """Base class: a fixed or step-dependent number of D steps per G step."""

    def d_steps(self, g_step: int) -> int:
        raise NotImplementedError

    def total_d_steps(self, g_steps: int) -> int:
        """D steps taken before generator step ``g_steps`` (used to resume the data stream)."""
        return sum(self.d_steps(g) for g in range(g_steps))


class FixedDSteps(DSteps):
    """``d_steps_per_g_step`` D updates, each on a fresh real batch, before every G update.

    Args:
        d_steps_per_g_step: D updates per G update (1: alternating updates; WGAN-GP uses 5).
    """

    def __init__(self, d_steps_per_g_step: int = 1) -> None:
        if d_steps_per_g_step < 1:
            raise ConfigError(
                f"d_steps_per_g_step must be >= 1, got {d_steps_per_g_step}; "
                "set it to 1 for alternating updates"
            )
        self.d_steps_per_g_step = d_steps_per_g_step

    def d_steps(self, g_step: int) -> int:
        return self.d_steps_per_g_step

    def total_d_steps(self, g_steps: int) -> int:
        return self.d_steps_per_g_step * g_steps

    def __repr__(self) -> str:
        return f"FixedDSteps(d_steps_per_g_step={self.d_steps_per_g_step})"


class WGANSchedule(DSteps):
    """The D-step schedule of the original WGAN code (Arjovsky et al. 2017, ``main.py``).

    d_steps(g) = burst_d_steps   if g < burst_first_g_steps or g % burst_every == 0
                 n_critic        otherwise

    With the defaults: 100 critic iterations before each of the first 25 generator iterations and
    before every 500th one (g = 0, 500, 1000, ...), 5 otherwise. The bursts let the critic get close
    to optimal before G follows its gradient.

    Args:
        n_critic: D steps per G step outside the bursts.
        burst_d_steps: D steps per G step during a burst.
        burst_first_g_steps: the first this many G steps are all bursts.
        burst_every: every G step with ``g_step % burst_every == 0`` is a burst.
    """

    def __init__(
        self,
        n_critic: int = 5,
        burst_d_steps: int = 100,
        burst_first_g_steps: int = 25,
        burst_every: int = 500,
    ) -> None:
        if n_critic < 1 or burst_d_steps < 1 or burst_every < 1 or burst_first_g_steps < 0:
            raise ConfigError(
                "WGANSchedule needs n_critic >= 1, burst_d_steps >= 1, burst_every >= 1 and "
                f"burst_first_g_steps >= 0, got n_critic={n_critic}, burst_d_steps={burst_d_steps}, "
                f"burst_every={burst_every}, burst_first_g_steps={burst_first_g_steps}"
            )
        self.n_critic = n_critic
        self.burst_d_steps = burst_d_steps
        self.burst_first_g_steps = burst_first_g_steps
        self.burst_every = burst_every

    def d_steps(self, g_step: int) -> int:
        if g_step < self.burst_first_g_steps or g_step % self.burst_every == 0:
            return self.burst_d_steps
        return self.n_critic

    def _bursts_before(self, g_steps: int) -> int:
        """How many of the G steps 0 .. g_steps-1 are bursts, in O(1)."""
        g_steps = max(g_steps, 0)
        head = min(g_steps, self.burst_first_g_steps)
        # multiples of m in [0, n) number ceil(n / m); count the ones in [head, g_steps)
        periodic = -(-g_steps // self.burst_every) - -(-head // self.burst_every)
        return head + periodic

    def total_d_steps(self, g_steps: int) -> int:
        bursts = self._bursts_before(g_steps)
        return self.burst_d_steps * bursts + self.n_critic * (max(g_steps, 0) - bursts)

    def __repr__(self) -> str:
        return (
            f"WGANSchedule(n_critic={self.n_critic}, burst_d_steps={self.burst_d_steps}, "
            f"burst_first_g_steps={self.burst_first_g_steps}, burst_every={self.burst_every})"
        )
