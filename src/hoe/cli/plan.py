"""A set-up (:mod:`hoe.setups`) as ``hoe`` commands (:func:`plan`), and the check that they would all run (:func:`check`).

The plan, for run folder ``OUT``: the prompts from a dataset (``hoe setup prompts``) if the set-up names one;
``hoe train-expert`` for each objective without a tuned model; ``hoe extract`` into ``OUT/experts``; ``hoe
merge`` per merged anchor; ``hoe build`` into ``OUT/bundle``; per router anchor ``hoe train-router`` and
``hoe save-router`` (``OUT/routers/NAME``), then ``hoe build`` with the routers into ``OUT/bundle-routers``;
``hoe evaluate`` into ``OUT/eval``. Training steps resume (``--resume``) and the quick ones replace their
output once the new one is complete (``--overwrite``), so rerunning the plan after an interruption goes on.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoe.errors import ConfigError, HoEError
from hoe.setups.config import Setup
from hoe.training.router.config import default_router_name

TRAIN, EVAL = "train", "eval"  # the prompt splits every command reads
PROMPT_KEYS = {"file", "dataset", "subset", "format", "train", "eval"}


@dataclass(frozen=True)
class Step:
    what: str  # one line: what the step makes
    argv: tuple[str, ...]  # ("hoe", COMMAND, ...)
    table: str  # the set-up table its options come from (named in errors)

    def shell(self) -> str:
        return shlex.join(self.argv)


def plan(setup: Setup, out: str | Path) -> list[Step]:
    """The ``hoe`` commands that run ``setup`` in the folder ``out``, in order."""
    out = Path(out)
    steps: list[Step] = []
    prompts = _prompts_file(setup, out, steps)
    tuned = _tuned(setup, out, prompts, steps)
    experts = _experts(setup, out, tuned, steps)
    bundle = out / "bundle"
    steps.append(_step("the HoE bundle of the LoRA experts", "merge", "build", "--base", setup.base, *experts,
                       "--out", bundle, "--overwrite"))  # fmt: skip
    bundle = _routers(setup, out, bundle, experts, prompts, steps)
    tuned_flags = _pairs("--tuned", tuned) if _runs_tuned(setup) else []
    steps.append(_step("HoE against the baselines", "evaluate", "evaluate", "--model", bundle, "--out", out / "eval",
                       *_objective_flags(setup), *tuned_flags, "--prompts", prompts, "--split", EVAL,
                       "--chat" if setup.chat else "--no-chat", *_flags(setup.evaluate)))  # fmt: skip
    return steps


def _tuned(setup: Setup, out: Path, prompts: str, steps: list[Step]) -> dict[str, str]:
    """Each objective's single-objective model: the set-up's ``[tuned]`` one, or one ``train-expert`` trains."""
    names = list(setup.objectives)
    unknown = sorted(set(setup.tuned) - set(names))
    if unknown:
        raise ConfigError(f"tuned names {unknown}, which are not objectives.", field="[tuned]", value=unknown,
                          fix=f"Name one of {names}.")  # fmt: skip
    for name, ref in setup.tuned.items():
        if not isinstance(ref, str) or not ref.strip():
            raise ConfigError(f"tuned model {ref!r}.", field=f"tuned.{name}", value=ref,
                              fix="Give a folder, hub id or PEFT adapter, or leave the objective out to train it.")  # fmt: skip
    tuned = {}
    for name, spec in setup.objectives.items():
        tuned[name] = setup.tuned.get(name) or str(out / "tuned" / name)
        if name not in setup.tuned:
            steps.append(_step(f"the single-objective expert for {name}", "train_expert", "train-expert",
                               "--out", tuned[name], "--base", setup.base, "--objective", f"{name}={spec}",
                               "--prompts", prompts, "--split", TRAIN, *_flags(_expert_options(setup, name)),
                               "--resume"))  # fmt: skip
    return tuned


def _experts(setup: Setup, out: Path, tuned: dict[str, str], steps: list[Step]) -> list[str]:
    """``extract`` and a ``merge`` per merged anchor; returns the bundle's ``--expert`` flags."""
    if "rank" not in setup.extract:
        raise ConfigError("extract has no rank.", field="extract.rank", fix="Add rank = 64 (or 0.9: energy) to [extract].")  # fmt: skip
    folder = out / "experts"
    steps.append(_step("the LoRA experts, by task-SVD", "extract", "extract", "--base", setup.base,
                       *_pairs("--tuned", tuned), "--out", folder, *_flags(setup.extract), "--overwrite"))  # fmt: skip
    flags = _pairs("--expert", {n: folder / n for n in setup.objectives})
    options = {k: v for k, v in setup.merge.items() if k != "anchors"}
    taken = set(setup.objectives)
    for i, anchor in enumerate(_anchors(setup, "merge")):
        used = {n: w for n, w in anchor.items() if w > 0}
        name = "-".join(used)
        if len(used) < 2 or name in taken:
            problem = (
                "merges one expert" if len(used) < 2 else f"names the merged expert {name!r}, which is taken"
            )
            raise ConfigError(f"{problem}.", field=f"merge.anchors[{i}]", value=anchor,
                              fix="Give each merged expert a new set of two or more objectives with weight > 0.")  # fmt: skip
        taken.add(name)
        steps.append(_step(f"the merged expert {name}", "merge", "merge", *_pairs("--expert", {n: folder / n for n in used}),
                           "--preference", _text(used), "--out", folder / name, *_flags(options), "--overwrite"))  # fmt: skip
        flags += ["--expert", f"{name}={folder / name}@{_text(anchor)}"]
    return flags


