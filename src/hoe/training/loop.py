"""The one training loop every recipe plugs into (``train-expert``, ``train-router``).

A recipe is an object with a config (``steps``, ``checkpoint_every`` and the rest), a run folder, an
optimizer and a history, that can do one step and say what it trains (:class:`Recipe`). The loop gives every
recipe the same behaviour:

* **seeding** from ``(seed, step)`` only (:func:`derived_seed`, :func:`step_prompts`), so no RNG state is saved
  and a resumed run repeats an uninterrupted one exactly;
* a progress bar, or with ``progress=False`` one log line per checkpoint (for background runs);
* a checkpoint every ``checkpoint_every`` steps and at the end (:mod:`hoe.training.checkpoint`), and resume
  from the last one (:func:`restore`), refusing options that would change the run;
* ``log.jsonl``, one JSON line of metrics per step, next to the checkpoints;
* the run folder discipline of :mod:`hoe.training.run_folder`: work in ``.OUT.partial``, publish over ``OUT``
  once complete; on Ctrl-C or a crash, a note says what was kept.

With several processes (:mod:`hoe.distributed`) every rank runs the loop and only rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import torch

from hoe.distributed import Dist
from hoe.errors import CheckpointError, flag
from hoe.training.checkpoint import load_checkpoint, save_checkpoint
from hoe.training.run_folder import RunFolder

LOG = "log.jsonl"


class Recipe(Protocol):
    """What the loop needs from a recipe's live run."""

    config: Any  # a dataclass with ``steps`` and ``checkpoint_every``
    folder: RunFolder
    optimizer: torch.optim.Optimizer
    history: list[dict]
    start: int  # steps already done (resumed)
    commands: list[str]  # the commands that ran it, oldest first: this one last, earlier ones when resumed

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        """The trained tensors by name (views are fine): what a checkpoint saves and restores."""
        ...

    def train_step(self, step: int) -> dict:
        """Do step ``step`` (0-based); return its metrics (JSON-able, ``"step": step + 1`` included)."""
        ...

    def state(self) -> dict:
        """Recipe state beyond the trained tensors and the optimizer, saved in each checkpoint (JSON-able)."""
        ...

    def load_state(self, state: dict) -> None:
        """Restore what :meth:`state` saved."""
        ...

    def postfix(self, metrics: dict) -> dict[str, str]:
        """What the progress bar shows after a step."""
        ...

    def summary(self) -> str:
        """One line about the recent steps, for the log line of each checkpoint."""
        ...

    def save(self) -> None:
        """Write the result into ``folder.work`` (published afterwards)."""
        ...


# ---------------------------------------------------------------- seeding


def derived_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (e.g. ``(seed, "sample", step)``), stable across runs and platforms."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:16], 16) & (2**63 - 1)


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    g = torch.Generator().manual_seed(derived_seed(seed, "order", epoch))
    return torch.randperm(n, generator=g).tolist()


def step_prompts(prompts: list[str], seed: int, batch: int, step: int) -> list[str]:
    """The ``batch`` prompts of ``step``: a fresh seeded permutation of the prompt set per epoch, read in order."""
    picked = []
    for pos in range(step * batch, (step + 1) * batch):
        epoch, i = divmod(pos, len(prompts))
        picked.append(prompts[_epoch_order(seed, epoch, len(prompts))[i]])
    return picked


# ---------------------------------------------------------------- the loop


def train(run: Recipe, progress: bool = True, dist: Dist | None = None) -> Path:
    """Run steps ``run.start .. config.steps - 1``, checkpointing and logging; return the published folder."""
    from tqdm.auto import tqdm

    dist = dist or Dist()
    c = run.config
    main = dist.is_main
    log = _open_log(run) if main else None
    bar = tqdm(range(run.start, c.steps), initial=run.start, total=c.steps, disable=not (progress and main))
    try:
        for step in bar:
            metrics = run.train_step(step)
            run.history.append(metrics)
            if log is not None:
                log.write(json.dumps(metrics) + "\n")
                log.flush()
            bar.set_postfix(run.postfix(metrics))
            if (step + 1) % c.checkpoint_every == 0 or step + 1 == c.steps:
                folder = checkpoint(run, step + 1) if main else None
                if main and not progress:  # a log line per checkpoint for runs in the background
                    print(f"step {step + 1}/{c.steps}, {run.summary()}; saved {folder}", file=sys.stderr)
        if main:
            run.save()
    except BaseException as e:
        if main:
            run.folder.stopped(e, len(run.history))
        raise
    finally:
        if log is not None:
            log.close()
    out = run.folder.publish() if main else run.folder.out
    dist.barrier()  # the other ranks return once the artifact is in place
    return out


def _open_log(run: Recipe):
    """``log.jsonl`` in the work folder, holding exactly the steps of the history (a resumed run drops the
    lines of steps done after its checkpoint)."""
    path = run.folder.work / LOG
    lines = "".join(json.dumps(m) + "\n" for m in run.history)
    path.write_text(lines)
    return path.open("a")


def checkpoint(run: Recipe, step: int) -> Path:
    state = {
        "config": asdict(run.config),
        "history": run.history,
        "commands": run.commands,
        "rng": "none saved: sampling and prompt order are derived from (seed, step)",
        **run.state(),
    }
    tensors = {n: p.detach() for n, p in run.trainable.items()}
    return save_checkpoint(run.folder.checkpoints, step, tensors, run.optimizer, state)


def restore(run: Recipe, folder: Path, resumable: set[str]) -> None:
    """Load the trained tensors, optimizer state, history and recipe state from a checkpoint made with a
    compatible config (fields outside ``resumable`` equal)."""
    tensors, optimizer_state, state = load_checkpoint(folder)
    check_compatible(state.get("config", {}), asdict(run.config), folder, resumable)
    trainable = run.trainable
    if set(tensors) != set(trainable) or any(tensors[n].shape != p.shape for n, p in trainable.items()):
        raise CheckpointError(
            f"{str(folder)!r} holds other trained parameters than this run creates.",
            field="resume",
            fix="Resume with the options it was made with, or start again (allow overwriting).",
        )
    with torch.no_grad():
        for name, p in trainable.items():
            p.copy_(tensors[name])
    run.optimizer.load_state_dict(optimizer_state)
    run.start, run.history = int(state["step"]), list(state.get("history", []))
    run.commands = [*state.get("commands", []), *run.commands[-1:]]
    run.load_state(state)


def check_compatible(saved: dict, current: dict, folder: Path, resumable: set[str]) -> None:
    diffs = [k for k in current if k not in resumable and k in saved and saved[k] != current[k]]
    if diffs:
        detail = "; ".join(f"{flag(k)}: checkpoint {saved[k]!r}, now {current[k]!r}" for k in diffs)
        raise CheckpointError(
            f"{str(folder)!r} was made with other options ({detail}).",
            field="resume",
            fix="Pass the same values, or start again (allow overwriting).",
        )
