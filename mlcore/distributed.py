"""Meta-training across processes with ``torch.distributed`` (data parallel over the tasks of a meta-batch).

How it works, and why it gives the single-process gradient:

* every rank builds the same learner (same seed; rank 0's weights are then broadcast so
  the ranks start bit-identical) and the same seeded task sampler, so at every step all
  ranks draw the *same* meta-batch of ``B`` tasks;
* rank ``r`` keeps its slice of those tasks (``torch.tensor_split``: slices differ by at
  most one task) and computes its learner's ``meta_loss`` on them, a mean over its ``b_r``
  tasks;
* the local gradient is scaled by ``b_r / B`` and the gradients are summed with one
  ``all_reduce``: ``Σ_r (b_r/B) ∇ mean_{i∈r} L_i = ∇ (1/B) Σ_i L_i``, the gradient of the
  full meta-batch, on every rank. The optimizers then take identical steps.

The result equals a single-process run on the same tasks (up to float summation order)
whenever a learner's ``meta_loss`` is a mean of *independent per-task* losses. MAML and
its relatives are (each task goes through its own forward, batch norm uses that task's
statistics). Methods that push several tasks through batch norm *together* are not:
with ProtoNet at meta-batch 2, a rank normalises with one task's statistics, the single
process with both tasks'. That is the usual data-parallel batch-norm caveat; the fix is
``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` (statistics all-reduced in the forward),
at the price of a collective per BN layer. Running-stat buffers are averaged across ranks
after every step (exact for the running mean with equal slices, close for the variance).

Launch (CPU, gloo; one process per core)::

    torchrun --standalone --nproc_per_node=2 -m mlcore train maml --ways 5 --shots 1 --budget smoke --distributed

Several GPUs on one machine (NCCL; rank r uses ``cuda:LOCAL_RANK``)::

    torchrun --standalone --nproc_per_node=8 -m mlcore train maml --ways 5 --shots 1 --budget full --distributed

Several machines: ``torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d
--rdzv_endpoint=HOST:29500 -m mlcore train ...`` on each. Only rank 0 evaluates and writes
the record; ``train_distributed`` returns ``None`` on the other ranks.
"""
from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .data.episodes import Episode
from .learner import TrainingHooks


# ----------------------------------------------------------------------------- process group
def setup(backend: str | None = None, device: str | torch.device | None = None) -> tuple[int, int, torch.device]:
    """Join the process group torchrun (or the caller) described in the environment.

    Returns ``(rank, world_size, device)``. The backend is NCCL when this rank gets a GPU,
    gloo otherwise. Needs ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``
    (torchrun sets them).
    """
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing and not dist.is_initialized():
        raise ValueError(f"distributed training needs the environment variables {missing}; launch with "
                         "`torchrun --standalone --nproc_per_node=N -m mlcore train ... --distributed`")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return dist.get_rank(), dist.get_world_size(), device


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- splitting the meta-batch
def task_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """The tasks rank ``rank`` handles: contiguous, sizes differ by at most one."""
    if batch_size < world_size:
        raise ValueError(f"a meta-batch of {batch_size} task(s) cannot be split across {world_size} ranks; "
                         f"use meta_batch >= {world_size} (every rank needs at least one task)")
    bounds = torch.tensor_split(torch.arange(batch_size), world_size)[rank]
    return slice(int(bounds[0]), int(bounds[-1]) + 1)


def split_episode(ep: Episode, rank: int, world_size: int) -> Episode:
    """Rank ``rank``'s share of the tasks of ``ep`` (an :class:`~mlcore.data.episodes.Episode`)."""
    if not isinstance(ep, Episode):
        msg = f"distributed training splits Episode batches of tasks; this learner's sampler gives {type(ep).__name__}"
        raise ValueError(msg)  # noqa: TRY004 - every bad input to the library is a ValueError
    s = task_slice(ep.batch_size, rank, world_size)
    return Episode(ep.support_x[s], ep.support_y[s], ep.query_x[s], ep.query_y[s], ep.ways, ep.shots, ep.queries,
                   None if ep.classes is None else ep.classes[s])


