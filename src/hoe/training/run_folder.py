"""Where a training run works, and how its result replaces the output only when complete.

A run never writes into its output folder ``OUT``. It works in the hidden sibling ``.OUT.partial/``
(checkpoints, then the final artifact) and, once done, that folder is published over ``OUT`` with
:func:`hoe.io.atomic.publish`. So an existing ``OUT`` (an expert, a bundle) stays intact through Ctrl-C, a
crash or SIGKILL; the partial folder keeps the checkpoints, and ``resume`` continues from them. Resuming a
finished ``OUT`` (to train more steps) starts from ``OUT/checkpoints`` and also leaves ``OUT`` alone until
the longer run is done.

A partial folder names its owner (``owner.json``: the process id), so two runs never share one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hoe.errors import OutputExistsError
from hoe.io.atomic import Inputs, clean_stale, note, output_path, process_alive, publish, refuse_inputs
from hoe.training.checkpoint import list_checkpoints

OWNER = "owner.json"


@dataclass(frozen=True)
class RunFolder:
    out: Path  # the published artifact
    work: Path  # .OUT.partial: checkpoints and the artifact being made
    resume_from: Path | None  # the checkpoint to restore, if any

    @property
    def checkpoints(self) -> Path:
        return self.work / "checkpoints"

    @classmethod
    def open(
        cls, out: str | Path, resume: bool, overwrite: bool, field: str = "out", inputs: Inputs | None = None
    ) -> RunFolder:
        """Check ``out`` (apart from the run's ``inputs``, :func:`~hoe.io.atomic.refuse_inputs`) and pick the
        checkpoint to resume from; creates nothing (call :meth:`start`)."""
        refuse_inputs(out, inputs or {}, field)
        final = output_path(out, field)
        clean_stale(final)
        work = final.parent / f".{final.name}.partial"
        _check_owner(work, field)
        latest = (
            (list_checkpoints(work / "checkpoints") or list_checkpoints(final / "checkpoints"))
            if resume
            else []
        )
        if latest:
            return cls(final, work, latest[-1])
        if work.exists() and not overwrite and list_checkpoints(work / "checkpoints"):
            raise OutputExistsError(
                f"an unfinished run of {str(out)!r} is in {str(work)!r}.",
                field=field,
                fix="Resume it to continue, or allow overwriting to discard it.",
            )
        if final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
            raise OutputExistsError(
                f"{str(out)!r} exists and is not empty.",
                field=field,
                value=str(out),
                fix="Resume its training, allow overwriting it (it is kept until the new run is done), or pass "
                "another folder.",
            )
        return cls(final, work, None)

    def start(self) -> None:
        """Create (or reuse, when resuming from it) the partial folder and claim it for this process."""
        if self.work.exists() and not _inside(self.resume_from, self.work):
            shutil.rmtree(self.work)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        if self.resume_from is not None and not _inside(self.resume_from, self.work):
            # resuming a finished OUT: its last checkpoint comes along, so the OUT this run publishes can be
            # resumed again even when the run adds no step (a plan rerun whole)
            shutil.copytree(self.resume_from, self.checkpoints / self.resume_from.name)
        (self.work / OWNER).write_text(json.dumps({"pid": os.getpid()}) + "\n")

    def publish(self) -> Path:
        """Replace ``out`` with the finished partial folder; return ``out``."""
        (self.work / OWNER).unlink(missing_ok=True)
        publish(self.work, self.out)
        return self.out

    def stopped(self, error: BaseException, steps_done: int) -> None:
        """Say on ``error`` what was kept when the run stops before publishing."""
        last = list_checkpoints(self.checkpoints)
        kept = (
            f"the last checkpoint (step {int(last[-1].name.split('-')[1])}) is in {str(self.work)!r}; resume to continue"
            if last
            else "no checkpoint was written yet"
        )
        note(error, f"stopped after {steps_done} steps; {kept}. {str(self.out)!r} is unchanged.")
        (self.work / OWNER).unlink(missing_ok=True)


def _check_owner(work: Path, field: str) -> None:
    try:
        pid = int(json.loads((work / OWNER).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no owner (stopped cleanly or never started) or unreadable: free to take
    if pid != os.getpid() and process_alive(pid):
        raise OutputExistsError(
            f"another run (process {pid}) is writing {str(work)!r}.",
            field=field,
            fix="Wait for it to finish, or pass another output folder.",
        )


def _inside(path: Path | None, folder: Path) -> bool:
    return path is not None and folder in path.parents
