"""``hoe train-router``: a router expert bound to an anchor λ, trained by multi-objective PPO (METHOD.md §2(b)).

The input bundle gets one new router (:mod:`hoe.training.router.setup`) and its policy is the bundle at λ,
where preference routing gives the new router all the weight. Only that router and one value head per
objective train; the base model, every LoRA expert and every other router stay frozen. Before step 1 the
target point z* is measured from data (:mod:`hoe.training.calibration`). :class:`RouterRecipe` is the recipe:
``setup``, then each step the phases (METHOD.md §2(b).2, "PPO details")

    rollout     this process's rows of the step's global batch, sampled at the anchor λ, each row seeded by
                (seed, step, global row), so a row's response is the same on any process
    score       s (n, m): every objective's score of every response
    evaluate    log π_old, V_old (policy, no grad) and log π_ref (the KL reference), per token
    advantages  r_{t,i} = -β (log π_old - log π_ref)_t + [t last] s_i;  A_i, G_i = GAE_{γ,λ}(r_i, V_i);
                A_i whitened per objective over the *global* batch
    update      ``ppo_epochs`` × ``minibatches`` Adam steps on L_clip(Σ_i w_i A_i) + c_v L_V, every minibatch a
                seeded global set of rows; each process backpropagates its rows with the loss divided by the
                minibatch's global token count, then the gradients are summed over processes: the step a
                single process would take on the whole batch
    control     β by the adaptive KL controller on the global mean KL; w by the scalarisation (OMD for
                Tchebycheff) on the global mean scores, after the step as in the authors' trainer

and ``save`` (:mod:`hoe.training.router.card`). Router and value-head gradients are clipped separately (they
are disjoint: the heads read detached hidden states), each to ``max_grad_norm``. The same command runs on one
process or many (``torchrun``, ``accelerate launch``; :mod:`hoe.distributed`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hoe.distributed import Dist
from hoe.errors import bad_value
from hoe.objectives import Objective, score_matrix
from hoe.provenance import command_line
from hoe.scalarisation import Scalarisation
from hoe.training import loop
from hoe.training.calibration import calibrate
from hoe.training.loop import derived_seed, step_prompts
from hoe.training.ppo import adaptive_kl_coef, gae, masked_whiten, mo_ppo_loss, token_rewards
from hoe.training.rollout import Rollout, sample_rows
from hoe.training.router.card import write_router_bundle
from hoe.training.router.checks import check_against_bundle, hv_reference_point, parse_target, resolve_anchor
from hoe.training.router.config import (
    RESUMABLE,
    RouterConfig,
    make_scalarisation,
    needs,
    needs_target,
    router_init,
)
from hoe.training.router.setup import check_omd_scale, load_policy, lora_hoe_reference
from hoe.training.run_folder import RunFolder
from hoe.training.trajectory import Trajectory, ValueHeads, policy_outputs


@dataclass
class Measured:
    """What the scalarisation may take besides λ and the OMD rates, measured (or given) before step 1, and the
    calibration record the card reports. Saved in every checkpoint."""

    z_star: torch.Tensor | None = None  # (m,)
    ref_point: torch.Tensor | None = (
        None  # (m,) the hypervolume reference point, when the scalarisation uses it
    )
    baseline: torch.Tensor | None = None  # (m,) HoE-LoRA's mean rewards at the anchor, when it uses them
    calibration: dict = field(default_factory=dict)

    def options(self) -> dict[str, torch.Tensor | None]:
        """By the scalarisation's option name."""
        return {"z_star": self.z_star, "ref_point": self.ref_point, "baseline": self.baseline}


