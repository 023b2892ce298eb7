"""``hoe train-expert``: a single-objective LoRA expert by RLOO policy gradient with a KL penalty.

For each step, ``B`` training prompts (rendered with the chat template) are each sampled ``K`` times at
temperature τ; every response gets the objective score ``s`` and the KL-penalised reward

    r_i = s_i - β · Σ_t [log π_θ(y_it) - log π_base(y_it)],

where π_base is the same model with the LoRA adapter disabled. The RLOO advantage
``A_i = r_i - mean_{j≠i} r_j`` (over the K samples of the prompt) weights the policy gradient of
``L = -(1/BK) Σ_i A_i Σ_t log π_θ(y_it)``, minimised with AdamW on the LoRA parameters only.

Randomness is derived from ``(seed, step)`` (prompt order per epoch, sampling per step), so resuming from
a checkpoint reproduces an uninterrupted run bit for bit. The loop, checkpoints, resume, logging and output
folder are those every recipe shares (:mod:`hoe.training.loop`); this module is the recipe. The result is a standard PEFT adapter folder
(``lora_alpha = r``, scaling 1) with a card, usable as a "fine-tuned checkpoint" by ``hoe extract``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hoe.devices import resolve_device
from hoe.dtypes import DTYPES
from hoe.errors import ConfigError
from hoe.objectives import Objective, ObjectiveContext, build_objective
from hoe.provenance import command_line
from hoe.training import loop, rl
from hoe.training.loop import derived_seed
from hoe.training.rollout import Rollout, response_logprobs, sample
from hoe.training.run_folder import RunFolder
from hoe.validation import at_least, non_empty, not_both, one_of, positive, validate

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
RESUMABLE = {"steps", "checkpoint_every", "resume", "overwrite", "micro_batch", "out", "device", "dtype"}
"""Config fields that may differ between a run and its resumption."""


@dataclass
class ExpertConfig:
    """Everything ``train_expert`` needs; field names are the CLI flags (``lora_rank`` -> ``--lora-rank``)."""

    out: str
    base: str = "smollm2-135m-instruct"
    objective: str = "relevance"
    prompts: str = "smol"
    split: str = "train"
    steps: int = 200
    seed: int = 0
    lora_rank: int = 8
    targets: list[str] | None = None
    lr: float = 2e-4
    kl_coef: float = 0.05
    samples_per_prompt: int = 4
    batch_prompts: int = 4
    max_new_tokens: int = 48
    temperature: float = 0.7
    max_grad_norm: float = 1.0
    micro_batch: int = 16
    checkpoint_every: int = 25
    resume: bool = False
    overwrite: bool = False
    device: str = "auto"
    dtype: str = "float32"  # of the saved adapter (training is float32)
    base_dtype: str = "float32"  # the frozen base model is loaded in it (bfloat16 halves its memory)

    def __post_init__(self) -> None:
        validate(self, _CHECKS)


_CHECKS = [
    positive("steps", "number of optimizer steps"),
    positive("lora_rank", "LoRA rank, e.g. 8"),
    positive("lr", "learning rate, e.g. 2e-4"),
    positive("batch_prompts", "number of prompts per step"),
    positive("max_new_tokens", "response length budget, e.g. 48"),
    positive("temperature", "sampling temperature, e.g. 0.7"),
    positive("max_grad_norm", "gradient-norm clip, e.g. 1.0"),
    positive("micro_batch", "number of rows per forward pass"),
    positive("checkpoint_every", "number of steps between checkpoints"),
    at_least("kl_coef", 0, "a KL weight"),
    at_least(
        "samples_per_prompt", 2, "a number of samples per prompt (RLOO's baseline needs another sample)"
    ),
    non_empty("out", "the folder for the trained adapter"),
    one_of("dtype", list(DTYPES)),
    one_of("base_dtype", list(DTYPES)),
    not_both("resume", "overwrite"),
]


@dataclass
class Run:
    """The live state of a training run: a :class:`hoe.training.loop.Recipe`."""

    config: ExpertConfig
    folder: RunFolder
    model: Any  # a peft.PeftModel
    tokenizer: Any
    objective: Objective
    prompts: list[str]
    optimizer: torch.optim.Optimizer
    start: int = 0
    history: list[dict] = field(default_factory=list)
    commands: list[str] = field(default_factory=lambda: [command_line()])

    @property
    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def train_step(self, step: int) -> dict:
        return train_step(self, step)  # the module function, looked up at call time

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def postfix(self, metrics: dict) -> dict[str, str]:
        return {
            "score": f"{metrics['score']:.3f}",
            "kl": f"{metrics['kl']:.3f}",
            "len": f"{metrics['length']:.0f}",
        }

    def summary(self) -> str:
        from hoe.training.card import summarise

        last = summarise(self.history)
        return (
            f"last 10 steps: score {last['last10_score']:.3f}, kl {last['last10_kl']:.3f}, "
            f"length {last['last10_length']:.1f}"
        )

    def write_artifact(self) -> None:
        from hoe.training.card import write_expert

        write_expert(self)


# ---------------------------------------------------------------- setup


def setup(config: ExpertConfig) -> Run:
    """Load the base model, wrap it with a fresh (seeded) LoRA, build the objective, resume if asked.

    Everything is validated (output folder, prompts, model, targets, objective) before anything is written;
    the run then works in its partial folder (:mod:`hoe.training.run_folder`), never in ``config.out``.
    """
    from peft import LoraConfig, get_peft_model

    from hoe.backbones import load_causal_lm
    from hoe.data.prompts import load_prompts

    folder = RunFolder.open(
        config.out, config.resume, config.overwrite, inputs={"base": config.base, "prompts": config.prompts}
    )
    device = resolve_device(config.device)
    prompts = [p.text for p in load_prompts(config.prompts, config.split)]
    model, tokenizer = load_causal_lm(config.base, DTYPES[config.base_dtype])
    targets = check_targets(model, config.targets) or default_targets(model)
    model.to(device)
    context = ObjectiveContext(tokenizer=tokenizer, max_new_tokens=config.max_new_tokens, device=str(device))
    objective = build_objective(config.objective, context)
    torch.manual_seed(config.seed)  # the LoRA A init
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_rank,  # scaling 1: B @ A is the delta (see hoe.conventions)
        lora_dropout=0.0,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora, autocast_adapter_dtype=True)  # the LoRA weights train in float32
    model.eval()  # no dropout anywhere: the gradient is taken in eval mode
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    run = Run(config, folder, model, tokenizer, objective, prompts, optimizer)
    if folder.resume_from is not None:
        restore(run, folder.resume_from)
    folder.start()
    return run


def default_targets(model) -> list[str] | None:
    """q/k/v/o projections when the model has them (Llama, Mistral, Qwen...), else PEFT's default."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    return list(DEFAULT_TARGETS) if set(DEFAULT_TARGETS) <= names else None


