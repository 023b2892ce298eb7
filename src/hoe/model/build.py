"""``hoe build``: assemble LoRA experts (and optional router experts) into an HoE bundle."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from hoe.errors import ConfigError
from hoe.experts.extract import validate_names
from hoe.io.adapters import read_adapter, read_record
from hoe.io.atomic import check_output_dir
from hoe.model.bundle import load_base_model
from hoe.model.hoe_model import ExpertSpec, HoEModel
from hoe.preference import PreferenceLike, to_simplex


def build(
    base: str,
    expert: Mapping[str, str | Path],
    out: str | Path,
    anchors: Mapping[str, PreferenceLike] | None = None,
    routers: Mapping[str, PreferenceLike] | None = None,
    overwrite: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Build an HoE bundle from LoRA expert folders (name -> PEFT adapter).

    The objectives are the names of the single-objective experts, in the order given: every expert without an
    explicit anchor in ``anchors`` whose record is not a merged one. A merged expert's anchor is taken from
    ``anchors`` or its own record (``hoe merge`` writes it). ``routers`` (name -> anchor) adds untrained router
    experts (uniform mixtures of their nearest LoRA experts) for later training.
    """
    validate_names(expert, "expert")
    anchors = dict(anchors or {})
    unknown = set(anchors) - set(expert)
    if unknown:
        raise ConfigError(f"--expert: anchors given for unknown experts {sorted(unknown)}.")
    check_output_dir(out, overwrite)
    records = {name: read_record(folder) or {} for name, folder in expert.items()}
    objectives = [n for n in expert if n not in anchors and records[n].get("kind") != "merged"]
    if len(objectives) < 2:
        raise ConfigError(
            f"--expert: HoE needs at least 2 single-objective experts (their names are the objectives); got "
            f"{objectives}. Pass one --expert NAME=DIR per objective."
        )
    specs = []
    for name in expert:
        if name in objectives:
            anchor = to_simplex({name: 1.0}, objectives, "expert")
        else:
            given = anchors.get(name, records[name].get("anchor"))
            if not given:
                raise ConfigError(f"--expert: {name!r} has no anchor; write it as {name}=DIR@obj=w,... .")
            anchor = to_simplex(given, objectives, f"expert {name} anchor")
        record = records[name] | {"anchor": dict(zip(objectives, anchor.tolist()))}
        specs.append(ExpertSpec(name, tuple(anchor.tolist()), record))
    weights = [read_adapter(folder, "expert") for folder in expert.values()]
    model = HoEModel(load_base_model(base, dtype), objectives, specs, weights, str(base))
    for name, anchor in (routers or {}).items():
        model.add_router(name, anchor)
    return model.save_pretrained(out, overwrite)