@dataclass
class RouterRecipe:
    """The live state of a router training run, and its phases (a :class:`hoe.training.loop.Recipe`)."""

    config: RouterConfig
    folder: RunFolder
    dist: Dist
    model: Any  # an HoEModel
    tokenizer: Any
    objectives: list[Objective]  # in the bundle's objective order
    prompts: list[str]
    router: int  # index of the new router
    anchor: torch.Tensor  # (m,) float64, λ
    value_heads: ValueHeads
    optimizer: torch.optim.Optimizer
    reference: dict  # how the KL reference routes: {"expert_weights": (E,)}
    measured: Measured = field(default_factory=Measured)
    w: torch.Tensor | None = None  # (m,) the scalarisation's weights for the next step
    kl_coef: float = 0.0
    scalarisation: Scalarisation | None = None
    placement: dict | None = None  # the pick of hoe place-routers this router was trained at (--anchor auto)
    start: int = 0
    history: list[dict] = field(default_factory=list)
    commands: list[str] = field(default_factory=lambda: [command_line()])

    # ------------------------------------------------------------ setup / train / save

    @classmethod
    def setup(cls, config: RouterConfig) -> RouterRecipe:
        """A run ready for its first (or next) step. Everything that can be checked before the model loads is
        (the options, the bundle's manifest, the output folder, the prompts); then the bundle loads on every
        process, the new router is added, and either the run is restored from its last checkpoint or z* and
        the value heads are calibrated. Only rank 0 claims the partial folder, after every rank checked it."""
        from hoe.bundle.folder import bundle_base
        from hoe.data.prompts import load_prompts

        config, placed = resolve_anchor(config)
        manifest, lam, specs = check_against_bundle(config)
        target = parse_target(config.target_point, manifest["objectives"])
        base = bundle_base(manifest["base"], Path(config.model))  # loaded too: never an output
        inputs = {
            "model": config.model,
            "base": base,
            "prompts": config.prompts,
            "placement": config.placement,
        }
        folder = RunFolder.open(config.out, config.resume, config.overwrite, inputs=inputs)
        prompts = [p.text for p in load_prompts(config.prompts, config.split)]
        dist = Dist.from_env(config.device)
        try:
            if config.batch_size < dist.world:
                fix = f"Pass at least one prompt per process ({dist.world} processes)."
                raise bad_value("batch_size", config.batch_size, fix)
            p = load_policy(config, dist, lam, specs)
            recipe = cls(
                config, folder, dist, p.model, p.tokenizer, p.objectives, prompts, p.router, lam, p.value_heads,
                p.optimizer, p.reference, kl_coef=config.init_kl_coef, placement=placed,
            )  # fmt: skip
            if folder.resume_from is not None:
                loop.restore(recipe, folder.resume_from, RESUMABLE)
            else:
                recipe.measured.ref_point = hv_reference_point(config, manifest["objectives"], specs)
                recipe._fresh_start(target)
            recipe.scalarisation = make_scalarisation(config, lam, recipe.measured.options())
            dist.barrier()  # every rank has checked the partial folder before rank 0 claims it
            if dist.is_main:
                folder.start()
            dist.barrier()
        except BaseException:
            dist.close()
            raise
        return recipe

    def _fresh_start(self, target: torch.Tensor | None) -> None:
        """z* (given, or measured), the LoRA-only baseline (when the scalarisation takes it), the value heads'
        bias, the scalarisation's first weights."""
        c, m = self.config, self.measured
        baseline = (
            {"expert_weights": lora_hoe_reference(self.model, self.anchor)} if needs(c, "baseline") else None
        )
        cal = calibrate(self, target, needs_target(c), baseline)
        m.z_star, m.baseline, m.calibration = cal.z_star, cal.baseline, cal.record
        if m.ref_point is not None:
            m.calibration["reference_point"] = {n: float(v) for n, v in zip(self.names, m.ref_point)}
        m.calibration["init"] = router_init(c)
        self.value_heads.init_bias(cal.value_init)
        self.w = make_scalarisation(c, self.anchor, m.options()).initial_weights()
        self.kl_coef = c.init_kl_coef
        if c.scalarisation == "tchebycheff" and m.z_star is not None:
            m.calibration["omd_fixed_point"] = check_omd_scale(
                self.anchor, m.z_star, cal.value_init, c.omd_step_size, self.names, self.dist.is_main
            )

    def train(self, progress: bool = True) -> Path:
        """Steps ``start .. config.steps - 1`` on the shared loop, on every process; returns the new bundle."""
        try:
            return loop.train(self, progress, self.dist)
        finally:
            self.dist.close()

    def save(self) -> None:
        """Write the bundle, the record and the card into the run's partial folder (published afterwards)."""
        write_router_bundle(self.folder.work, self)

    # ------------------------------------------------------------ one step, as phases

    def train_step(self, step: int) -> dict:
        start = time.perf_counter()
        batch, rows = self.rollout(step)
        scores = self.score(batch)
        traj = self.evaluate(batch, rows, scores)
        seq_kl = self.advantages(traj)
        stats = self.update(traj, step)
        metrics = self.control(traj, seq_kl)
        metrics["seconds"] = (
            time.perf_counter() - start
        )  # wall time of this step (rank 0's), for planning runs
        return {"step": step + 1, **{k: round(v, 6) for k, v in {**metrics, **stats}.items()}}

    def rollout(self, step: int) -> tuple[Rollout, torch.Tensor]:
        """This process's rows of step ``step``: (the sampled rollout, their global row indices (n,))."""
        c = self.config
        lo, hi = self.dist.shard(c.batch_size)
        prompts = step_prompts(self.prompts, c.seed, c.batch_size, step)[lo:hi]
        seeds = [derived_seed(c.seed, "sample", step, row) for row in range(lo, hi)]
        batch = sample_rows(
            self.model,
            self.tokenizer,
            prompts,
            seeds,
            c.max_new_tokens,
            c.temperature,
            preference=self.anchor,
        )
        return batch, torch.arange(lo, hi)

    def score(self, batch: Rollout) -> torch.Tensor:
        """(n, m) scores, in the bundle's objective order."""
        return score_matrix(self.objectives, batch.prompts, batch.responses).to(batch.response_ids.device)

    @torch.no_grad()
    def evaluate(self, batch: Rollout, rows: torch.Tensor, scores: torch.Tensor) -> Trajectory:
        """Old and reference log-probabilities and old values, in micro-batches."""
        c = self.config
        old, ref, values = [], [], []
        for i in range(0, batch.n, c.micro_batch):
            part = batch.rows(i, i + c.micro_batch)
            logp, v = policy_outputs(
                self.model, part, c.temperature, self.value_heads, preference=self.anchor
            )
            ref_logp, _ = policy_outputs(self.model, part, c.temperature, **self.reference)
            old.append(logp)
            ref.append(ref_logp)
            values.append(v)
        preference = self.anchor.float().expand(batch.n, -1).to(scores.device)
        return Trajectory(batch, rows, preference, torch.cat(old), torch.cat(ref), torch.cat(values), scores)

    def advantages(self, traj: Trajectory) -> torch.Tensor:
        """Fill ``traj.advantages`` and ``traj.returns``; return the per-sequence KL (n,)."""
        c, mask = self.config, traj.mask
        kl = (traj.old_logprobs - traj.ref_logprobs) * mask  # (n, T)
        rewards = token_rewards(traj.scores, kl, mask, self.kl_coef)  # (n, T, m)
        adv, traj.returns = gae(rewards, traj.values, mask, c.gamma, c.gae_lambda)
        traj.advantages = masked_whiten(adv, mask, reduce=self.dist.sum)
        return kl.sum(-1)

    def update(self, traj: Trajectory, step: int) -> dict[str, float]:
        """The PPO epochs: every epoch a fresh seeded split of the global batch into ``minibatches``."""
        c, dist = self.config, self.dist
        lo, hi = dist.shard(c.batch_size)
        totals, count = torch.zeros(6, dtype=torch.float64), 0
        for epoch in range(c.ppo_epochs):
            g = torch.Generator().manual_seed(derived_seed(c.seed, "minibatches", step, epoch))
            for chunk in torch.tensor_split(torch.randperm(c.batch_size, generator=g), c.minibatches):
                mine = chunk[(chunk >= lo) & (chunk < hi)] - lo
                totals += self.minibatch_step(traj, mine.to(traj.mask.device))
                count += 1
        totals = dist.sum(totals)
        tokens = float(dist.sum(traj.mask.sum()))
        return {
            "policy_loss": float(totals[0]) / count,
            "value_loss": float(totals[1]) / count,
            "clip_frac": float(totals[2]) / (tokens * c.ppo_epochs),
            "approx_kl": float(totals[3]) / (tokens * c.ppo_epochs),
            "grad_norm": float(totals[4]) / count,
            "value_grad_norm": float(totals[5]) / count,
        }

    def minibatch_step(self, traj: Trajectory, mine: torch.Tensor) -> torch.Tensor:
        """One Adam step on a global minibatch, of which this process holds the rows ``mine``.

        Returns the local sums (policy loss, value loss, clipped tokens, ½ Σ (log ρ)², router and value-head
        gradient norms), the losses already as this process's share of the minibatch mean.
        """
        c, dist = self.config, self.dist
        tokens = dist.sum(traj.mask[mine].sum())  # real tokens of the whole minibatch
        self.optimizer.zero_grad(set_to_none=True)
        sums = torch.zeros(4, dtype=torch.float64)
        for micro in mine.split(c.micro_batch) if mine.numel() else ():  # a process may hold none of its rows
            part = traj.select(micro)
            logp, values = policy_outputs(
                self.model, part.rollout, c.temperature, self.value_heads, preference=self.anchor
            )
            loss, stats = mo_ppo_loss(
                logp, part.old_logprobs, values, part.values, part.advantages, part.returns, self.w, part.mask,
                c.clip_range, c.value_clip, c.vf_coef, count=tokens,
            )  # fmt: skip
            loss.backward()
            sums += torch.stack(
                [stats[k].double().cpu() for k in ("policy_loss", "value_loss", "clipped", "kl2")]
            )
        routers, heads = self.model.router_parameters(), list(self.value_heads.parameters())
        dist.sum_grads(routers + heads)
        self._freeze_other_routers()
        norms = [torch.nn.utils.clip_grad_norm_(group, c.max_grad_norm) for group in (routers, heads)]
        self.optimizer.step()
        return torch.cat([sums, torch.stack(norms).double().cpu() / dist.world])  # norms: summed back below

    def _freeze_other_routers(self) -> None:
        """Only the new router trains: the other routers' slices of the stacked tensors get no update (their
        gradients are already zero, as no call at the anchor uses them; this makes it explicit)."""
        keep = self.router
        for layer in self.model.layers.values():
            for p in (layer.router_weight, layer.router_bias):
                if p.grad is not None:
                    p.grad[:keep].zero_()
                    p.grad[keep + 1 :].zero_()

    def control(self, traj: Trajectory, seq_kl: torch.Tensor) -> dict[str, float]:
        """After the update: β and w from the global batch means (the authors' order: KL first, then OMD)."""
        c, dist = self.config, self.dist
        n = c.batch_size
        mean_scores = dist.sum(traj.scores.double().sum(0).cpu()) / n  # (m,)
        mean_kl = float(dist.sum(seq_kl.double().sum().cpu())) / n
        utility = float(
            self.scalarisation.utility(mean_scores[None])
        )  # of the batch means: what OMD maximises
        length = float(dist.sum(traj.mask.sum().double().cpu())) / n
        metrics = {"utility": utility, "kl": mean_kl, "kl_coef": self.kl_coef, "length": length}
        metrics.update({f"score_{name}": float(v) for name, v in zip(self.names, mean_scores)})
        metrics.update(
            {f"w_{name}": float(v) for name, v in zip(self.names, self.w)}
        )  # the weights this step used
        if c.adaptive_kl:
            self.kl_coef = adaptive_kl_coef(self.kl_coef, mean_kl, c.kl_target, n, c.kl_horizon)
        self.w = self.scalarisation.update_weights(self.w, mean_scores)
        return metrics

    # ------------------------------------------------------------ what the loop and the card read

    @property
    def names(self) -> list[str]:
        return list(self.model.objectives)

    @property
    def router_name(self) -> str:
        return self.model.routers[self.router].name

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        """The new router's slice of every layer's stacked router tensors, and the value heads."""
        out: dict[str, torch.Tensor] = {}
        for module, layer in self.model.layers.items():
            out[f"router.{module}.weight"] = layer.router_weight[self.router]
            out[f"router.{module}.bias"] = layer.router_bias[self.router]
        out.update({f"value_heads.{n}": p for n, p in self.value_heads.named_parameters()})
        return out

    def state(self) -> dict:
        return {
            "router": self.router_name,
            "w": self.w.tolist(),
            "kl_coef": self.kl_coef,
            **{k: None if v is None else v.tolist() for k, v in self.measured.options().items()},
            "calibration": self.measured.calibration,
        }

    def load_state(self, state: dict) -> None:
        self.w = torch.tensor(state["w"], dtype=torch.float64)
        self.kl_coef = float(state["kl_coef"])
        for key in self.measured.options():
            value = state.get(key)
            setattr(self.measured, key, None if value is None else torch.tensor(value, dtype=torch.float64))
        self.measured.calibration = dict(state.get("calibration", {}))

    def postfix(self, metrics: dict) -> dict[str, str]:
        return {
            "u": f"{metrics['utility']:.3f}",
            "kl": f"{metrics['kl']:.2f}",
            "len": f"{metrics['length']:.0f}",
        }

    def summary(self) -> str:
        last = self.history[-10:]

        def mean(key: str) -> float:
            return sum(h[key] for h in last) / len(last)

        scores = ", ".join(f"{n} {mean('score_' + n):.3f}" for n in self.names)
        return (
            f"last 10 steps: utility {mean('utility'):.3f}, kl {mean('kl'):.3f}, scores {scores}, "
            f"{mean('seconds'):.1f} s/step"
        )


def train_router(config: RouterConfig, progress: bool = True) -> Path:
    """Train the router expert described by ``config``; return the new bundle (``config.out``)."""
    return RouterRecipe.setup(config).train(progress)