def check_targets(model, targets: list[str] | None) -> list[str] | None:
    """Every target names linear modules of ``model`` (by last name, e.g. ``q_proj``)."""
    if not targets:
        return None
    linear = sorted(
        {
            n.rsplit(".", 1)[-1]
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and "." in n
        }
    )
    unknown = [t for t in targets if t not in linear]
    if unknown:
        raise ConfigError(
            f"{unknown} name no linear module of the base model.",
            field="targets",
            value=",".join(targets),
            fix=f"Choose among {linear}.",
        )
    return targets


def restore(run: Run, folder: Path) -> None:
    """Load LoRA weights, optimizer state and history from a checkpoint made with a compatible config."""
    loop.restore(run, folder, RESUMABLE)


# ---------------------------------------------------------------- one step, as phases


def step_prompts(prompts: list[str], config: ExpertConfig, step: int) -> list[str]:
    """Prompts of ``step``: a fresh seeded permutation of the prompt set per epoch, read in order."""
    return loop.step_prompts(prompts, config.seed, config.batch_prompts, step)


def rollout(run: Run, step: int) -> Rollout:
    c = run.config
    prompts = step_prompts(run.prompts, c, step)
    seed = derived_seed(c.seed, "sample", step)
    return sample(
        run.model, run.tokenizer, prompts, c.samples_per_prompt, c.max_new_tokens, c.temperature, seed
    )


def score(run: Run, batch: Rollout) -> torch.Tensor:
    """Objective scores, (n,)."""
    from hoe.objectives.base import check_scores

    scores = check_scores(run.objective.name, run.objective.score(batch.prompts, batch.responses), batch.n)
    return scores.to(batch.response_ids.device)


@torch.no_grad()
def base_logprobs(run: Run, batch: Rollout) -> torch.Tensor:
    """``Σ_t log π_base(y_t)`` per response, (n,): the same model with the adapter disabled."""
    with run.model.disable_adapter():
        return torch.cat([_seq_logp(run, part) for part in chunks(batch, run.config)])


def _seq_logp(run: Run, batch: Rollout) -> torch.Tensor:
    return rl.masked_sum(response_logprobs(run.model, batch, run.config.temperature), batch.response_mask)


def chunks(batch: Rollout, config: ExpertConfig) -> list[Rollout]:
    """Micro-batches made of whole prompt groups (so each holds complete RLOO groups)."""
    k = config.samples_per_prompt
    size = max(k, config.micro_batch // k * k)
    return [batch.rows(i, i + size) for i in range(0, batch.n, size)]


def update(run: Run, batch: Rollout, scores: torch.Tensor, logp_base: torch.Tensor) -> dict[str, float]:
    """Per micro-batch: policy log-probs (with grad), KL-penalised rewards, RLOO advantages, backward;
    then one clipped AdamW step. Returns the step's metrics."""
    c, n = run.config, batch.n
    run.optimizer.zero_grad(set_to_none=True)
    rewards, kls, start = [], [], 0
    for part in chunks(batch, c):
        stop = start + part.n
        logp = _seq_logp(run, part)  # (b,) with grad
        reward, kl = rl.kl_penalised_reward(
            scores[start:stop], logp.detach(), logp_base[start:stop], c.kl_coef
        )
        advantages = rl.rloo_advantages(reward, c.samples_per_prompt)
        rl.policy_gradient_loss(logp, advantages, n).backward()
        rewards.append(reward)
        kls.append(kl)
        start = stop
    grad_norm = torch.nn.utils.clip_grad_norm_(list(run.trainable.values()), c.max_grad_norm)
    run.optimizer.step()
    return {
        "reward": torch.cat(rewards).mean().item(),
        "score": scores.mean().item(),
        "kl": torch.cat(kls).mean().item(),
        "length": batch.response_mask.sum(-1).mean().item(),
        "grad_norm": float(grad_norm),
    }


def train_step(run: Run, step: int) -> dict[str, float]:
    batch = rollout(run, step)
    scores = score(run, batch)
    metrics = update(run, batch, scores, base_logprobs(run, batch))
    return {"step": step + 1, **{k: round(v, 6) for k, v in metrics.items()}}


# ---------------------------------------------------------------- the loop


def train_expert(config: ExpertConfig, progress: bool = True) -> Path:
    """Train the expert described by ``config``; return the adapter folder (``config.out``)."""
    return loop.train(setup(config), progress)


__all__ = ["ExpertConfig", "Run", "derived_seed", "setup", "step_prompts", "train_expert", "train_step"]
