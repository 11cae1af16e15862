"""Numerical checks of the four objectives of the source article's §4 (chapter 7 and tests/test_math.py).

Each function computes one side of an identity the chapter derives, on small float64
models, using the *library's* code for the objective itself:

* §4.1 task similarity  L(θ) = Σ_(i,j) (f_θ(T_i, T_j) − y_ij)²      → :func:`similarity_gradient_by_formula`
* §4.2 MAML             L_meta(θ0) = Σ_i L_i(θ0 − α∇L_i(θ0))         → :func:`maml_hessian_term`
* §4.3 memory           L(θ) = Σ_i L_i(f_θ(x, M_i))                  → :func:`protonet_query_gradient`
* §4.4 meta-reward      R_meta(θ) = E[Σ_i Σ_t r_i(s_t, a_t)]          → :func:`bandit_meta_reward`,
  :func:`reinforce_exact`, :func:`reinforce_monte_carlo`

plus :func:`directional_check`, a finite-difference check of any scalar loss along random
directions in parameter space (what ``torch.autograd.gradcheck`` does per coordinate,
affordable for a whole network).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacrev


# ----------------------------------------------------------------------------- generic
def directional_check(loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], directions: int = 3,
                      eps: float = 1e-6, seed: int = 0) -> list[tuple[float, float]]:
    """(autograd, central difference) of ``loss_fn`` along random unit directions of ``params``.

    ``loss_fn()`` must read ``params`` (leaf tensors with ``requires_grad``); float64 advised.
    """
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(directions):
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        norm = torch.sqrt(sum((d ** 2).sum() for d in v))
        v = [d / norm for d in v]
        with torch.no_grad():
            for p, d in zip(params, v):
                p.add_(eps * d)
            lp = float(loss_fn())
            for p, d in zip(params, v):
                p.sub_(2 * eps * d)
            lm = float(loss_fn())
            for p, d in zip(params, v):
                p.add_(eps * d)
        out.append((float(sum((gi * d).sum() for gi, d in zip(grads, v))), (lp - lm) / (2 * eps)))
    return out


# ----------------------------------------------------------------------------- §4.1 task similarity
def similarity_gradient_by_formula(sim: nn.Module, e_i: torch.Tensor, e_j: torch.Tensor, y: torch.Tensor
                                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """∇_θ Σ_p (f_θ(e_i,p, e_j,p) − y_p)², by autograd and by the chain rule Σ_p 2 (f_p − y_p) ∇_θ f_p.

    ``sim`` is :class:`mlcore.metric.task_similarity.TaskSimilarity`; the loss is the library's
    ``similarity_loss``. Returns (autograd, formula) as dicts over the head's parameters.
    """
    from ..metric.task_similarity import similarity_loss

    params = {k: v.detach() for k, v in sim.named_parameters()}

    def f(p):
        return functional_call(sim, p, (e_i, e_j))  # (P,)

    auto = torch.func.grad(lambda p: similarity_loss(f(p), y))(params)
    jac = jacrev(f)(params)  # each (P, *shape)
    resid = 2 * (f(params) - y)  # dL/df_p
    formula = {k: torch.tensordot(resid, jac[k], dims=1) for k in params}
    return auto, formula


# ----------------------------------------------------------------------------- §4.2 MAML
def maml_hessian_term(model: nn.Module, support: tuple[torch.Tensor, torch.Tensor],
                      query: tuple[torch.Tensor, torch.Tensor], alpha: float,
                      loss_fn: Callable = F.mse_loss) -> dict[str, torch.Tensor]:
    """One task, one inner step: the exact meta-gradient and its pieces, as flat vectors.

    With θ' = θ0 − α∇L_tr(θ0):  ∇θ0 L_val(θ') = (I − α∇²L_tr(θ0)) ∇L_val(θ').
    ``second`` comes from the library's second-order inner loop (autograd through it),
    ``first`` from its first-order version (= ∇L_val(θ')), and ``hvp_term`` = −α H g with
    the Hessian H = ∇²L_tr(θ0) built explicitly by ``torch.func.hessian``.
    """
    from ..optimization.maml import adapted_query_loss

    names = [k for k, _ in model.named_parameters()]
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}

    def flat(d):
        return torch.cat([d[k].reshape(-1) for k in names])

    out = {}
    for order in ("second", "first"):
        loss, _ = adapted_query_loss(model, theta, *support, *query, loss_fn, [alpha], first_order=order == "first")
        out[order] = flat(dict(zip(names, torch.autograd.grad(loss, [theta[k] for k in names]))))
    shapes = [theta[k].shape for k in names]
    sizes = [theta[k].numel() for k in names]

    def unflat(v):
        return {k: t.view(s) for k, t, s in zip(names, v.split(sizes), shapes)}

    def train_loss(v):
        return loss_fn(functional_call(model, unflat(v), (support[0],)), support[1])

    theta_flat = flat({k: v.detach() for k, v in theta.items()})
    H = hessian(train_loss)(theta_flat)
    out["hessian"] = H
    out["hvp_term"] = -alpha * H @ out["first"]
    out["explicit"] = out["first"] + out["hvp_term"]
    return out


# ----------------------------------------------------------------------------- §4.3 memory
def protonet_query_gradient(query_z: torch.Tensor, protos: torch.Tensor, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of one query's loss −log softmax_k(−‖q − p_k‖²)[y] w.r.t. q: (autograd, formula).

    Formula: ∂L/∂q = Σ_k (∂L/∂logit_k)(∂logit_k/∂q) = Σ_k (π_k − δ_ky) · (−2)(q − p_k), with π the
    softmax over prototypes (the memory's read weights); see chapter 7 for the
    derivation. Uses the library's ``prototype_logits``.
    """
    from ..memory.protonet import prototype_logits

    q = query_z.detach().clone().requires_grad_(True)
    logits = prototype_logits(q[None], protos)[0]
    loss = F.cross_entropy(logits[None], torch.tensor([label]))
    auto, = torch.autograd.grad(loss, q)
    pi = torch.softmax(logits.detach(), -1)
    delta = F.one_hot(torch.tensor(label), protos.shape[0]).to(q.dtype)
    # dL/dlogit_k = π_k − δ_ky ;  dlogit_k/dq = −2 (q − p_k)
    formula = ((pi - delta)[:, None] * (-2) * (query_z - protos)).sum(0)
    return auto, formula


# ----------------------------------------------------------------------------- §4.4 meta-reward
def _bandit_inputs(policy, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """RL² inputs (n, T, D) for given action/reward sequences (n, T) of a one-state bandit."""
    n, T = actions.shape
    xs = []
    for t in range(T):
        prev_a = actions[:, t - 1] if t > 0 else None
        prev_r = rewards[:, t - 1] if t > 0 else torch.zeros(n)
        xs.append(policy.encode(torch.zeros(n, dtype=torch.long), prev_a, prev_r, torch.ones(n, dtype=torch.bool)
                                if t > 0 else torch.zeros(n, dtype=torch.bool)))
    return torch.stack(xs, 1)


def all_bandit_trajectories(arms: int, pulls: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (action, reward) sequence of a Bernoulli bandit trial: actions, rewards (arms^T · 2^T, T)."""
    seqs = list(itertools.product(range(arms), (0, 1), repeat=pulls))
    t = torch.tensor(seqs).view(len(seqs), pulls, 2)
    return t[..., 0], t[..., 1].to(torch.float64)


def bandit_meta_reward(policy, means: torch.Tensor, pulls: int, params: dict | None = None) -> torch.Tensor:
    """R_meta for one bandit task, exactly: Σ_τ P_θ(τ) Σ_t r_t over every trajectory τ of the trial.

    ``policy`` is an :class:`mlcore.rl.rl2.RL2Policy` (its hidden state carries over the pulls);
    ``means`` (arms,) the task's arm probabilities; ``params`` optionally replaces its weights
    (for gradcheck). Differentiable in the policy's parameters.
    """
    actions, rewards = all_bandit_trajectories(means.shape[0], pulls)
    x = _bandit_inputs(policy, actions, rewards).to(means.dtype)
    h0 = torch.zeros(1, x.shape[0], policy.hidden, dtype=x.dtype)  # initial_state() is float32
    logits = (functional_call(policy, params, (x, h0)) if params is not None else policy(x, h0))[0]
    logp_a = torch.log_softmax(logits, -1).gather(-1, actions[..., None])[..., 0].sum(-1)  # Σ_t log π(a_t|h_t)
    p = means[actions]
    logp_r = torch.where(rewards > 0, p.log(), (1 - p).log()).sum(-1)  # the environment's part of P(τ)
    prob = torch.exp(logp_a + logp_r)
    return (prob * rewards.sum(-1)).sum()


def policy_parameters(policy) -> list[torch.Tensor]:
    """The parameters R_meta depends on: the GRU and the policy head (not the value head)."""
    return [p for n, p in policy.named_parameters() if not n.startswith("v.")]


def reinforce_exact(policy, means: torch.Tensor, pulls: int) -> list[torch.Tensor]:
    """The score-function form of ∇R_meta, summed exactly over trajectories: Σ_τ P(τ) R(τ) ∇ log π_θ(τ).

    Equal to autograd of :func:`bandit_meta_reward` (the environment's probabilities do not
    depend on θ, so ∇ log P(τ) = Σ_t ∇ log π(a_t | h_t)).
    """
    actions, rewards = all_bandit_trajectories(means.shape[0], pulls)
    x = _bandit_inputs(policy, actions, rewards).to(means.dtype)
    logits = policy(x, torch.zeros(1, x.shape[0], policy.hidden, dtype=x.dtype))[0]
    logp_a = torch.log_softmax(logits, -1).gather(-1, actions[..., None])[..., 0].sum(-1)
    p = means[actions]
    with torch.no_grad():
        prob = torch.exp(logp_a + torch.where(rewards > 0, p.log(), (1 - p).log()).sum(-1))
    surrogate = (prob * rewards.sum(-1) * logp_a).sum()
    return list(torch.autograd.grad(surrogate, policy_parameters(policy)))


def reinforce_monte_carlo(policy, means: torch.Tensor, pulls: int, trials: int, seed: int = 0,
                          baseline: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
    """REINFORCE estimate of ∇R_meta from ``trials`` trials played by :func:`mlcore.rl.rl2.rollout`.

    Every trial uses the same task (``means``). The estimate is mean over trials of
    (R − b) Σ_t ∇ log π(a_t | h_t), with b the mean return (a baseline: still unbiased up to
    O(1/trials), much lower variance). Returns (gradient, per-trial returns).
    """
    from ..rl.envs import BernoulliBandits
    from ..rl.rl2 import rollout

    env = BernoulliBandits(means.shape[0], pulls, trials, seed=seed)
    env.means = means.to(torch.float32).expand(trials, -1).clone()
    ro = rollout(policy, env, torch.Generator().manual_seed(seed + 1))
    logits = policy(ro.inputs.to(next(policy.parameters()).dtype))[0]
    logp = torch.log_softmax(logits, -1).gather(-1, ro.actions[..., None])[..., 0].sum(-1)
    R = ro.total.to(logp.dtype)
    adv = R - R.mean() if baseline else R
    grads = torch.autograd.grad((adv * logp).mean(), policy_parameters(policy))
    return list(grads), R
