"""``py:package.module:function``: any importable Python function as an objective.

The function is called as ``function(prompts, responses)`` with two lists of ``n`` strings and must return
``n`` finite numbers (a list, NumPy array or tensor); larger is better. The objective's name is the
function's name unless given with ``NAME=py:...``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hoe.errors import ConfigError
from hoe.objectives.base import ObjectiveContext, check_objective, register_objective

HOW = "Write py:package.module:function with the module importable (installed, or on PYTHONPATH)."


@dataclass
class PythonObjective:
    fn: Callable[[list[str], list[str]], Any]
    name: str

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        return torch.as_tensor(self.fn(list(prompts), list(responses)), dtype=torch.float32)


def import_function(path: str) -> Callable:
    """``"package.module:function"`` -> the function; :class:`ConfigError` when it cannot be found."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"py:{path} names no function.", field="objective", value=f"py:{path}", fix=HOW)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"py:{path}: cannot import {module_name!r} ({e}).", field="objective", value=f"py:{path}", fix=HOW
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise ConfigError(
            f"py:{path}: {module_name!r} has no function {attr!r}.",
            field="objective",
            value=f"py:{path}",
            fix=HOW,
        )
    return obj


check_objective("py")(lambda arg: import_function(arg or "") and None)


@register_objective("py")
def python_function(arg: str | None, context: ObjectiveContext) -> PythonObjective:
    fn = import_function(arg or "")
    return PythonObjective(fn, getattr(fn, "__name__", "py"))
