"""The one table of dtypes: by the names users write (``--dtype bfloat16``) and by the codes a safetensors
header stores (``BF16``)."""

from __future__ import annotations

import torch

from hoe.errors import bad_value

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""What ``--dtype`` (or a config's ``dtype``) may name: the floating types weights are held or saved in."""

SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""A safetensors header's ``dtype`` code -> torch (the ones a checkpoint may hold)."""


def parse_dtype(name: str, field: str = "dtype") -> torch.dtype:
    """The dtype ``name`` (a key of :data:`DTYPES`); anything else is an error naming ``field``."""
    try:
        return DTYPES[name]
    except (KeyError, TypeError):
        raise bad_value(field, name, f"Choose one of {sorted(DTYPES)}.") from None
