"""The ``hoe`` command line: one subcommand per pipeline stage, each a thin layer over a library function.

The subcommands register on :data:`hoe.cli.app.app`, one module per stage; importing this package imports them.

:func:`run` is the whole front end: it words the library's errors as flags (``--max-new-tokens: ...``), prints
warnings as one line each, and turns Ctrl-C or SIGTERM into a message saying what was kept. Exit codes: 0 done,
2 bad input (one line, never a traceback), 130 interrupted.
"""

from __future__ import annotations

import signal
import sys
import warnings
from collections.abc import Sequence

import typer
from typer import _click as click  # typer vendors its own click; its exceptions are not click's

from hoe.cli import evaluation, experts, model, serving, setups, training  # noqa: F401  (registers the subcommands)
from hoe.cli.app import app
from hoe.errors import HoEError, HoEWarning

INTERRUPTED = 130

__all__ = ["app", "main", "run"]


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM during a command. Not a KeyboardInterrupt, which typer turns into a bare exit code
    and so loses the notes saying what was kept; a BaseException, so every cleanup still runs."""


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    previous = _install_signal_handlers()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", HoEWarning)
            warnings.showwarning = _show_warning
            code = app(args=list(argv) if argv is not None else None, standalone_mode=False)
        return code if isinstance(code, int) else 0
    except HoEError as e:
        _error(e.cli_message())
        return 2
    except typer.Exit as e:
        return e.exit_code
    except click.ClickException as e:  # usage errors: unknown flag, missing option, bad int...
        e.show()
        return e.exit_code
    except (Interrupted, typer.Abort) as e:
        notes = getattr(e, "__notes__", None) or ["every output is either as it was or complete."]
        _error("interrupted: " + " ".join(notes))
        return INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    """Console entry point."""
    sys.exit(run())


def _install_signal_handlers() -> dict:
    """SIGINT (unless ignored, as in a shell's background job) and SIGTERM raise :class:`Interrupted`."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if current in (signal.default_int_handler, signal.SIG_DFL):
            previous[sig] = signal.signal(sig, _interrupt)
    return previous


def _interrupt(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, HoEWarning):
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _error(text: str) -> None:
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
