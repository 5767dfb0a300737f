"""Errors that are part of the interface: each says what was wrong and how to fix it, in one line.

The CLI catches :class:`GanLightningError` and prints ``error: <message>`` with no traceback.
"""


class GanLightningError(Exception):
    """Base class for user-facing errors (bad config, bad data, bad checkpoint)."""


class ConfigError(GanLightningError):
    """A configuration value is invalid or inconsistent."""


class DataError(GanLightningError):
    """A dataset is missing, corrupt or of the wrong shape."""


class TrainingDivergedError(GanLightningError):
    """A loss became NaN or infinite."""


class TrainingUnhealthyError(GanLightningError):
    """A training-health check set to stop the run fired (see :mod:`gan_lightning.health`)."""
