"""The exceptions `hoe` raises for bad input, and how they are worded.

An error is data: the ``field`` that was wrong (a library argument name such as ``"max_new_tokens"``, which is
also the CLI flag ``--max-new-tokens`` and the server's ``param``), the ``value`` that was passed, the
``problem`` and the ``fix``. Each front end words it its own way:

* the library: ``str(e)`` -> ``"max_new_tokens: got 0. Pass a positive number of tokens."``;
* the CLI: :meth:`HoEError.cli_message` -> ``"--max-new-tokens: got 0. Pass a positive number of tokens."``;
* the server: ``param = e.field``, ``message = e.message``.

So a message never names a flag itself; whoever shows it decides how the field is spelled.
"""

from __future__ import annotations


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()
"""``value`` of an error that is not about one passed value (a missing file, a conflict between two fields)."""


class HoEError(Exception):
    """Root of every error `hoe` raises on purpose.

    ``problem``: what is wrong, a sentence; ``fix``: what to do instead; ``field``: the argument it is about
    (``None`` when it is about no single argument); ``value``: what was passed (:data:`NO_VALUE` if none).
    """

    def __init__(self, problem: str, *, field: str | None = None, value: object = NO_VALUE, fix: str = ""):
        self.problem, self.field, self.value, self.fix = problem, field, value, fix
        super().__init__(self.worded(self.field))

    @property
    def message(self) -> str:
        """The problem and the fix, without the field."""
        return f"{self.problem} {self.fix}".strip()

    def worded(self, field_name: str | None) -> str:
        """The message prefixed by ``field_name`` as a front end spells the field."""
        return f"{field_name}: {self.message}" if field_name else self.message

    def cli_message(self) -> str:
        """The message with the field spelled as a CLI flag (``max_new_tokens`` -> ``--max-new-tokens``)."""
        return self.worded(flag(self.field) if self.field else None)


class ConfigError(HoEError, ValueError):
    """An argument has a value `hoe` cannot use (bad rank, unknown method, malformed preference...)."""


class FileKeyError(ConfigError):
    """A key of a file (a set-up's TOML) has a bad value; the CLI names the key as written in the file
    (``name``, ``objectives.brevity``), never as a flag (``--name``): the user fixes the file, not a flag."""

    def cli_message(self) -> str:
        return self.worded(self.field)


class PreferenceError(ConfigError):
    """A preference vector λ is negative, all zero, NaN, of the wrong length or names unknown objectives."""


class CheckpointError(HoEError):
    """A model or adapter checkpoint is missing, unreadable, incomplete, or holds NaN/Inf."""


class ShapeMismatchError(CheckpointError):
    """Two checkpoints that must share an architecture do not (different tensors or shapes)."""


class OutputExistsError(HoEError, FileExistsError):
    """The output folder exists already; `hoe` never overwrites data unless asked to."""


class OutputPathError(HoEError, OSError):
    """The output path cannot be written (under a file, not writable, the current folder...)."""


class HoEWarning(UserWarning):
    """Something the user should know that does not stop the work (e.g. a stale temporary was removed)."""


def flag(field: str) -> str:
    """``"max_new_tokens"`` -> ``"--max-new-tokens"``; an indexed field ``"preference[2]"`` keeps its index.
    A key of a file (``routers.lr``, ``[routers]``, ``setup file``: not a plain name) is kept as it is."""
    name, bracket, rest = field.partition("[")
    if not name.replace("_", "").isalnum():
        return field
    return "--" + name.replace("_", "-") + bracket + rest


def bad_value(field: str, value: object, fix: str, cls: type[HoEError] = ConfigError) -> HoEError:
    """The standard error for one bad value: ``field: got <value>. <fix>``."""
    return cls(f"got {value!r}.", field=field, value=value, fix=fix)


class ConfigErrors(ConfigError):
    """Several bad options found at once (all are reported, not only the first); ``errors`` lists them."""

    def __init__(self, errors: list[HoEError]):
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.problem, field=first.field, value=first.value, fix=first.fix)

    def __str__(self) -> str:
        return self._joined([str(e) for e in self.errors])

    def cli_message(self) -> str:
        return self._joined([e.cli_message() for e in self.errors])

    @staticmethod
    def _joined(lines: list[str]) -> str:
        return lines[0] if len(lines) == 1 else "invalid options:\n  " + "\n  ".join(lines)


def raise_all(errors: list[HoEError | None]) -> None:
    """Raise the errors found (one, or :class:`ConfigErrors` for several); do nothing if there are none."""
    found = [e for e in errors if e is not None]
    if len(found) == 1:
        raise found[0]
    if found:
        raise ConfigErrors(found)
