"""hoe: multi-objective alignment of large language models with hierarchical experts (HoE).

Conventions (stated once, see :mod:`hoe.conventions`): objectives are maximised, a preference λ lies on the
simplex, reward matrices are ``n x m``.
"""

from hoe.errors import CheckpointError, ConfigError, HoEError, PreferenceError, ShapeMismatchError
from hoe.experts.extract import extract
from hoe.experts.merge import merge
from hoe.model.build import build
from hoe.model.hoe_model import HoEModel

__version__ = "0.1.0"
__all__ = [
    "HoEModel",
    "build",
    "extract",
    "merge",
    "HoEError",
    "ConfigError",
    "PreferenceError",
    "CheckpointError",
    "ShapeMismatchError",
]
