"""One step of multi-objective PPO for a router expert, as named phases (METHOD.md §2(b).2, "PPO details").

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

Router and value-head gradients are clipped separately (they are disjoint: the heads read detached hidden
states), each to ``max_grad_norm``.
"""

from __future__ import annotations

import time

import torch

from hoe.objectives import score_matrix
from hoe.training.loop import derived_seed, step_prompts
from hoe.training.ppo import adaptive_kl_coef, gae, masked_whiten, mo_ppo_loss, token_rewards
from hoe.training.rollout import Rollout, sample_rows
from hoe.training.trajectory import Trajectory, policy_outputs


def rollout(run, step: int) -> tuple[Rollout, torch.Tensor]:
    """This process's rows of step ``step``: (the sampled rollout, their global row indices (n,))."""
    c = run.config
    lo, hi = run.dist.shard(c.batch_size)
    prompts = step_prompts(run.prompts, c.seed, c.batch_size, step)[lo:hi]
    seeds = [derived_seed(c.seed, "sample", step, row) for row in range(lo, hi)]
    batch = sample_rows(
        run.model, run.tokenizer, prompts, seeds, c.max_new_tokens, c.temperature, preference=run.anchor
    )
    return batch, torch.arange(lo, hi)


def score(run, batch: Rollout) -> torch.Tensor:
    """(n, m) scores, in the bundle's objective order."""
    return score_matrix(run.objectives, batch.prompts, batch.responses).to(batch.response_ids.device)


@torch.no_grad()
def evaluate(run, batch: Rollout, rows: torch.Tensor, scores: torch.Tensor) -> Trajectory:
    """Old and reference log-probabilities and old values, in micro-batches."""
    c = run.config
    old, ref, values = [], [], []
    for i in range(0, batch.n, c.micro_batch):
        part = batch.rows(i, i + c.micro_batch)
        logp, v = policy_outputs(run.model, part, c.temperature, run.value_heads, preference=run.anchor)
        ref_logp, _ = policy_outputs(run.model, part, c.temperature, **run.reference)
        old.append(logp)
        ref.append(ref_logp)
        values.append(v)
    preference = run.anchor.float().expand(batch.n, -1).to(scores.device)
    return Trajectory(batch, rows, preference, torch.cat(old), torch.cat(ref), torch.cat(values), scores)


def advantages(run, traj: Trajectory) -> torch.Tensor:
    """Fill ``traj.advantages`` and ``traj.returns``; return the per-sequence KL (n,)."""
    c, mask = run.config, traj.mask
    kl = (traj.old_logprobs - traj.ref_logprobs) * mask  # (n, T)
    rewards = token_rewards(traj.scores, kl, mask, run.kl_coef)  # (n, T, m)
    adv, traj.returns = gae(rewards, traj.values, mask, c.gamma, c.gae_lambda)
    traj.advantages = masked_whiten(adv, mask, reduce=run.dist.sum)
    return kl.sum(-1)


def _groups(run) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    return run.model.router_parameters(), list(run.value_heads.parameters())


def minibatch_step(run, traj: Trajectory, mine: torch.Tensor) -> torch.Tensor:
    """One Adam step on a global minibatch, of which this process holds the rows ``mine``.

    Returns the local sums (policy loss, value loss, clipped tokens, ½ Σ (log ρ)², router and value-head
    gradient norms), the losses already as this process's share of the minibatch mean.
    """
    c, dist = run.config, run.dist
    tokens = dist.sum(traj.mask[mine].sum())  # real tokens of the whole minibatch
    run.optimizer.zero_grad(set_to_none=True)
    sums = torch.zeros(4, dtype=torch.float64)
    for micro in mine.split(c.micro_batch) if mine.numel() else ():  # a process may hold none of its rows
        part = traj.select(micro)
        logp, values = policy_outputs(
            run.model, part.rollout, c.temperature, run.value_heads, preference=run.anchor
        )
        loss, stats = mo_ppo_loss(
            logp, part.old_logprobs, values, part.values, part.advantages, part.returns, run.w, part.mask,
            c.clip_range, c.value_clip, c.vf_coef, count=tokens,
        )  # fmt: skip
        loss.backward()
        sums += torch.stack(
            [stats[k].double().cpu() for k in ("policy_loss", "value_loss", "clipped", "kl2")]
        )
    routers, heads = _groups(run)
    dist.sum_grads(routers + heads)
    _freeze_other_routers(run)
    norms = [torch.nn.utils.clip_grad_norm_(group, c.max_grad_norm) for group in (routers, heads)]
    run.optimizer.step()
    return torch.cat([sums, torch.stack(norms).double().cpu() / dist.world])  # norms: summed back below


def _freeze_other_routers(run) -> None:
    """Only the new router trains: the other routers' slices of the stacked tensors get no update (their
    gradients are already zero, as no call at the anchor uses them; this makes it explicit)."""
    keep = run.router
    for layer in run.model.layers.values():
        for p in (layer.router_weight, layer.router_bias):
            if p.grad is not None:
                p.grad[:keep].zero_()
                p.grad[keep + 1 :].zero_()


def update(run, traj: Trajectory, step: int) -> dict[str, float]:
    """The PPO epochs: every epoch a fresh seeded split of the global batch into ``minibatches``."""
    c, dist = run.config, run.dist
    lo, hi = dist.shard(c.batch_size)
    totals, count = torch.zeros(6, dtype=torch.float64), 0
    for epoch in range(c.ppo_epochs):
        g = torch.Generator().manual_seed(derived_seed(c.seed, "minibatches", step, epoch))
        for chunk in torch.tensor_split(torch.randperm(c.batch_size, generator=g), c.minibatches):
            mine = chunk[(chunk >= lo) & (chunk < hi)] - lo
            totals += minibatch_step(run, traj, mine.to(traj.mask.device))
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


def control(run, traj: Trajectory, seq_kl: torch.Tensor) -> dict[str, float]:
    """After the update: β and w from the global batch means (the authors' order: KL first, then OMD)."""
    c, dist = run.config, run.dist
    n = c.batch_size
    mean_scores = dist.sum(traj.scores.double().sum(0).cpu()) / n  # (m,)
    mean_kl = float(dist.sum(seq_kl.double().sum().cpu())) / n
    utility = float(run.scalarisation.utility(mean_scores[None]))  # of the batch means: what OMD maximises
    length = float(dist.sum(traj.mask.sum().double().cpu())) / n
    metrics = {"utility": utility, "kl": mean_kl, "kl_coef": run.kl_coef, "length": length}
    metrics.update({f"score_{name}": float(v) for name, v in zip(run.names, mean_scores)})
    metrics.update({f"w_{name}": float(v) for name, v in zip(run.names, run.w)})  # the weights this step used
    if c.adaptive_kl:
        run.kl_coef = adaptive_kl_coef(run.kl_coef, mean_kl, c.kl_target, n, c.kl_horizon)
    run.w = run.scalarisation.update_weights(run.w, mean_scores)
    return metrics


def train_step(run, step: int) -> dict:
    start = time.perf_counter()
    batch, rows = rollout(run, step)
    scores = score(run, batch)
    traj = evaluate(run, batch, rows, scores)
    seq_kl = advantages(run, traj)
    stats = update(run, traj, step)
    metrics = control(run, traj, seq_kl)
    metrics["seconds"] = time.perf_counter() - start  # wall time of this step (rank 0's), for planning runs
    return {"step": step + 1, **{k: round(v, 6) for k, v in {**metrics, **stats}.items()}}
