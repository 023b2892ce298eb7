"""Outputs that appear whole or not at all: the one mechanism every artifact `hoe` writes goes through.

Work is written into a hidden temporary sibling ``.NAME.tmp-<pid>-<random>`` and only published (:func:`publish`) over
``NAME`` once complete, so a failure, a bad input found half-way, Ctrl-C or SIGTERM leaves any existing
``NAME`` exactly as it was. Replacing an existing ``NAME`` takes two renames (``NAME`` -> ``.NAME.old-...``,
temporary -> ``NAME``); a process killed between them (SIGKILL) leaves the old copy aside, and the next run
that writes ``NAME`` puts it back (:func:`clean_stale`), so nothing is lost even then. Temporaries of dead
processes are removed by that same next run, with a warning; those of live processes are left alone.

* :func:`atomic_output_dir` -- one folder (a bundle, a merged expert, a converted model);
* :func:`atomic_children` -- named sub-folders of a folder that may hold others (an experts folder): only the
  children being written are replaced, siblings are kept;
* :func:`atomic_file` -- one file (a record rewritten in place).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import threading
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from hoe.errors import HoEWarning, OutputExistsError, OutputPathError

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def temp_sibling(final: Path, kind: str = "tmp") -> Path:
    """``final``'s hidden sibling ``.NAME.<kind>-<pid>-<random>``: unique, and tells which process owns it."""
    return final.parent / f".{final.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def note(error: BaseException, text: str) -> None:
    """Attach ``text`` to ``error`` (``add_note`` where Python has it); the CLI prints notes on Ctrl-C."""
    if hasattr(error, "add_note"):
        error.add_note(text)
    else:  # Python 3.10: same attribute, printed by the CLI only
        error.__notes__ = [*getattr(error, "__notes__", []), text]


# ---------------------------------------------------------------- checks, before any slow work


def output_path(out: str | Path, field: str = "out", replaced: bool = True) -> Path:
    """``out`` made absolute, refused when it cannot be written: under a file, not writable, or -- when
    ``out`` itself is to be ``replaced`` -- the current folder (or one holding it), which a rename cannot
    replace."""
    if not str(out).strip():
        raise OutputPathError("is empty.", field=field, value=str(out), fix="Pass a folder path.")
    path = Path(out).expanduser().absolute()
    path = Path(os.path.normpath(path))
    cwd = Path.cwd()
    if replaced and (path == cwd or path in cwd.parents):
        raise OutputPathError(
            f"{str(out)!r} is the current folder or holds it, which cannot be replaced.",
            field=field,
            value=str(out),
            fix="Pass a new folder, e.g. ./out.",
        )
    ancestor = next(p for p in (path, *path.parents) if p.exists())
    if ancestor != path and not ancestor.is_dir():
        raise OutputPathError(
            f"{str(out)!r} is inside {str(ancestor)!r}, which is a file.",
            field=field,
            fix="Pass a folder path.",
        )
    writable = ancestor.parent if ancestor == path else ancestor
    if not os.access(writable, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"cannot write in {str(writable)!r} (permission denied).",
            field=field,
            value=str(out),
            fix="Pass a folder you can write to.",
        )
    return path


Inputs = Mapping[str, object]
"""A command's inputs by field (``{"model": "B", "expert": ["E/a", "E/b"]}``): paths, lists of paths, or
anything else (a hub id, None), which is ignored unless it names an existing local file or folder."""


def refuse_inputs(out: str | Path, inputs: Inputs, field: str = "out") -> None:
    """Refuse an output that is, contains or lies inside an input (of any field of ``inputs``): writing it,
    or replacing it with ``--overwrite``, would change or destroy what the command reads. Call it before
    anything loads. ``a/b`` and ``a/./b/../b`` are the same path; symbolic links are followed."""
    target = Path(os.path.normpath(Path(out).expanduser().absolute())).resolve()
    for name, value in inputs.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(item, (str, Path)) or not str(item).strip():
                continue
            source = Path(item).expanduser()
            if not source.exists():
                continue  # a hub id or a built-in name, not a local input
            source = source.resolve()
            if target == source:
                how = "is"
            elif source in target.parents:
                how = "lies inside"
            elif target in source.parents:
                how = "holds"
            else:
                continue
            raise OutputPathError(
                f"{str(out)!r} {how} {str(item)!r}, an input ({name}), which is never modified.",
                field=field,
                value=str(out),
                fix="Pass a new folder outside every input.",
            )


def check_output_dir(
    out: str | Path, overwrite: bool = False, field: str = "out", inputs: Inputs | None = None
) -> Path:
    """Refuse an unwritable ``out``, a file, an existing non-empty folder unless ``overwrite``, or an ``out``
    that is, holds or lies inside one of the ``inputs`` (:func:`refuse_inputs`); return the absolute path. Call
    it before any slow work. Temporaries that killed runs left beside ``out`` are cleaned first (and an old
    copy put back), so the check sees what is really there."""
    path = output_path(out, field)
    refuse_inputs(out, inputs or {}, field)
    clean_stale(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{str(out)!r} exists and is a file.", field=field, fix="Pass a folder path.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{str(out)!r} exists and is not empty.",
            field=field,
            value=str(out),
            fix="Pass another folder, or allow overwriting it.",
        )
    return path