def refuse_own_update(learner: nn.Module, wrapper: str) -> None:
    """A wrapper that splits or reshapes the meta-loss cannot wrap a learner that does its own update."""
    own = getattr(type(learner), "train_step", TrainingHooks.train_step)
    if own is not TrainingHooks.train_step:
        raise ValueError(f"{wrapper} wraps learners trained by meta_loss -> backward -> optimizer step; "
                         f"{type(learner).__name__} does its own update (train_step), which it would bypass")


class DistributedMetaLearner(TrainingHooks, nn.Module):
    """Wrap a learner so :func:`mlcore.engine.fit` trains it data-parallel over tasks.

    ``meta_loss`` computes the local loss on this rank's tasks and returns a tensor whose
    *value* is the all-reduced loss of the whole meta-batch (so every rank logs the same
    number and the NaN guard trips on all ranks together) and whose *gradient* is the
    local gradient scaled by ``b_r / B``. ``after_backward`` sums the gradients across
    ranks (one flattened ``all_reduce``, like a DDP bucket); ``after_step`` averages the
    buffers (batch-norm running statistics); ``agree_to_stop`` makes the time-limit decision
    collective.
    """

    def __init__(self, learner: nn.Module, rank: int, world_size: int):
        super().__init__()
        refuse_own_update(learner, "DistributedMetaLearner")
        self.learner = learner
        self.rank, self.world_size = rank, world_size

    @property
    def device(self) -> torch.device:
        return self.learner.device

    def meta_loss(self, episodes: Episode) -> tuple[torch.Tensor, dict]:
        local = split_episode(episodes, self.rank, self.world_size)
        weight = local.batch_size / episodes.batch_size
        loss, stats = self.learner.meta_loss(local)
        weighted = loss * weight
        # the global loss and stats: one all_reduce of [loss, stat_1, ...] weighted by the task share
        keys = sorted(stats)
        vec = torch.stack([weighted.detach().float().reshape(())]
                          + [torch.as_tensor(stats[k], dtype=torch.float32, device=loss.device).reshape(()) * weight
                             for k in keys])
        dist.all_reduce(vec)
        total = weighted + (vec[0].to(weighted.dtype) - weighted.detach())
        return total, {k: vec[i + 1] for i, k in enumerate(keys)}

    def after_backward(self) -> None:
        params = [p for p in self.learner.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n
        self.learner.after_backward()

    def after_step(self) -> None:
        self.learner.after_step()
        average_buffers(self.learner, self.world_size)

    def agree_to_stop(self, local: bool) -> bool:
        """Stop when any rank wants to (one all_reduce MAX of a flag), so all ranks leave ``fit`` at the same step.

        Each rank's deadline comes from its own clock and start time; a rank that stopped
        alone would leave the others waiting forever in the next step's all_reduce.
        """
        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def broadcast_parameters(module: nn.Module, src: int = 0) -> None:
    """Make every rank start from rank ``src``'s weights and buffers."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src)


def average_buffers(module: nn.Module, world_size: int) -> None:
    """Average floating-point buffers (BN running stats) across ranks; integer counters are kept."""
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b.data)
            b.data /= world_size


class PerTaskMeanLoss(TrainingHooks, nn.Module):
    """A learner whose meta-loss is the mean of each task's loss, every task through its own forward.

    For learners that batch tasks through batch norm (ProtoNet), this makes the loss a
    mean of independent per-task terms, so the data-parallel gradient equals the
    single-process one exactly (at the cost of B small forwards instead of one big one).
    """

    def __init__(self, learner: nn.Module):
        super().__init__()
        refuse_own_update(learner, "PerTaskMeanLoss")
        self.learner = learner

    @property
    def device(self) -> torch.device:
        return self.learner.device

    def meta_loss(self, episodes: Episode) -> tuple[torch.Tensor, dict]:
        outs = [self.learner.meta_loss(episodes.task(i)) for i in range(episodes.batch_size)]
        loss = torch.stack([o[0] for o in outs]).mean()
        keys = outs[0][1].keys()
        return loss, {k: sum(float(o[1][k]) for o in outs) / len(outs) for k in keys}

    def after_backward(self) -> None:
        self.learner.after_backward()

    def after_step(self) -> None:
        self.learner.after_step()


# ----------------------------------------------------------------------------- local runs (tests, chapter 8)
def free_port() -> int:
    """A TCP port nobody listens on right now (for a local process group)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_run(method: str, config: dict, split: str, ways: int, shots: int, queries: int, meta_batch: int,
               steps: int, lr: float, seed: int, per_task: bool, optimizer: str = "sgd", rank: int = 0,
               world_size: int = 1, deadline: float | None = None):
    from .data.episodes import EpisodeSampler
    from .data.omniglot import load_split
    from .engine import fit
    from .registry import learner_class
    from .runtime import seed_everything

    seed_everything(seed)  # a whole (small) run, seeded process-wide on purpose like mlcore.train_and_record
    learner = learner_class(method).from_config(config)
    model: nn.Module = PerTaskMeanLoss(learner) if per_task else learner
    sampler = EpisodeSampler(load_split(split), ways, shots, queries, batch_size=meta_batch, seed=seed)
    if world_size > 1:
        broadcast_parameters(learner)
        model = DistributedMetaLearner(model, rank, world_size)
    params = [p for p in model.parameters() if p.requires_grad]
    # SGD by default: Adam divides by sqrt(v), which turns the float noise on parameters whose true
    # gradient is 0 (a conv bias right before batch norm) into lr-sized steps of random sign
    opt = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr)
    fr = fit(model, sampler, steps, lr=lr, optimizer=opt, progress=False, log_every=max(steps, 1), deadline=deadline)
    return learner, fr


