"""Loggers. W&B that works with no account: offline unless credentials are configured."""

from __future__ import annotations

import netrc
import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


def wandb_credentials_available() -> bool:
    """True when wandb could authenticate: WANDB_API_KEY, or an api.wandb.ai entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL_HOST", "api.wandb.ai")) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger, offline by default when no API key is set.

    Online with no key and no TTY, wandb raises ``UsageError``; here such a run goes offline instead and
    writes ``<save_dir>/wandb/offline-run-*``, which ``wandb sync`` uploads later.

    Args:
        offline: ``None`` (default) chooses: online when credentials exist, else offline.
        All other arguments are those of ``lightning.pytorch.loggers.WandbLogger``.
    """

    def __init__(self, *args: Any, offline: bool | None = None, **kwargs: Any) -> None:
        if offline is None:
            offline = os.environ.get("WANDB_MODE") == "offline" or not wandb_credentials_available()
        if offline and kwargs.get("log_model"):
            kwargs["log_model"] = False  # wandb refuses log_model in offline mode; checkpoints stay on disk
        super().__init__(*args, offline=offline, **kwargs)
