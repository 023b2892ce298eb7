"""The exceptions `hoe` raises for bad input.

Every message says what was wrong, what was passed, and what to change (the flag or argument name: the
library's argument names are the CLI's flag names). The CLI prints them without a traceback.
"""

from __future__ import annotations


class HoEError(Exception):
    """Root of every error `hoe` raises on purpose."""


class ConfigError(HoEError, ValueError):
    """An argument has a value `hoe` cannot use (bad rank, unknown method, malformed preference...)."""


class PreferenceError(ConfigError):
    """A preference vector λ is negative, all zero, NaN, of the wrong length or names unknown objectives."""


class CheckpointError(HoEError):
    """A model or adapter checkpoint is missing, unreadable, incomplete, or holds NaN/Inf."""


class ShapeMismatchError(CheckpointError):
    """Two checkpoints that must share an architecture do not (different tensors or shapes)."""


class OutputExistsError(HoEError, FileExistsError):
    """The output folder exists already; `hoe` never overwrites data unless asked to."""


def bad_value(field: str, value: object, fix: str, cls: type[HoEError] = ConfigError) -> HoEError:
    """Build the standard message: ``--field: got <value>. <fix>``."""
    return cls(f"--{field.replace('_', '-')}: got {value!r}. {fix}")
