"""What a bundle holds besides weights: each LoRA expert's and router expert's name, anchor and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExpertSpec:
    """A LoRA expert of the bundle: its anchor over the objectives and its provenance record."""

    name: str
    anchor: tuple[float, ...]
    record: dict = field(default_factory=dict)


@dataclass
class RouterSpec:
    """A router expert: its anchor and the names of the LoRA experts it mixes."""

    name: str
    anchor: tuple[float, ...]
    experts: tuple[str, ...]
