"""Study: MAML on Finn et al.'s sinusoid regression, and the pretrained baseline it is compared with.

    python -m mlcore reproduce --only maml_sinusoid

Tasks are y = A sin(x + φ), A ~ U[0.1, 5], φ ~ U[0, π], x ~ U[−5, 5]. The regressor is the
paper's MLP 1-40-40-1 (ReLU).

What is run: MAML meta-trains the MLP with K = 10 support points, one inner step α = 0.01,
meta-batch 25 and Adam (:func:`train_maml`; the meta-gradient is
:func:`mlcore.optimization.maml.batched_query_loss`, the same code as the Omniglot learner, with
the MSE loss); the baseline ("pretrained", :func:`train_pretrained`) trains the same MLP to
regress *all* tasks at once (it can only learn the average over tasks). Both train through
:func:`mlcore.engine.fit` (learners :class:`SinusoidMAML` and :class:`PooledRegression`), the loop
every learner of the book uses. Both are tested by
fine-tuning on K = 5 (or 10) points of 600 new tasks with plain gradient descent at α = 0.01
and measuring the MSE on 100 evenly spaced points of the true curve, after 0, 1, 5 and 10 steps.

What is recorded: ``maml_sinusoid`` with the mean MSE and 95 % CI per model, K and step count
(``metrics.mse``), the median, worst task and tasks made worse (``metrics.mse_robust``), and the
training loss history; one checkpoint holds both MLPs (:func:`load_models`).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ..budget import current_budget, pick
from ..data.sinusoid import SinusoidSampler, SinusoidTasks
from ..engine import fit
from ..learner import TrainableModule
from ..nets import MLP
from ..optimization.maml import batched_query_loss, check_inner_steps, check_lr, inner_loop
from ..results import (
    RESULTS_DIR,
    atomic_torch_save,
    load_record,
    mean_ci95,
    record_dir,
    run_record,
    save_record,
)
from ..runtime import get_device, seed_everything

EVAL_TASKS_SEED = 600  # the 600 test tasks are drawn with this seed
EVAL_STEPS = (0, 1, 5, 10)
# Full budget: the paper's 70,000 meta-iterations (~4 ms per vmapped meta-step on one CPU thread: ~5 min).
FULL_STEPS = 70000


def make_regressor() -> torch.nn.Module:
    return MLP(1, [40, 40], 1)


# ----------------------------------------------------------------------------- the two learners fit trains
# They live here, not in mlcore.optimization: the algorithm (batched_query_loss) is the family's, and these only
# bind it to this study's batches (SinusoidTasks) and loss (MSE). They have no predict() and are not in the
# learner registry; they exist so that both baselines of the study train through mlcore.engine.fit.
class SinusoidMAML(TrainableModule):
    """MAML's meta-loss on a batch of sinusoid tasks: the mean query MSE after the inner steps on the support."""

    def __init__(self, model: nn.Module, inner_lr: float, inner_steps: int, first_order: bool):
        super().__init__()
        self.model = model
        check_inner_steps(inner_steps)
        check_lr(inner_lr)
        self.inner_lrs = [inner_lr] * inner_steps
        self.first_order = first_order

    def meta_loss(self, t: SinusoidTasks) -> tuple[torch.Tensor, dict]:
        losses, _ = batched_query_loss(self.model, dict(self.model.named_parameters()), t.support_x, t.support_y,
                                       t.query_x, t.query_y, F.mse_loss, self.inner_lrs, self.first_order)
        return losses.mean(), {}


