"""hoe: multi-objective alignment of large language models with hierarchical experts (HoE).

Conventions (stated once, see :mod:`hoe.conventions`): objectives are maximised, a preference λ lies on the
simplex, reward matrices are ``n x m``. Each ``hoe`` command is a thin layer over the function of the same
name here: :func:`extract`, :func:`merge`, :func:`build`, :func:`generate`, :func:`export`, :func:`serve`, :func:`train_expert`, :func:`train_router`,
:func:`place_routers`, :func:`evaluate`, :func:`ablation`.
"""

from hoe.bundle.build import build
from hoe.bundle.router_folder import save_router
from hoe.errors import (
    CheckpointError,
    ConfigError,
    ConfigErrors,
    HoEError,
    HoEWarning,
    OutputExistsError,
    OutputPathError,
    PreferenceError,
    ShapeMismatchError,
)
from hoe.evaluation.ablation import ablation
from hoe.evaluation.evaluate import EvaluateConfig, evaluate
from hoe.experts.extract import extract
from hoe.experts.merge import merge
from hoe.export import export, nearest_adapter
from hoe.generation.text import generate, load_tokenizer
from hoe.model.hoe_model import HoEModel
from hoe.server import serve
from hoe.training import ExpertConfig, RouterConfig, train_expert, train_router
from hoe.training.placement import place_routers

__version__ = "0.1.0"
__all__ = [
    "HoEModel",
    "build",
    "evaluate",
    "export",
    "nearest_adapter",
    "extract",
    "generate",
    "load_tokenizer",
    "merge",
    "save_router",
    "serve",
    "train_expert",
    "train_router",
    "place_routers",
    "ablation",
    "ExpertConfig",
    "RouterConfig",
    "EvaluateConfig",
    "HoEError",
    "HoEWarning",
    "ConfigError",
    "ConfigErrors",
    "PreferenceError",
    "CheckpointError",
    "ShapeMismatchError",
    "OutputExistsError",
    "OutputPathError",
]
