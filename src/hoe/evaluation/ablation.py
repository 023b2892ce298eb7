"""The expert-composition ablation (the paper's Fig. 5 / Table 4, BENCH.md §4): several bundles' fronts on one
protocol, side by side, with paired intervals.

Each row is one method of one ``hoe evaluate`` run: ``LABEL=FOLDER:METHOD``, e.g. ``3 LoRA=runs/abl/lora3:hoe-lora``
or ``6 LoRA + routers=runs/eval/smol3:hoe``. The rows must share the protocol (prompts, samples, seed, decoding,
objectives, grid); their per-prompt rewards then pair, prompt by prompt, and every row's hypervolume is
bootstrapped on the same prompt resamples as ``hoe evaluate`` draws (:func:`hoe.evaluation.metrics.
bootstrap_counts`, seed 0), so the ratio of two rows has a paired interval even though they come from
different runs. Rows read the finished point files (``points/METHOD/LABEL.json``), never generate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from hoe.errors import ConfigError
from hoe.evaluation.metrics import (
    bootstrap_counts,
    bootstrap_hypervolumes,
    hypervolume,
    mean_tchebycheff,
    percentile_interval,
)

PROTOCOL = ("prompts", "samples", "seed", "max_new_tokens", "temperature", "chat", "objective")
"""The settings of a point (its ``key``) that rows must share to be compared."""


@dataclass
class Row:
    label: str
    folder: Path
    method: str
    lams: torch.Tensor  # (k, m)
    per_prompt: torch.Tensor  # (k, n, m): each prompt's rewards averaged over its samples
    protocol: dict


def objective_names(specs: list[str]) -> list[str]:
    """The objectives' names from their specs: ``helpful=hf:x`` is ``helpful``; a built-in kind without a
    name (``relevance``) is named after itself."""
    from hoe.objectives.base import split_name

    return [split_name(s)[0] or split_name(s)[1] for s in specs]


def parse_row(spec: str) -> tuple[str, Path, str]:
    """``LABEL=FOLDER:METHOD`` -> (label, folder, method); errors name ``row``."""
    label, eq, rest = spec.partition("=")
    folder, colon, method = rest.rpartition(":")
    if not (eq and colon and label.strip() and folder.strip() and method.strip()):
        raise ConfigError(
            f"got {spec!r}.",
            field="row",
            value=spec,
            fix="Write LABEL=FOLDER:METHOD, e.g. '3 LoRA=runs/ablation/lora3:hoe-lora'.",
        )
    return label.strip(), Path(folder.strip()), method.strip()


def load_row(label: str, folder: Path, method: str) -> Row:
    """The finished points of ``method`` in the evaluation ``folder`` (its ``points/METHOD/*.json``)."""
    files = sorted((folder / "points" / method).glob("*.json"))
    if not files:
        raise ConfigError(
            f"{str(folder)!r} has no finished points of {method!r}.",
            field="row",
            value=f"{label}={folder}:{method}",
            fix="Run hoe evaluate --methods METHOD --out FOLDER first, or name a method it evaluated.",
        )
    lams, per_prompt, protocols = [], [], []
    for path in files:
        try:
            record = json.loads(path.read_text())
            rewards = torch.tensor(record["rewards"], dtype=torch.float64)  # (S, n, m)
            objectives = list(record["key"]["objective"])
            preference = [float(v) for v in record["preference"]]
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
            raise ConfigError(
                f"cannot read the point {str(path)!r} ({type(e).__name__}: {e}).",
                field="row",
                value=f"{label}={folder}:{method}",
                fix="Pass the folder of a finished hoe evaluate with a lattice method (hoe, hoe-lora, rs, ...).",
            ) from None
        if rewards.ndim != 3 or rewards.shape[-1] != len(objectives) or not torch.isfinite(rewards).all():
            raise ConfigError(
                f"{str(path)!r} holds rewards of shape {tuple(rewards.shape)} or non-finite values.",
                field="row",
                value=f"{label}={folder}:{method}",
                fix="Rerun hoe evaluate into a new folder.",
            )
        lams.append(preference)
        per_prompt.append(rewards.mean(0))
        protocols.append({k: record["key"].get(k) for k in PROTOCOL})
    if any(p != protocols[0] for p in protocols):
        raise ConfigError(
            f"the points of {method!r} in {str(folder)!r} were made with different settings.",
            field="row",
            value=f"{label}={folder}:{method}",
            fix="Rerun hoe evaluate with --overwrite so every point has the same settings.",
        )
    order = sorted(range(len(lams)), key=lambda j: [-v for v in lams[j]])
    return Row(
        label,
        folder,
        method,
        torch.tensor([lams[j] for j in order], dtype=torch.float64),
        torch.stack([per_prompt[j] for j in order]),
        protocols[0],
    )


def compare(rows: list[Row], ref: torch.Tensor, reference: str, resamples: int = 1000, seed: int = 0) -> dict:
    """HV, its interval and the paired ratio to the ``reference`` row's HV, per row (see the module doc)."""
    base = rows[0]
    for row in rows[1:]:
        problem = _mismatch(base, row)
        if problem:
            raise ConfigError(
                f"{row.label!r} and {base.label!r} {problem}.",
                field="row",
                value=row.label,
                fix="Evaluate every composition with the same hoe evaluate options (prompts, samples, seed, "
                "grid, decoding, objectives).",
            )
    labels = [r.label for r in rows]
    if reference not in labels:
        raise ConfigError(
            f"got {reference!r}.", field="reference", value=reference, fix=f"Name one of the rows {labels}."
        )
    counts = bootstrap_counts(base.per_prompt.shape[1], resamples, seed)
    boots, out = {}, {}
    for row in rows:
        means = row.per_prompt.mean(1)  # (k, m)
        boots[row.label] = bootstrap_hypervolumes(row.per_prompt, ref, counts)
        lo, hi = percentile_interval(boots[row.label])
        out[row.label] = {
            "source": f"{row.folder}:{row.method}",
            "hypervolume": hypervolume(means, ref),
            "hypervolume_ci": [lo, hi],
            "tchebycheff": float(mean_tchebycheff(row.lams, means, ref)),
        }
    ref_row = rows[labels.index(reference)]
    for row, (label, entry) in zip(rows, out.items()):
        ratio = boots[label] / boots[reference]
        entry["ratio"] = entry["hypervolume"] / out[reference]["hypervolume"]
        entry["ratio_ci"] = list(percentile_interval(ratio))
        entry["differs_at"] = _differences(row, ref_row)
    return {
        "format": "hoe-ablation/1",
        "reference": reference,
        "reference_point": ref.tolist(),
        "protocol": base.protocol,
        "points": base.lams.shape[0],
        "prompts": base.per_prompt.shape[1],
        "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95},
        "rows": out,
    }


def _differences(row: Row, ref: Row) -> list[dict]:
    """The lattice points where ``row``'s rewards differ from ``ref``'s (where its routers or experts act):
    the preference and both mean reward vectors."""
    out = []
    for j, lam in enumerate(row.lams):
        if not torch.equal(row.per_prompt[j], ref.per_prompt[j]):
            out.append(
                {
                    "preference": [round(float(v), 6) for v in lam],
                    "mean": [round(float(v), 4) for v in row.per_prompt[j].mean(0)],
                    "reference": [round(float(v), 4) for v in ref.per_prompt[j].mean(0)],
                }
            )
    return out


def _mismatch(a: Row, b: Row) -> str | None:
    if a.protocol != b.protocol:
        diff = [k for k in PROTOCOL if a.protocol.get(k) != b.protocol.get(k)]
        return f"were evaluated with different settings ({', '.join(diff)})"
    if a.lams.shape != b.lams.shape or not torch.allclose(a.lams, b.lams, atol=1e-6):
        return "were evaluated on different preference grids"
    return None


def markdown(result: dict, command: str) -> str:
    ref = result["reference"]
    lines = [
        f"# Expert-composition ablation: HV ratio to `{ref}`",
        "",
        f"{result['prompts']} prompts × {result['protocol']['samples']} samples, {result['points']} preferences, "
        f"reference point {result['reference_point']}; 95% bootstrap intervals over prompts "
        f"({result['bootstrap']['resamples']} resamples, paired across rows). Made by `{command}`.",
        "",
        f"| composition | hypervolume [CI] | HV / {ref} [CI] | Tchebycheff | source |",
        "|---|---|---|---|---|",
    ]
    for label, r in result["rows"].items():
        lo, hi = r["hypervolume_ci"]
        rlo, rhi = r["ratio_ci"]
        lines.append(
            f"| {label} | {r['hypervolume']:.4f} [{lo:.4f}, {hi:.4f}] | {r['ratio']:.3f} [{rlo:.3f}, {rhi:.3f}] "
            f"| {r['tchebycheff']:.4f} | `{r['source']}` |"
        )
    lines += ["", f"Where each row's mean rewards differ from `{ref}`'s (row / {ref}):", ""]
    for label, r in result["rows"].items():
        if label == ref:
            continue
        points = r["differs_at"]
        if len(points) > 4:
            lines.append(f"- {label}: {len(points)} of {result['points']} points")
            continue
        text = "; ".join(
            f"({', '.join(f'{v:g}' for v in p['preference'])}): {p['mean']} / {p['reference']}"
            for p in points
        )
        lines.append(f"- {label}: {text or 'none'}")
    return "\n".join(lines) + "\n"


def ablation(
    specs: list[str], reference: str | None, out: str | Path, ref_point=None, resamples: int = 1000
) -> dict:
    """``hoe ablation``: compare the rows ``specs`` (``LABEL=FOLDER:METHOD``), write ``out``/results.json and
    results.md (each whole or not at all), return the result."""
    from hoe.evaluation.evaluate import reference_point
    from hoe.io.atomic import atomic_file, output_path, refuse_inputs
    from hoe.provenance import command_line

    if len(specs) < 1:
        raise ConfigError("got no rows.", field="row", fix="Pass --row LABEL=FOLDER:METHOD (repeat).")
    parsed = [parse_row(s) for s in specs]
    labels = [p[0] for p in parsed]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"got the labels {labels}.", field="row", fix="Give every row its own label.")
    refuse_inputs(out, {"row": [folder for _, folder, _ in parsed]})  # before anything is read
    rows = [load_row(label, folder, method) for label, folder, method in parsed]
    objectives = list(rows[0].protocol["objective"])
    names = objective_names(objectives)
    ref = reference_point(ref_point, names, objectives)
    result = compare(rows, ref, reference or labels[0], resamples)
    result["objectives"] = names
    result["command"] = command_line()
    folder = output_path(out, replaced=False)  # only its two files are replaced
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / "results.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    with atomic_file(folder / "results.md") as tmp:
        tmp.write_text(markdown(result, result["command"]))
    return result