def _worker(rank: int, world_size: int, port: int, out: str, runs: list[dict],
            deadlines: list[float | None] | None = None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    # this rank's own deadline, as `--time-limit` gives each rank a limit from its own start
    deadline = None if deadlines is None or deadlines[rank] is None else float(deadlines[rank])
    torch.set_num_threads(1)
    setup(backend="gloo", device="cpu")
    try:
        results = []
        for r in runs:
            learner, fr = _small_run(**r, rank=rank, world_size=world_size, deadline=deadline)
            results.append({"state": {k: v.detach().clone() for k, v in learner.named_parameters()},
                            "steps": fr.steps, "stopped": fr.stopped})
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        cleanup()


def run_ranks(runs: list[dict], world_size: int = 2, deadlines: list[float | None] | None = None,
              timeout_s: float | None = None) -> list[list[dict]]:
    """Train each small run on ``world_size`` local CPU processes; per rank, per run ``{"state", "steps", "stopped"}``.

    ``deadlines[r]`` (a ``time.time()`` value or None) is rank ``r``'s own training deadline.
    With ``timeout_s`` the ranks are killed and ``TimeoutError`` raised when they have not all
    finished by then (a rank stuck in a collective fails instead of hanging the caller).
    """
    import tempfile

    import torch.multiprocessing as mp

    if deadlines is not None and len(deadlines) != world_size:
        raise ValueError(f"deadlines needs one entry per rank ({world_size}), got {len(deadlines)}")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.start_processes(_worker, args=(world_size, free_port(), tmp, runs, deadlines), nprocs=world_size,
                                 join=False, start_method="spawn")
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while not ctx.join(timeout=1.0):
            if end is not None and time.monotonic() > end:
                for p in ctx.processes:
                    if p.is_alive():
                        p.kill()
                for p in ctx.processes:
                    p.join()
                raise TimeoutError(f"the {world_size} ranks did not finish within {timeout_s} s; one is probably "
                                   "waiting in a collective the others left")
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


def run_data_parallel(runs: list[dict], world_size: int = 2) -> list[dict]:
    """Train each small run of ``runs`` on ``world_size`` local CPU processes (gloo); return rank 0's state dicts.

    A run is the keyword arguments of a small training job: ``method``, ``config`` (learner
    kwargs), ``split``, ``ways``, ``shots``, ``queries``, ``meta_batch``, ``steps``, ``lr``,
    ``seed`` and ``per_task`` (wrap in :class:`PerTaskMeanLoss`). Used by the tests and
    chapter 8 to compare against :func:`run_single_process` on the same tasks. ``optimizer``
    is ``"sgd"`` (default) or ``"adam"``. Only the parameters are returned: BN running
    statistics are updated per forward, so their momentum sequence depends on the split.
    """
    return [r["state"] for r in run_ranks(runs, world_size)[0]]


def run_single_process(runs: list[dict]) -> list[dict]:
    """The same small runs in this process, without any process group (the reference)."""
    return [{k: v.detach().clone() for k, v in _small_run(**r)[0].named_parameters()} for r in runs]


# ----------------------------------------------------------------------------- the CLI entry point
def train_distributed(method: str, ways: int, shots: int, budget: str | None = None, seed: int = 0,
                      out_dir: str | Path | None = None, recipe_overrides: dict | None = None,
                      device: str | torch.device | None = None, progress: bool = True,
                      run_dir: str | Path | None = None, time_limit_s: float | None = None) -> Path | None:
    """``python -m mlcore train ... --distributed`` under torchrun: train, then rank 0 evaluates and records.

    A recipe whose meta-batch is smaller than the world size (ProtoNet trains on one
    episode per step) gets its meta-batch raised to the world size, so every rank has a
    task; the record's recipe says so (``extra.distributed``). ``time_limit_s`` (``--time-limit``) stops
    training after that many seconds of each rank's own training; the ranks agree on the step they stop at.
    """
    from . import budget as budget_mod
    from .engine import EVAL_SEED, evaluate, fit, test_sampler
    from .results import RESULTS_DIR, atomic_torch_save, run_record, save_record
    from .runs import build_recipe, recipe_fingerprint, record_name
    from .runtime import hardware, seed_everything

    rank, world, device = setup(device=device)
    try:
        budget = budget_mod.current_budget(budget)
        cls, recipe = build_recipe(method, ways, shots, budget, recipe_overrides)
        asked = recipe.meta_batch
        recipe.meta_batch = max(recipe.meta_batch, world)
        recipe.extra = {**recipe.extra, "distributed": {"world_size": world, "backend": dist.get_backend(),
                                                       "meta_batch_asked": asked}}
        seed_everything(seed)  # each torchrun process is one run: seeded process-wide on purpose
        learner = cls.from_config(recipe.model).to(device)
        if recipe.extra.get("channels_last") and device.type == "cpu":
            learner = learner.to(memory_format=torch.channels_last)  # as mlcore.runs does (chapter 8)
        broadcast_parameters(learner)
        sampler = learner.make_train_sampler(recipe, device, seed)  # same seed on every rank: same tasks
        wrapped = DistributedMetaLearner(learner, rank, world)
        name = record_name(method, ways, shots, suffix=("" if budget == "full" else f"_{budget}") + f"_ddp{world}")
        out_dir = Path(out_dir) if out_dir is not None else (RESULTS_DIR if budget == "full" else Path("runs"))
        run_dir = Path(run_dir) if run_dir is not None else Path("runs") / name
        t0 = time.perf_counter()
        fr = fit(wrapped, sampler, recipe.steps, lr=recipe.lr, lr_step=recipe.lr_step, lr_gamma=recipe.lr_gamma,
                 grad_clip=recipe.grad_clip, run_dir=run_dir / f"rank{rank}", progress=progress and rank == 0,
                 fingerprint=recipe_fingerprint(recipe, method, seed), time_limit_s=time_limit_s)
        path = None
        if rank == 0:
            n_test = budget_mod.pick(budget, smoke=100, full=1000)
            ts = test_sampler(recipe.test_ways or ways, recipe.test_shots or shots, recipe.test_queries,
                              recipe.test_split, device, within_alphabet=recipe.within_alphabet)
            res = evaluate(learner, ts, n_test, seed=EVAL_SEED)
            out_dir.mkdir(parents=True, exist_ok=True)
            ckpt = out_dir / f"{name}.pt"
            atomic_torch_save({k: v.detach().cpu() for k, v in learner.state_dict().items()}, ckpt)
            rec = run_record(
                t0,
                name=name, method=method, dataset="omniglot", split=recipe.test_split,
                ways=recipe.test_ways or ways, shots=recipe.test_shots or shots, accuracy=res["accuracy"],
                ci95=res["ci95"], episodes=res["episodes"], seed=seed,
                config={"recipe": recipe.to_dict(), "model": recipe.model, "eval_seed": EVAL_SEED},
                metrics={"final_train": fr.history[-1] if fr.history else {}, "history": fr.history[-20:]},
                hardware={**hardware(), "world_size": world, "backend": dist.get_backend()},
                train_wall_s=fr.wall_s, checkpoint=ckpt.name, budget=budget)
            path = save_record(rec, out_dir)
        dist.barrier()
        return path
    finally:
        cleanup()