def _routers(
    setup: Setup, out: Path, bundle: Path, experts: list[str], prompts: str, steps: list[Step]
) -> Path:
    """Per router anchor ``train-router`` and ``save-router``, then a bundle with them all; returns the bundle
    to evaluate."""
    options = {k: v for k, v in setup.routers.items() if k not in ("anchors", "count", "placement")}
    folders: list[str] = []
    for i, (name, anchor, extra) in enumerate(_router_anchors(setup, out, bundle, prompts, steps)):
        if str(out / "routers" / name / "router") in folders:
            raise ConfigError(f"names a second router {name!r} (routers are named by their anchors, to two decimals).",
                              field=f"routers.anchors[{i}]", value=anchor, fix="Give router anchors that differ by 0.01 or more.")  # fmt: skip
        folder = out / "routers" / name
        steps.append(_step(f"the router expert {name}", "routers", "train-router", "--model", bundle, "--anchor",
                           anchor, *extra, "--out", folder / "bundle", "--name", name, *_objective_flags(setup),
                           "--prompts", prompts, "--split", TRAIN, *_flags(options), "--resume"))  # fmt: skip
        steps.append(_step(f"router {name}'s own folder", "routers", "save-router", "--model", folder / "bundle",
                           "--name", name, "--out", folder / "router", "--overwrite"))  # fmt: skip
        folders += ["--router-from", str(folder / "router")]
    if not folders:
        return bundle
    final = out / "bundle-routers"
    steps.append(_step("the HoE bundle with its router experts", "routers", "build", "--base", setup.base,
                       *experts, *folders, "--out", final, "--overwrite"))  # fmt: skip
    return final


PLACEMENT = {"limit": 64, "grid": 4, "samples": 2}
"""``[routers.placement]`` defaults: the train prompts and lattice HoE-LoRA is measured on to place routers."""


