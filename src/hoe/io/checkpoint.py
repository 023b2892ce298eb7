"""Tensor-by-tensor access to safetensors checkpoints (one file or a sharded index), never pickle.

Why not ``safetensors.safe_open``: it memory-maps whole files, and every page a read touches stays in the
process's resident set, so streaming a task vector through two checkpoints would hold both models in RSS.
Here each tensor is read with ``os.pread`` into its own buffer (the format is a little-endian u64 header
length, a JSON header with dtype / shape / byte offsets, then raw little-endian data), so resident memory stays
at a few tensors and the OS page cache does the rest. Truncated files are caught when opened, from the offsets.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from hoe.dtypes import SAFETENSORS_DTYPES
from hoe.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"


class SafetensorsFile:
    """The header of one ``.safetensors`` file and positioned reads of its tensors."""

    def __init__(self, path: Path, field: str):
        self.path, self.field = path, field
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                if header_len > size - 8:
                    raise ValueError(f"header length {header_len} exceeds the file size {size}")
                header = json.loads(f.read(header_len))
            metadata = header.pop("__metadata__", None)
            self.data_start = 8 + header_len
            ends = [info["data_offsets"][1] for info in header.values()]
            if ends and self.data_start + max(ends) > size:
                raise ValueError(
                    f"tensor data ends at byte {self.data_start + max(ends)} but the file has {size}"
                )
        except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
            raise CheckpointError(
                f"cannot read {str(path)!r} ({e}): the file is corrupted or truncated.",
                field=field,
                value=str(path),
                fix="Download or save it again.",
            ) from None
        self.header: dict[str, dict] = header
        self.metadata: dict[str, str] = metadata if isinstance(metadata, dict) else {}

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.header[name]["shape"])

    def read(self, name: str) -> torch.Tensor:
        info = self.header[name]
        dtype = SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise CheckpointError(
                f"tensor {name!r} in {str(self.path)!r} has unsupported dtype {info['dtype']}.",
                field=self.field,
                fix=f"Save it in one of {sorted(SAFETENSORS_DTYPES)}.",
            )
        begin, end = info["data_offsets"]
        buf = bytearray(end - begin)
        with open(self.path, "rb") as f:
            if os.preadv(f.fileno(), [buf], self.data_start + begin) != len(buf):
                raise CheckpointError(
                    f"{str(self.path)!r} ended inside tensor {name!r}.",
                    field=self.field,
                    fix="The file is truncated; download or save it again.",
                )
        if not buf:
            return torch.empty(info["shape"], dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype).reshape(info["shape"])


class Checkpoint:
    """A read-only view of the tensors of a model folder.

    ``field`` is the argument the folder came from (``"base"``, ``"tuned"``...), named in errors.
    """

    def __init__(self, folder: str | Path, field: str = "base"):
        self.folder = Path(folder)
        self.field = field
        self._files: dict[Path, SafetensorsFile] = {}
        self._where = self._index()  # tensor name -> file

    def _index(self) -> dict[str, Path]:
        index = self.folder / INDEX_FILE
        if index.is_file():
            try:
                weight_map = dict(json.loads(index.read_text())["weight_map"])
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise CheckpointError(
                    f"{str(index)!r} is not a valid safetensors index ({type(e).__name__}: {e}).",
                    field=self.field,
                    fix="Save the model again with save_pretrained.",
                ) from None
            return {name: self.folder / fname for name, fname in weight_map.items()}
        files = sorted(self.folder.glob("*.safetensors"))
        if not files:
            pickles = [p.name for p in self.folder.glob("*.bin")] + [p.name for p in self.folder.glob("*.pt")]
            held = f" (it holds {pickles}; hoe reads no pickle files)" if pickles else ""
            raise CheckpointError(
                f"no *.safetensors file in {str(self.folder)!r}{held}.",
                field=self.field,
                value=str(self.folder),
                fix="Convert it with `model.save_pretrained(folder, safe_serialization=True)`."
                if pickles
                else "Pass a folder saved with save_pretrained.",
            )
        where: dict[str, Path] = {}
        for f in files:
            where.update(dict.fromkeys(self._open(f).header, f))
        return where

    def _open(self, file: Path) -> SafetensorsFile:
        if file not in self._files:
            self._files[file] = SafetensorsFile(file, self.field)
        return self._files[file]

    def keys(self) -> list[str]:
        return list(self._where)

    def __iter__(self):
        return iter(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        return self._open(self._file(name)).shape(name)

    def get(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Read one tensor as ``dtype``; raise :class:`CheckpointError` if missing or not finite."""
        t = self._open(self._file(name)).read(name).to(dtype)
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(
                f"tensor {name!r} in {str(self.folder)!r} holds NaN or Inf: the checkpoint is broken.",
                field=self.field,
                fix="Fix or re-download it.",
            )
        return t

    def _file(self, name: str) -> Path:
        try:
            return self._where[name]
        except KeyError:
            raise CheckpointError(
                f"tensor {name!r} is missing from {str(self.folder)!r}.",
                field=self.field,
                fix="Pass a complete checkpoint of the expected model.",
            ) from None

    def config(self) -> dict:
        """The folder's ``config.json`` as a dict; a missing or garbled one is a :class:`CheckpointError`."""
        path = self.folder / "config.json"
        if not path.is_file():
            raise CheckpointError(
                f"{str(self.folder)!r} has no config.json.", field=self.field, fix="Pass a model folder."
            )
        try:
            config = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(
                f"cannot read {str(path)!r} ({e}).", field=self.field, fix="Pass a model folder."
            ) from None
        if not isinstance(config, dict):
            raise CheckpointError(
                f"{str(path)!r} holds a {type(config).__name__}, not a JSON object.",
                field=self.field,
                fix="Pass a model folder.",
            )
        return config
