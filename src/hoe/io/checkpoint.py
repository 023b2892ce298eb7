"""Tensor-by-tensor access to safetensors checkpoints (one file or a sharded index), never pickle.

Tensors are memory-mapped and read one at a time, so a task vector over a whole model needs about one model
of page cache plus a few tensors of RAM.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from hoe.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"


class Checkpoint:
    """A read-only view of the tensors of a model folder.

    ``field`` is the CLI flag the folder came from, used in error messages.
    """

    def __init__(self, folder: str | Path, field: str = "base"):
        self.folder = Path(folder)
        self.field = field
        self._handles: dict[Path, object] = {}
        self._where = self._index()  # tensor name -> file

    def _index(self) -> dict[str, Path]:
        index = self.folder / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(
                    f"--{self.field}: {index} is not a valid safetensors index ({e})."
                ) from None
            return {name: self.folder / fname for name, fname in weight_map.items()}
        files = sorted(self.folder.glob("*.safetensors"))
        if not files:
            pickles = [p.name for p in self.folder.glob("*.bin")] + [p.name for p in self.folder.glob("*.pt")]
            hint = (
                f" It holds {pickles}: hoe reads no pickle files; convert with "
                "`model.save_pretrained(folder, safe_serialization=True)`."
                if pickles
                else ""
            )
            raise CheckpointError(f"--{self.field}: no *.safetensors file in {str(self.folder)!r}.{hint}")
        where: dict[str, Path] = {}
        for f in files:
            names = self._open(f).keys()  # type: ignore[attr-defined]
            where.update(dict.fromkeys(names, f))
        return where

    def _open(self, file: Path):
        if file not in self._handles:
            try:
                self._handles[file] = safe_open(str(file), framework="pt")
            except Exception as e:  # safetensors raises several kinds on a bad header
                raise CheckpointError(
                    f"--{self.field}: cannot read {str(file)!r} ({e}). The file is corrupted or truncated; "
                    "download or save it again."
                ) from None
        return self._handles[file]

    def keys(self) -> list[str]:
        return list(self._where)

    def __iter__(self):
        return iter(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open(self._file(name)).get_slice(name).get_shape())  # type: ignore[attr-defined]

    def get(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Read one tensor as ``dtype``; raise :class:`CheckpointError` if missing or not finite."""
        try:
            t = self._open(self._file(name)).get_tensor(name)  # type: ignore[attr-defined]
        except SafetensorError as e:
            raise CheckpointError(
                f"--{self.field}: cannot read tensor {name!r} ({e}); the file is corrupted."
            ) from None
        t = t.to(dtype)
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(
                f"--{self.field}: tensor {name!r} in {str(self.folder)!r} holds NaN or Inf. The checkpoint is "
                "broken; fix or re-download it."
            )
        return t

    def _file(self, name: str) -> Path:
        try:
            return self._where[name]
        except KeyError:
            raise CheckpointError(
                f"--{self.field}: tensor {name!r} is missing from {str(self.folder)!r}."
            ) from None

    def config(self) -> dict:
        path = self.folder / "config.json"
        if not path.is_file():
            raise CheckpointError(
                f"--{self.field}: {str(self.folder)!r} has no config.json; pass a model folder."
            )
        return json.loads(path.read_text())
