"""``hoe export``: an HoE bundle at a preference for engines that know nothing of HoE.

* ``merged`` (:mod:`hoe.export.merged`): a full Hugging Face checkpoint with the experts merged into W;
* ``adapter`` (:mod:`hoe.export.adapter`): one PEFT LoRA adapter per preference, over the unchanged base
  (vLLM, LoRAX and TGI batch many of them); ``grid`` writes one per lattice point and an ``index.json``.

Both are HoE without routers at λ (router experts mix per token, which neither form can hold).
"""

from __future__ import annotations

from pathlib import Path

from hoe.errors import ConfigError, bad_value
from hoe.export.adapter import export_adapters, nearest_adapter
from hoe.export.merged import export_merged
from hoe.preference import PreferenceLike, simplex_lattice, to_simplex

FORMATS = ("merged", "adapter")

__all__ = ["FORMATS", "export", "nearest_adapter"]


def export(
    model: str | Path,
    preference: PreferenceLike | None,
    out: str | Path,
    dtype: str | None = None,
    overwrite: bool = False,
    format: str = "merged",
    grid: int | None = None,
) -> Path:
    """Write the bundle ``model`` at ``preference`` (or, for adapters, at every point of the ``grid``
    lattice) to ``out``, in ``format``; see the module's docstring."""
    if format not in FORMATS:
        raise bad_value("format", format, f"Choose one of {list(FORMATS)}.")
    if (preference is None) == (grid is None):
        raise ConfigError(
            "needs exactly one of preference and grid.",
            field="preference" if preference is None else "grid",
            fix="Pass a preference, or (with format adapter) a grid.",
        )
    if format == "merged":
        if grid is not None:
            raise ConfigError(
                "writes one adapter per point; a merged checkpoint is one full model per preference.",
                field="grid",
                value=grid,
                fix="Pass --format adapter with --grid, or one --preference.",
            )
        return export_merged(model, preference, out, dtype, overwrite)
    from hoe.bundle.folder import read_manifest

    objectives = read_manifest(model)["objectives"]
    if grid is None:
        return export_adapters(
            model, to_simplex(preference, objectives)[None], out, dtype, overwrite, index=False
        )
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise bad_value("grid", grid, "Pass a whole number of lattice steps, at least 1.")
    return export_adapters(model, simplex_lattice(len(objectives), grid), out, dtype, overwrite, index=True)