def _router_anchors(
    setup: Setup, out: Path, bundle: Path, prompts: str, steps: list[Step]
) -> list[tuple[str, str, list[str]]]:
    """(name, --anchor, extra flags) per router. ``anchors = "auto"`` with ``count = K``: HoE-LoRA measured on
    train prompts (``[routers.placement]``: limit, grid, samples) and ``hoe place-routers`` first, then router k
    at ``--anchor auto:k`` of that placement."""
    if setup.routers.get("anchors") != "auto":
        if "count" in setup.routers or "placement" in setup.routers:
            raise ConfigError("count and placement go with anchors = \"auto\".", field="[routers]",
                              fix='Write anchors = "auto", or drop count and placement.')  # fmt: skip
        return [
            (default_router_name(list(anchor.values())), _text(anchor), [])
            for anchor in _anchors(setup, "routers")
        ]
    count = setup.routers.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"got {count!r}.", field="routers.count", value=count,
                          fix='With anchors = "auto", give count = K, how many routers to place (e.g. 2).')  # fmt: skip
    place = setup.routers.get("placement", {})
    if not isinstance(place, dict) or set(place) - set(PLACEMENT):
        raise ConfigError(f"got {place!r}.", field="routers.placement", value=place,
                          fix=f"Give a table with some of {sorted(PLACEMENT)}.")  # fmt: skip
    folder = out / "placement"
    reference = {k: v for k, v in setup.evaluate.items() if k == "reference_point"}
    steps.append(_step("HoE without routers on train prompts, to place the routers", "routers", "evaluate",
                       "--model", bundle, "--methods", "hoe-lora", "--out", folder / "eval", *_objective_flags(setup),
                       "--prompts", prompts, "--split", TRAIN, "--chat" if setup.chat else "--no-chat",
                       *_flags({**PLACEMENT, **place, **reference}), "--no-progress"))  # fmt: skip
    steps.append(_step(f"the {count} router anchors", "routers", "place-routers", "--model", bundle, "--results",
                       folder / "eval", "--routers", count, "--out", folder / "placement.json"))  # fmt: skip
    extra = ["--placement", str(folder / "placement.json")]
    return [(f"placed-{k}", f"auto:{k}", extra) for k in range(1, count + 1)]


def _anchors(setup: Setup, table: str) -> list[dict[str, float]]:
    """The ``anchors`` of ``table`` (tables or lists), each checked and put on the simplex."""
    from hoe.preference import to_simplex

    names = list(setup.objectives)
    return [
        dict(zip(names, to_simplex(a, names, field=f"{table}.anchors[{i}]").tolist()))
        for i, a in enumerate(getattr(setup, table).get("anchors", []))
    ]


def _step(what: str, table: str, *argv: object) -> Step:
    return Step(what, ("hoe", *map(str, argv)), table)


def _pairs(flag: str, named: dict[str, object]) -> list[str]:
    """``--tuned``, {a: x, b: y} -> ``--tuned a=x --tuned b=y``."""
    return [a for n, v in named.items() for a in (flag, f"{n}={v}")]


def _objective_flags(setup: Setup) -> list[str]:
    return _pairs("--objective", setup.objectives)


def check(setup: Setup, out: str | Path = "RUN") -> list[Step]:
    """Check ``setup`` without loading a model: objective specs, prompts, anchors, every command's options
    (parsed by the real command line) and the router and evaluation configs. Returns the plan; raises
    :class:`ConfigError` naming the set-up field (``routers.lr``) at the first problem."""
    from hoe.objectives.base import check_spec

    for name, spec in setup.objectives.items():
        _in_field(f"objectives.{name}", lambda spec=spec, name=name: check_spec(f"{name}={spec}"))
    steps = plan(setup, out)
    for step in steps:
        _in_field(step.table, lambda step=step: _parse(step))
    return steps


def _parse(step: Step) -> None:
    """Parse ``step``'s command line with the real ``hoe`` commands (options and types), then check its values
    as the command would: the expert, router and evaluation configs, the ranks, the merge method and options."""
    import typer
    from typer import _click as click

    from hoe.cli.app import app
    from hoe.cli.experts import merge_options
    from hoe.cli.training import expert_config, router_config
    from hoe.experts.merging import resolve_options
    from hoe.experts.task_svd import parse_rank

    command: Any = typer.main.get_command(app)
    args = list(step.argv[1:])
    while hasattr(command, "commands"):  # groups: hoe, hoe setup
        command = command.commands[args.pop(0)]
    try:
        ctx = command.make_context(step.argv[1], args)
    except click.ClickException as e:
        raise ConfigError(
            e.format_message() + ".", fix="Use the command's options (hoe COMMAND --help)."
        ) from None
    validate = {
        "train-expert": expert_config,
        "train-router": router_config,
        "evaluate": _check_evaluate,
        "extract": lambda p: parse_rank(p["rank"]),
        "merge": lambda p: (parse_rank(p["rank"]), resolve_options(p["method"], merge_options(p))),
    }.get(step.argv[1])
    if validate is not None:
        validate(dict(ctx.params))


