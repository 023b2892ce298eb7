"""Shared helpers of the bad-input suite: run the CLI in process, and snapshot folders byte for byte."""

from __future__ import annotations

from pathlib import Path


def cli(capsys, *args: object) -> tuple[int, str]:
    """Run ``hoe ARGS`` in this process; return (exit code, stderr). Earlier captured output is discarded."""
    from hoe.cli import run

    capsys.readouterr()
    code = run([str(a) for a in args])
    return code, capsys.readouterr().err


def snapshot(path: Path) -> dict[str, bytes] | None:
    """Every file under ``path`` (hidden ones included) by relative path -> bytes; None if ``path`` is absent.

    Two equal snapshots mean nothing was added, removed or changed, temporaries included.
    """
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return {".": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(path.rglob("*"))
    }


def assert_refused(code: int, err: str, flag: str) -> None:
    """Exit code 2 and one line that names ``flag``, no traceback."""
    assert code == 2, err
    assert flag in err, err
    assert "Traceback" not in err, err
