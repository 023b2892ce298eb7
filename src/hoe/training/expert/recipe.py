"""``hoe train-expert``: a single-objective LoRA expert by RLOO policy gradient with a KL penalty.

For each step, ``B`` training prompts (rendered with the chat template) are each sampled ``K`` times at
temperature τ; every response gets the objective score ``s`` and the KL-penalised reward

    r_i = s_i - β · Σ_t [log π_θ(y_it) - log π_base(y_it)],

where π_base is the same model with the LoRA adapter disabled. The RLOO advantage
``A_i = r_i - mean_{j≠i} r_j`` (over the K samples of the prompt) weights the policy gradient of
``L = -(1/BK) Σ_i A_i Σ_t log π_θ(y_it)``, minimised with AdamW on the LoRA parameters only.

Randomness is derived from ``(seed, step)`` (prompt order per epoch, sampling per step), so resuming from
a checkpoint reproduces an uninterrupted run bit for bit. The loop, checkpoints, resume, logging and output
folder are those every recipe shares (:mod:`hoe.training.loop`); :class:`ExpertRecipe` is the recipe:
``setup``, then per step the phases ``rollout``, ``score``, ``base_logprobs``, ``update``, then ``save``. The
result is a standard PEFT adapter folder (``lora_alpha = r``, scaling 1) with a card
(:mod:`hoe.training.expert.card`), usable as a "fine-tuned checkpoint" by ``hoe extract``.
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
from hoe.training.expert.card import CURVE_KEYS, training_record, write_expert
from hoe.training.expert.config import DEFAULT_TARGETS, RESUMABLE, ExpertConfig
from hoe.training.loop import derived_seed
from hoe.training.record import summarise
from hoe.training.rollout import Rollout, response_logprobs, sample
from hoe.training.run_folder import RunFolder


@dataclass
class ExpertRecipe:
    """The live state of an expert training run, and its phases (a :class:`hoe.training.loop.Recipe`)."""

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

    # ------------------------------------------------------------ setup / train / save

    @classmethod
    def setup(cls, config: ExpertConfig) -> ExpertRecipe:
        """Load the base model, wrap it with a fresh (seeded) LoRA, build the objective, resume if asked.

        Everything is validated (output folder, prompts, model, targets, objective) before anything is
        written; the run then works in its partial folder (:mod:`hoe.training.run_folder`), never in
        ``config.out``.
        """
        from peft import LoraConfig, get_peft_model

        from hoe.backbones import load_causal_lm
        from hoe.data.prompts import load_prompts

        inputs = {"base": config.base, "prompts": config.prompts}
        folder = RunFolder.open(config.out, config.resume, config.overwrite, inputs=inputs)
        device = resolve_device(config.device)
        prompts = [p.text for p in load_prompts(config.prompts, config.split)]
        model, tokenizer = load_causal_lm(config.base, DTYPES[config.base_dtype])
        targets = check_targets(model, config.targets) or default_targets(model)
        model.to(device)
        context = ObjectiveContext(
            tokenizer=tokenizer, max_new_tokens=config.max_new_tokens, device=str(device)
        )
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
        recipe = cls(config, folder, model, tokenizer, objective, prompts, optimizer)
        if folder.resume_from is not None:
            loop.restore(recipe, folder.resume_from, RESUMABLE)
        folder.start()
        return recipe

    def train(self, progress: bool = True) -> Path:
        """Steps ``start .. config.steps - 1`` on the shared loop; returns the published adapter folder."""
        return loop.train(self, progress)

    def save(self) -> None:
        """Write the adapter, the record and the card into the run's partial folder (published afterwards)."""
        record = training_record(self.config, self.objective.name, self.history, self.commands)
        write_expert(self.folder.work, self.model, self.config, record)

    # ------------------------------------------------------------ one step, as phases

    def train_step(self, step: int) -> dict[str, float]:
        batch = self.rollout(step)
        scores = self.score(batch)
        metrics = self.update(batch, scores, self.base_logprobs(batch))
        return {"step": step + 1, **{k: round(v, 6) for k, v in metrics.items()}}

    def rollout(self, step: int) -> Rollout:
        """``K`` samples of each of the step's prompts, seeded by ``(seed, step)``."""
        c = self.config
        prompts = loop.step_prompts(self.prompts, c.seed, c.batch_prompts, step)
        seed = derived_seed(c.seed, "sample", step)
        return sample(
            self.model, self.tokenizer, prompts, c.samples_per_prompt, c.max_new_tokens, c.temperature, seed
        )

    def score(self, batch: Rollout) -> torch.Tensor:
        """Objective scores, (n,)."""
        from hoe.objectives.base import check_scores

        scores = check_scores(
            self.objective.name, self.objective.score(batch.prompts, batch.responses), batch.n
        )
        return scores.to(batch.response_ids.device)

    @torch.no_grad()
    def base_logprobs(self, batch: Rollout) -> torch.Tensor:
        """``Σ_t log π_base(y_t)`` per response, (n,): the same model with the adapter disabled."""
        with self.model.disable_adapter():
            return torch.cat([self._seq_logp(part) for part in self.chunks(batch)])

    def update(self, batch: Rollout, scores: torch.Tensor, logp_base: torch.Tensor) -> dict[str, float]:
        """Per micro-batch: policy log-probs (with grad), KL-penalised rewards, RLOO advantages, backward;
        then one clipped AdamW step. Returns the step's metrics."""
        c, n = self.config, batch.n
        self.optimizer.zero_grad(set_to_none=True)
        rewards, kls, start = [], [], 0
        for part in self.chunks(batch):
            stop = start + part.n
            logp = self._seq_logp(part)  # (b,) with grad
            reward, kl = rl.kl_penalised_reward(
                scores[start:stop], logp.detach(), logp_base[start:stop], c.kl_coef
            )
            advantages = rl.rloo_advantages(reward, c.samples_per_prompt)
            rl.policy_gradient_loss(logp, advantages, n).backward()
            rewards.append(reward)
            kls.append(kl)
            start = stop
        grad_norm = torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), c.max_grad_norm)
        self.optimizer.step()
        return {
            "reward": torch.cat(rewards).mean().item(),
            "score": scores.mean().item(),
            "kl": torch.cat(kls).mean().item(),
            "length": batch.response_mask.sum(-1).mean().item(),
            "grad_norm": float(grad_norm),
        }

    def chunks(self, batch: Rollout) -> list[Rollout]:
        """Micro-batches made of whole prompt groups (so each holds complete RLOO groups)."""
        k = self.config.samples_per_prompt
        size = max(k, self.config.micro_batch // k * k)
        return [batch.rows(i, i + size) for i in range(0, batch.n, size)]

    def _seq_logp(self, batch: Rollout) -> torch.Tensor:
        return rl.masked_sum(
            response_logprobs(self.model, batch, self.config.temperature), batch.response_mask
        )

    # ------------------------------------------------------------ what the loop reads

    @property
    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

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
        last = summarise(self.history, CURVE_KEYS)
        return (
            f"last 10 steps: score {last['last10_score']:.3f}, kl {last['last10_kl']:.3f}, "
            f"length {last['last10_length']:.1f}"
        )


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


def train_expert(config: ExpertConfig, progress: bool = True) -> Path:
    """Train the expert described by ``config``; return the adapter folder (``config.out``)."""
    return ExpertRecipe.setup(config).train(progress)