def _in_field(table: str, fn: Callable[[], Any]) -> None:
    """Run ``fn``; a :class:`HoEError` it raises is raised again as a :class:`ConfigError` of the set-up's
    ``table`` (``[routers]``), or of its key (``routers.lr``) where the error names an option."""
    try:
        fn()
    except HoEError as e:
        own = e.field in (None, "", "objective") or "." in e.field or table.startswith("objectives.")
        field = (table if "." in table else f"[{table}]") if own else f"{table}.{e.field}"
        raise ConfigError(e.problem, field=field, value=e.value, fix=e.fix) from None


def _check_evaluate(params: dict[str, Any]) -> None:
    """``evaluate``'s config, and its hypervolume reference point (required beyond the smol3 objectives),
    which the command itself checks only once it has loaded the bundle."""
    from hoe.cli.evaluation import evaluate_config
    from hoe.evaluation.evaluate import reference_point
    from hoe.objectives.base import split_name

    config = evaluate_config(params)
    specs = list(config.objective or [])
    reference_point(config.reference_point, [split_name(s)[0] for s in specs], specs)


def _runs_tuned(setup: Setup) -> bool:
    """Whether an evaluated method runs the tuned models (rs, mod, experts), which then get ``--tuned``."""
    from hoe.evaluation.evaluate import EvaluateConfig
    from hoe.evaluation.methods import METHODS

    methods = setup.evaluate.get("methods", EvaluateConfig.methods)
    listed = methods.split(",") if isinstance(methods, str) else methods
    return any(m.strip() in METHODS and "tuned" in METHODS[m.strip()].depends for m in listed)


def _expert_options(setup: Setup, name: str) -> dict[str, Any]:
    """``[train_expert]``'s options, overridden by its sub-table of objective ``name`` (``[train_expert.NAME]``)."""
    tables = {k for k, v in setup.train_expert.items() if isinstance(v, dict)}
    if tables - set(setup.objectives):
        stray = sorted(tables - set(setup.objectives))
        raise ConfigError(f"has tables {stray}, which are not objectives.", field="[train_expert]", value=stray,
                          fix=f"Name a table of per-objective options after one of {list(setup.objectives)}.")  # fmt: skip
    shared = {k: v for k, v in setup.train_expert.items() if not isinstance(v, dict)}
    return {**shared, **setup.train_expert.get(name, {})}


def _prompts_file(setup: Setup, out: Path, steps: list[Step]) -> str:
    """The prompt set every command reads; a ``dataset`` one is first written by ``hoe setup prompts``."""
    p = setup.prompts
    unknown = sorted(set(p) - PROMPT_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}.", field="[prompts]", value=unknown,
                          fix=f"Keys: {', '.join(sorted(PROMPT_KEYS))}.")  # fmt: skip
    if "file" in p:
        from hoe.data.prompts import prompt_source

        if not prompt_source(p["file"])[0].is_file():
            raise ConfigError(f"no prompt set {p['file']!r}.", field="prompts.file", value=p["file"],
                              fix="Pass a JSONL file with train and eval splits, or smol; or give a dataset.")  # fmt: skip
        return str(p["file"])
    if "dataset" not in p:
        raise ConfigError("prompts names no file or dataset.", field="prompts",
                          fix='Add file = "prompts.jsonl" (or "smol"), or dataset = "owner/name" and format.')  # fmt: skip
    from hoe.setups.prompts import PROMPT_FORMATS

    if p.get("format") not in PROMPT_FORMATS:
        raise ConfigError(f"prompts.format is {p.get('format')!r}.", field="prompts.format", value=p.get("format"),
                          fix=f"Choose one of {sorted(PROMPT_FORMATS)}.")  # fmt: skip
    file = str(out / "prompts.jsonl")
    steps.append(
        Step(
            f"the prompts, from {p['dataset']}",
            ("hoe", "setup", "prompts", setup.source, "--out", file),
            "prompts",
        )
    )
    return file


def _flags(options: dict[str, Any]) -> list[str]:
    """Option table -> flags: ``{max_new_tokens: 128, adaptive_kl: false, preference: [..]}`` ->
    ``--max-new-tokens 128 --no-adaptive-kl --preference .. --preference ..``."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            for v in value:
                out += [flag, _text(v)]
        else:
            out += [flag, _text(value)]
    return out


def _text(value: Any) -> str:
    if isinstance(value, dict):  # a preference table
        return ",".join(f"{k}={v:g}" for k, v in value.items())
    return f"{value:g}" if isinstance(value, float) else str(value)