def check_children(
    out: str | Path,
    names: Iterable[str],
    overwrite: bool = False,
    field: str = "out",
    inputs: Inputs | None = None,
) -> Path:
    """Like :func:`check_output_dir` for the named sub-folders of ``out``: only they must be new (or
    ``overwrite``) and apart from the ``inputs``; other contents of ``out`` are never touched, so ``out`` may
    be the current folder (or a folder that holds inputs besides the children)."""
    path = output_path(out, field, replaced=False)
    names = list(names)
    for name in names:
        refuse_inputs(path / name, inputs or {}, field)
    for name in names:
        clean_stale(path / name)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{str(out)!r} exists and is a file.", field=field, fix="Pass a folder path.")
    taken = [n for n in names if (path / n).exists() and not overwrite]
    if taken:
        raise OutputExistsError(
            f"{str(out)!r} already holds {taken}.",
            field=field,
            value=str(out),
            fix="Pass other names or another folder, or allow overwriting them (other experts there are kept).",
        )
    return path


# ---------------------------------------------------------------- publishing


def publish(tmp: Path, final: Path) -> None:
    """Move the complete ``tmp`` to ``final``, replacing what was there.

    Ctrl-C and SIGTERM wait until both renames are done (they are blocked meanwhile), so they never leave
    ``final`` missing; SIGKILL between the renames leaves the old copy as ``.NAME.old-...``, which
    :func:`clean_stale` puts back.
    """
    _default_modes(tmp)
    with _signals_deferred():
        if not final.exists():
            os.replace(tmp, final)
            return
        old = temp_sibling(final, "old")
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)


def _default_modes(path: Path) -> None:
    """Give every file under ``path`` the mode a plain ``open`` gives (0o666 less the umask).

    safetensors (0.8) creates its files with mode 0o600, which would make a published bundle or adapter
    unreadable by anyone but its writer (another user of a shared machine, a server running as another user).
    """
    mode = 0o666 & ~_umask()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if p.is_file() and not p.is_symlink() and (p.stat().st_mode & 0o777) != mode:
            with contextlib.suppress(OSError):  # a file system without modes (FAT, some network mounts)
                os.chmod(p, mode)


def _umask() -> int:
    """The process umask, read without changing it where /proc says it (os.umask can only set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)  # the stricter while it is set: files made meanwhile stay private
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back during the block and deliver them after it.

    At the Python level, not with a signal mask: a process-directed signal goes to any thread that does not
    block it (torch starts several), while Python handlers always run in the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: held.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(sig) not in (signal.SIG_IGN, None)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in held:
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)
            else:
                signal.raise_signal(sig)


def clean_stale(final: Path) -> None:
    """Remove the temporaries that dead processes left beside ``final``; put back an old copy whose
    replacement never arrived. Temporaries of live processes are left alone."""
    if not final.parent.is_dir():
        return
    for p in sorted(final.parent.iterdir()):
        m = _TEMP.match(p.name)
        if m is None or m["name"] != final.name or process_alive(int(m["pid"])):
            continue
        if m["kind"] == "old" and not final.exists():
            os.replace(p, final)
            warnings.warn(
                f"restored {str(final)!r}, left aside by a run killed while replacing it",
                HoEWarning,
                stacklevel=3,
            )
        else:
            _remove(p)
            warnings.warn(
                f"removed {str(p)!r}, a temporary left by a killed run (pid {m['pid']})",
                HoEWarning,
                stacklevel=3,
            )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def staged_dir(final: Path, shown: Path | None = None) -> Iterator[Path]:
    """A fresh temporary sibling of ``final`` (stale ones cleaned first), deleted on any exception (the
    exception gets a note); the caller publishes it (:func:`publish`)."""
    clean_stale(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        note(e, f"nothing was written to {str(shown or final)!r}; what was there is unchanged.")
        raise


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False, field: str = "out") -> Iterator[Path]:
    """Yield a temporary folder; when the block ends normally it replaces ``out``, on any exception it is
    deleted and ``out`` stays as it was."""
    final = check_output_dir(out, overwrite, field)
    with staged_dir(final) as tmp:
        yield tmp
    publish(tmp, final)


@contextmanager
def atomic_children(
    out: str | Path, names: Iterable[str], overwrite: bool = False, field: str = "out"
) -> Iterator[Path]:
    """Yield a temporary folder in which to write ``tmp / name`` for each of ``names``; when the block ends
    normally each replaces ``out / name``; on an exception none does. Other contents of ``out`` are kept.
    A new ``out`` is published whole."""
    names = list(names)
    final = check_children(out, names, overwrite, field)
    if not final.exists():
        with atomic_output_dir(final, False, field) as tmp:
            yield tmp
        return
    with staged_dir(final / ".staging", shown=final) as staging:
        yield staging
        for name in names:
            if not (staging / name).is_dir():
                raise RuntimeError(f"atomic_children: {name!r} was not written")  # a bug, not bad input
    for name in names:
        publish(staging / name, final / name)
    shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; when the block ends normally it replaces ``path``."""
    final = Path(path)
    clean_stale(final)
    tmp = temp_sibling(final)
    try:
        yield tmp
        _default_modes(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
