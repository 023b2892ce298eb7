"""Set-ups: a whole HoE experiment in one TOML file, checked before anything runs (ROADMAP: the paper's set-ups).

A set-up names the base model, the objectives (specs, maximised), the prompts, where the single-objective
models come from, and the options of every stage (:mod:`hoe.setups.config`; prompts from Hugging Face
datasets: :mod:`hoe.setups.prompts`). Its commands are a command-line matter: :func:`hoe.cli.plan.plan` turns
it into the ``hoe`` commands that run it, in order (``hoe setup plan``), and :func:`hoe.cli.plan.check`
validates all of it without loading a model (``hoe setup check``): every objective spec resolves
(:func:`hoe.objectives.base.check_spec`), every command parses with the real command line, and each
command's values pass the checks the command makes.

The shipped set-ups (:data:`SETUPS`, ``hoe setup check NAME``): ``smol3`` (the embedded default, offline),
``hh-rlhf`` (helpful, harmless, humour), ``reddit-summary`` (summary, faithfulness) and ``beavertails``
(reward, cost), the last three as in the paper's code (METHOD.md §5), for a GPU.
"""

from hoe.setups.config import SETUPS, Setup, load_setup

__all__ = ["SETUPS", "Setup", "load_setup"]