class PooledRegression(TrainableModule):
    """The baseline's loss: one MSE over the support and query points of every task in the batch."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def meta_loss(self, t: SinusoidTasks) -> tuple[torch.Tensor, dict]:
        x = torch.cat([t.support_x, t.query_x], 1)
        y = torch.cat([t.support_y, t.query_y], 1)
        return F.mse_loss(self.model(x), y), {}


def train_maml(steps: int, meta_batch: int = 25, shots: int = 10, inner_lr: float = 0.01, inner_steps: int = 1,
               first_order: bool = False, lr: float = 1e-3, seed: int = 0, device=None, log_every: int = 1000,
               run_dir=None, time_limit_s: float | None = None,
               progress: bool = False) -> tuple[torch.nn.Module, list[dict]]:
    """Meta-train the MLP with MAML; returns (model, loss history).

    The history has one ``{"step", "loss"}`` row every ``log_every`` steps (and at the last step): the
    mean meta-loss of the steps since the previous row. With ``run_dir`` the run checkpoints there and a
    later call resumes it exactly; ``time_limit_s`` ends training early (the last row's step says where).
    """
    device = get_device(device)
    seed_everything(seed)  # the MLP's initialisation; the tasks come from the sampler's own generator
    learner = SinusoidMAML(make_regressor().to(device), inner_lr, inner_steps, first_order)
    sampler = SinusoidSampler(shots=shots, queries=shots, batch_size=meta_batch, seed=seed, device=device)
    # what defines the run, so that a run_dir holding another run's checkpoint is refused, not resumed
    fingerprint = {"study": "maml_sinusoid", "meta_batch": meta_batch, "shots": shots, "inner_lr": float(inner_lr),
                   "inner_steps": inner_steps, "first_order": first_order, "lr": lr, "seed": seed}
    fr = fit(learner, sampler, steps, lr=lr, log_every=log_every, run_dir=run_dir, time_limit_s=time_limit_s,
             progress=progress, fingerprint=fingerprint)
    return learner.model, fr.history


def train_pretrained(steps: int, meta_batch: int = 25, shots: int = 10, lr: float = 1e-3, seed: int = 0,
                     device=None, run_dir=None, time_limit_s: float | None = None,
                     progress: bool = False) -> torch.nn.Module:
    """The baseline: one MLP regressing the pooled points of many tasks (no adaptation in training)."""
    device = get_device(device)
    seed_everything(seed)
    learner = PooledRegression(make_regressor().to(device))
    # seed + 1: the baseline sees other tasks than MAML's run with the same seed
    sampler = SinusoidSampler(shots=shots, queries=shots, batch_size=meta_batch, seed=seed + 1, device=device)
    fingerprint = {"study": "sinusoid_pretrained", "meta_batch": meta_batch, "shots": shots, "lr": lr, "seed": seed}
    fit(learner, sampler, steps, lr=lr, log_every=max(1, steps), run_dir=run_dir, time_limit_s=time_limit_s,
        progress=progress, fingerprint=fingerprint)
    return learner.model


def eval_tasks(shots: int, n_tasks: int = 600, seed: int = EVAL_TASKS_SEED, device=None):
    """The fixed test tasks: K support points each, plus the dense curve (100 points on [−5, 5])."""
    tasks = SinusoidSampler(shots=shots, queries=1, batch_size=n_tasks, seed=seed, device=get_device(device)).sample()
    grid = torch.linspace(-5, 5, 100, device=tasks.support_x.device)
    return tasks, grid, tasks.curve(grid)


def adaptation_curves(model: torch.nn.Module, support_x: torch.Tensor, support_y: torch.Tensor, grid: torch.Tensor,
                      steps: tuple[int, ...] = EVAL_STEPS, inner_lr: float = 0.01) -> dict[int, torch.Tensor]:
    """Predictions on ``grid`` (P,) after each number of steps in ``steps``: {steps: (B, P)}.

    Each task is fine-tuned independently by plain gradient descent on its support points
    (vmapped over tasks); nothing is written back to ``model``.
    """
    check_lr(inner_lr)
    params = {k: v.detach() for k, v in model.named_parameters()}
    out: dict[int, torch.Tensor] = {}

    def predict(sx, sy, n):
        phi = inner_loop(model, params, sx, sy, F.mse_loss, [inner_lr] * n, first_order=True)
        return functional_call(model, phi, (grid[:, None],))[:, 0]

    for n in steps:
        with torch.enable_grad():
            out[n] = vmap(lambda sx, sy, n=n: predict(sx, sy, n))(support_x, support_y).detach()
    return out


def per_task_mse(model: torch.nn.Module, shots: int, n_tasks: int = 600, inner_lr: float = 0.01, device=None,
                 seed: int = EVAL_TASKS_SEED) -> dict[int, torch.Tensor]:
    """Each test task's MSE on the dense curve after 0/1/5/10 steps: {steps: (n_tasks,)}."""
    tasks, grid, truth = eval_tasks(shots, n_tasks, seed, device)
    preds = adaptation_curves(model, tasks.support_x, tasks.support_y, grid, EVAL_STEPS, inner_lr)
    return {n: (p - truth).pow(2).mean(-1).cpu() for n, p in preds.items()}


def score(model: torch.nn.Module, shots: int, n_tasks: int = 600, inner_lr: float = 0.01, device=None,
          seed: int = EVAL_TASKS_SEED) -> dict[str, list[float]]:
    """MSE on the dense curve after 0/1/5/10 steps: {"steps=n": [mean, ci95]} over ``n_tasks`` tasks."""
    return {f"steps={n}": list(mean_ci95(e)) for n, e in per_task_mse(model, shots, n_tasks, inner_lr, device,
                                                                          seed).items()}


def robust_summary(model: torch.nn.Module, shots: int, n_tasks: int = 600, inner_lr: float = 0.01, device=None,
                   seed: int = EVAL_TASKS_SEED) -> dict[str, dict[str, float]]:
    """Per step count: the median curve MSE, the tasks made *worse* than unadapted, and the worst task's MSE.

    Plain gradient descent at the training step size can overshoot on a task whose support points make the
    loss sharper than the ones MAML was meta-trained on (seen with a 20,000-iteration model: one task out of
    600 dominated the 10-step mean), and fitting 5 points can also raise the error elsewhere on the curve.
    The record keeps these beside the mean so that such tasks are visible.
    """
    errs = per_task_mse(model, shots, n_tasks, inner_lr, device, seed)
    return {f"steps={n}": {"median": float(e.median()), "worse": int((e > errs[0]).sum()),
                           "max": float(e.max())} for n, e in errs.items()}


def reproduce(budget: str | None = None, seed: int = 0, out_dir=None, device=None, method: str = "maml_sinusoid",
              steps: int | None = None) -> list[Path]:
    """Train MAML and the baseline, score both for K = 5 and 10, write one record + checkpoint."""
    budget = current_budget(budget)
    steps = steps or pick(budget, smoke=300, full=FULL_STEPS)
    device = get_device(device)
    t0 = time.perf_counter()
    maml, history = train_maml(steps, seed=seed, device=device, log_every=max(1, steps // 20))
    train_wall = time.perf_counter() - t0
    pretrained = train_pretrained(steps, seed=seed, device=device)
    n_tasks = pick(budget, smoke=100, full=600)
    models = (("maml", maml), ("pretrained", pretrained))
    metrics = {f"{name}_k{k}": score(m, k, n_tasks, device=device) for name, m in models for k in (5, 10)}
    robust = {f"{name}_k{k}": robust_summary(m, k, n_tasks, device=device) for name, m in models for k in (5, 10)}
    name = "maml_sinusoid" if budget == "full" else f"maml_sinusoid_{budget}"
    out = record_dir(out_dir, budget)
    ckpt = out / f"{name}.pt"
    atomic_torch_save({"maml": {k: v.cpu() for k, v in maml.state_dict().items()},
                       "pretrained": {k: v.cpu() for k, v in pretrained.state_dict().items()}}, ckpt)
    rec = run_record(
        t0, name=name, method=method, dataset="sinusoid", split="test-tasks", shots=5, episodes=n_tasks,
        seed=seed, config={"steps": steps, "meta_batch": 25, "train_shots": 10, "inner_lr": 0.01,
                           "inner_steps": 1, "outer": "Adam 1e-3", "eval_inner_lr": 0.01,
                           "eval_tasks_seed": EVAL_TASKS_SEED, "mlp": [1, 40, 40, 1]},
        metrics={"mse": metrics, "mse_robust": robust, "history": history}, train_wall_s=train_wall,
        checkpoint=ckpt.name, budget=budget)
    return [save_record(rec, out)]


def load_models(record_path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(maml, pretrained) MLPs of a sinusoid record."""
    rec = load_record(record_path)
    ck = Path(getattr(rec, "_path", RESULTS_DIR / f"{rec.name}.json")).parent / rec.checkpoint
    state = torch.load(ck, map_location="cpu", weights_only=True)
    maml, pretrained = make_regressor(), make_regressor()
    maml.load_state_dict(state["maml"])
    pretrained.load_state_dict(state["pretrained"])
    return maml, pretrained


def reevaluate(record_path, episodes: int | None = None, seed: int = 123, device=None) -> dict:
    """Re-score a sinusoid record on ``episodes`` fresh tasks (drawn with ``seed``)."""
    rec = load_record(record_path)
    maml, pretrained = load_models(record_path)
    n = episodes or rec.episodes or 600
    return {"record": rec.name, "tasks": n, "seed": seed,
            "maml_k5": score(maml.to(get_device(device)), 5, n, device=device, seed=seed),
            "pretrained_k5": score(pretrained.to(get_device(device)), 5, n, device=device, seed=seed),
            "reference": {k: rec.metrics["mse"][k] for k in ("maml_k5", "pretrained_k5")}}

