"""Provenance for artifacts: package versions and the command that made them."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("hoe", "torch", "transformers", "peft", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def command_line() -> str:
    """The command that is running (``hoe ...`` when run from the console script or as ``python -m hoe``,
    also under ``torchrun`` / ``accelerate launch``, whose processes run ``-m hoe``)."""
    argv = list(sys.argv)
    if argv and argv[0].replace("\\", "/").endswith(("/hoe", "hoe", "hoe/__main__.py")):
        argv[0] = "hoe"
    return " ".join(argv)
