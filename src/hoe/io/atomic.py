"""Output folders that appear whole or not at all.

Work is written into a hidden sibling folder and renamed into place at the end, so a failure, a bad input
found half-way, or Ctrl-C never leaves a half-written artifact, and an existing folder is only replaced when
the caller asked for it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hoe.errors import OutputExistsError


def check_output_dir(out: str | Path, overwrite: bool = False, field: str = "out") -> Path:
    """Refuse an existing non-empty output folder unless ``overwrite``; call it before any slow work."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"--{field}: {str(path)!r} exists and is a file. Pass a folder path.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"--{field}: {str(path)!r} exists and is not empty. Pass another --{field}, or --overwrite to replace it."
        )
    return path


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False, field: str = "out") -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out``, on any exception it is deleted."""
    final = check_output_dir(out, overwrite, field)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
