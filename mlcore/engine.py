"""Training and evaluation loops shared by every method.

``fit`` runs meta-training with a tqdm bar, periodic validation, checkpoints that resume
*exactly* (model, optimizer, scheduler, sampler generator and global RNG states are all
saved), and a NaN/inf guard that stops with a clear error and leaves the last good
checkpoint in place. ``evaluate`` scores a learner on a fixed, seeded set of episodes and
returns the mean accuracy with its 95 % confidence interval.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .learner import MetaLearner, Sampler, TrainingHooks
from .results import atomic_torch_save, mean_ci95

EVAL_SEED = 2017  # every method in the book is scored on the episodes this seed draws
STOP_FILE = "STOP"  # created in a run directory, it ends fit after the current step (see fit)
CHECKPOINT_NAME = "last.pt"


class NonFiniteLossError(FloatingPointError):
    """Raised by :func:`fit` when the loss or a gradient stops being finite."""


@dataclass
class FitResult:
    steps: int
    wall_s: float
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0
    stopped: str | None = None  # why training ended before ``steps`` (a deadline), else None


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fingerprint_json(fingerprint: Any) -> str | None:
    """The fingerprint as canonical JSON: the checkpoint stays loadable with ``weights_only=True``."""
    if fingerprint is None:
        return None
    try:
        return json.dumps(fingerprint, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"fit's fingerprint must be JSON-serialisable (a dict of plain values), got {e}") from None


def _flat(d: Any, prefix: str = "") -> dict:
    """Nested dicts as one level of dotted keys, so a difference is named by its path."""
    if isinstance(d, dict) and d:
        out: dict = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "(fingerprint)": d}


# fingerprint keys that say nothing about training (prose); older checkpoints still carry them
_NOT_TRAINING = ("recipe.deviations",)
# recipe.extra settings that change how a step is computed, not what it computes (the memory layout of the
# convolutions): a run may resume with them switched on or off
SPEED_ONLY_EXTRA = ("channels_last",)


def _training_fields(fingerprint: Any) -> dict:
    """The fingerprint, flattened, without the keys that do not define the training run."""
    recipe = fingerprint.get("recipe") if isinstance(fingerprint, dict) else None
    if isinstance(recipe, dict) and isinstance(recipe.get("extra"), dict):
        extra = {k: v for k, v in recipe["extra"].items() if k not in SPEED_ONLY_EXTRA}
        rest = {k: v for k, v in recipe.items() if k != "extra"}
        fingerprint = {**fingerprint, "recipe": {**rest, "extra": extra} if extra else rest}  # {} as absent
    return {k: v for k, v in _flat(fingerprint).items() if not k.startswith(_NOT_TRAINING)}


def _check_fingerprint(run_dir: Path, stored: str | None, new: str | None) -> None:
    """Refuse to resume a checkpoint written by a different run (another recipe, model or seed)."""
    if new is None or stored == new:
        return
    if stored is None:
        warnings.warn(f"{run_dir / CHECKPOINT_NAME} has no fingerprint (written before fit stored one); resuming "
                      "without checking that it belongs to this run", stacklevel=3)
        return
    old, cur = _training_fields(json.loads(stored)), _training_fields(json.loads(new))
    keys = [k for k in sorted(old.keys() | cur.keys()) if old.get(k, "<absent>") != cur.get(k, "<absent>")]
    if not keys:
        return  # only the recipe's prose or a speed setting differs
    shown = ", ".join(f"{k}: {old.get(k, '<absent>')!r} -> {cur.get(k, '<absent>')!r}" for k in keys[:4])
    more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
    raise ValueError(f"the checkpoint in {run_dir} belongs to a different run ({shown}{more}); delete {run_dir} to "
                     "start afresh or pass a different run_dir")


def run_fingerprint(recipe: dict, **extra: Any) -> dict:
    """A :func:`fit` fingerprint from a recipe dict (plus e.g. ``method``, ``seed``).

    The planned length ``steps`` is left out so a run can be extended (``--steps 40000`` after
    20,000: the longer run continues the same trajectory), unless the schedule is planned over
    it (a linear anneal to ``lr_final``): then another length is another run. ``deviations`` (the
    recipe's prose on where it departs from its paper) trains nothing and is left out too: rewording
    it must not orphan a run.
    """
    planned = recipe.get("lr_final") is not None
    return {"recipe": {k: v for k, v in recipe.items() if (k != "steps" or planned) and k != "deviations"},
            **extra}


def default_optimizer(learner: torch.nn.Module, lr: float, lr_step: int | None, lr_gamma: float):
    params = [p for p in learner.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma) if lr_step else None
    return opt, sched


# ----------------------------------------------------------------------------- fit, piece by piece
PRECISIONS = ("float32", "bfloat16")


def _check_fit_arguments(learner, sampler, steps: int, lr: float, time_limit_s: float | None,
                         precision: str = "float32") -> None:
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if time_limit_s is not None and (isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float))
                                     or not math.isfinite(time_limit_s) or time_limit_s < 0):
        raise ValueError(f"time_limit_s must be None or a finite number of seconds >= 0, got {time_limit_s!r}")
    # every bad input to the library is a ValueError, a wrong type included
    if not isinstance(learner, MetaLearner):
        raise ValueError(  # noqa: TRY004
            f"fit trains a learner with meta_loss and the training hooks; {type(learner).__name__} lacks some "
            "of them: subclass mlcore.learner.FewShotLearner (or TrainingHooks)")
    if not isinstance(sampler, Sampler):
        raise ValueError(  # noqa: TRY004
            f"fit draws batches from a sampler with sample(), state_dict() and load_state_dict() "
            f"(mlcore.learner.Sampler); {type(sampler).__name__} lacks some of them")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "float32" and type(learner).train_step is not TrainingHooks.train_step:
        raise ValueError(f"precision={precision!r} applies to fit's standard meta-loss step; "
                         f"{type(learner).__name__} does its own update (train_step): train it in float32")


def _stop_time(deadline: float | None, time_limit_s: float | None) -> float | None:
    """The ``time.time()`` after which training stops: the earlier of ``deadline`` and now + ``time_limit_s``."""
    own = None if time_limit_s is None else time.time() + time_limit_s
    return min((t for t in (deadline, own) if t is not None), default=None)


class _Checkpoint:
    """The run directory's ``last.pt``: everything a run needs to continue exactly where it stopped."""

    def __init__(self, run_dir: str | Path | None, learner, sampler, optimizer, scheduler, fingerprint: str | None):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.path = self.run_dir / CHECKPOINT_NAME if self.run_dir is not None else None
        self.learner, self.sampler, self.optimizer, self.scheduler = learner, sampler, optimizer, scheduler
        self.fingerprint = fingerprint
        self.step: int | None = None  # the step the file on disk holds, once this run has read or written it

    def exists(self) -> bool:
        return self.path is not None and self.path.exists()

    def resume(self) -> tuple[int, list[dict], float]:
        """Load the checkpoint into the learner, optimizer, scheduler, sampler and RNG; (step, history, wall_s)."""
        # weights_only: a checkpoint is tensors, numbers, strings and containers, so loading one runs no pickled code.
        # Onto the CPU: RNG and generator states must be CPU tensors, and load_state_dict copies the weights and
        # the optimizer's moments onto the learner's device itself.
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if "model" not in state:
            raise ValueError(f"{self.path} is not a checkpoint fit wrote (it has {sorted(state)[:6]}); delete "
                             f"{self.run_dir} to start afresh or pass a different run_dir")
        _check_fingerprint(self.run_dir, state.get("fingerprint"), self.fingerprint)
        self.learner.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"])
        self.step = state["step"]
        return state["step"], state["history"], state.get("wall_s", 0.0)

    def save(self, step: int, history: list[dict], wall: float) -> None:
        if self.path is None:
            return
        atomic_torch_save({
            "model": self.learner.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "sampler": self.sampler.state_dict(), "rng": _rng_state(), "step": step, "history": history,
            "wall_s": wall, "fingerprint": self.fingerprint,
        }, self.path)
        self.step = step

    def describe(self) -> str:
        """Where the last good checkpoint is, for an error message."""
        if not self.exists():
            return "was not written (no run_dir)"
        return f"is {self.path}" + (f" (step {self.step})" if self.step is not None else "")


def _meta_loss_step(learner, batch, optimizer, grad_clip: float | None,
                    precision: str = "float32") -> tuple[torch.Tensor, dict]:
    """The standard update: meta-loss, backward, (clip), optimizer step; raises before stepping on a NaN/inf.

    ``precision="bfloat16"`` runs the meta-loss under ``torch.autocast``: convolutions and matrix products in
    bfloat16, the weights, their gradients and the optimizer's state in float32."""
    device_type = next(learner.parameters()).device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        loss, stats = learner.meta_loss(batch)
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    learner.after_backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(learner.parameters(), grad_clip)
    bad = [n for n, p in learner.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        raise NonFiniteLossError(f"non-finite gradient in {bad[:3]}")
    optimizer.step()
    return loss, stats


def _train_step(learner, sampler, optimizer, scheduler, grad_clip: float | None, step: int,
                ckpt: _Checkpoint, precision: str = "float32") -> tuple[torch.Tensor, dict]:
    """One outer step: draw a batch, update the learner on it (its own ``train_step``, else the standard
    meta-loss step), then the scheduler's step and ``after_step``.

    A non-finite loss or gradient raises :class:`NonFiniteLossError` naming the step and the last good
    checkpoint; the update raises it before its optimizer moves, and fit writes no checkpoint after it.
    """
    batch = sampler.sample()
    try:
        out = learner.train_step(batch, optimizer, step)
        loss, stats = out if out is not None else _meta_loss_step(learner, batch, optimizer, grad_clip, precision)
        if not torch.isfinite(loss):  # a learner's own update returned a loss it should have refused
            raise NonFiniteLossError(f"loss became {loss.item()}")
    except NonFiniteLossError as e:
        raise NonFiniteLossError(f"{e} at step {step}; training stopped. The last good checkpoint {ckpt.describe()}. "
                                 "Lower the learning rate or enable grad_clip, then resume.") from None
    if scheduler is not None:
        scheduler.step()
    learner.after_step()
    return loss, stats


class _RunningMeans:
    """The loss and stats of the steps since the last log line, averaged into one history entry."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, loss: torch.Tensor, stats: dict) -> None:
        self.sums["loss"] = self.sums.get("loss", 0.0) + float(loss.detach())
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.n += 1

    def entry(self, step: int) -> dict:
        """``{"step": step, <mean of each>}``, and start afresh."""
        out = {"step": step, **{k: v / self.n for k, v in self.sums.items()}}
        self.sums, self.n = {}, 0
        return out


def _validate(learner, val_fn: Callable[[Any], dict]) -> dict:
    """``val_fn(learner)`` in eval mode, as ``val_<metric>`` entries; the learner goes back to training."""
    learner.eval()
    try:
        return {f"val_{k}": v for k, v in val_fn(learner).items()}
    finally:
        learner.train()


def fit(
    learner: MetaLearner,
    sampler: Sampler,
    steps: int,
    *,
    lr: float = 1e-3,
    lr_step: int | None = None,
    lr_gamma: float = 0.5,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    grad_clip: float | None = None,
    run_dir: str | Path | None = None,
    checkpoint_every: int = 500,
    resume: bool = True,
    val_fn: Callable[[Any], dict] | None = None,
    val_every: int = 0,
    log_every: int = 50,
    progress: bool = True,
    stop_after: int | None = None,
    time_limit_s: float | None = None,
    deadline: float | None = None,
    fingerprint: dict | None = None,
    precision: str = "float32",
) -> FitResult:
    """Meta-train ``learner`` for ``steps`` outer steps on batches from ``sampler``.

    ``learner.meta_loss(sampler.sample())`` gives the loss; the default optimizer is Adam
    with an optional StepLR. With ``run_dir`` a checkpoint is written every
    ``checkpoint_every`` steps and at the end; with ``resume`` an existing checkpoint is
    loaded first, so a killed run continues exactly where it stopped. ``stop_after`` ends
    the call early (used by the tests to simulate a crash). ``val_fn(learner)`` returns a
    dict of metrics logged every ``val_every`` steps.

    ``time_limit_s`` (seconds from the start of training in this call) and ``deadline`` (a
    ``time.time()`` value, for one limit shared by several runs) end training after the first
    step that finishes past the earlier of the two: the checkpoint is written, and
    ``FitResult.steps`` and ``FitResult.stopped`` say where and why. Nothing else sets a limit
    (no environment variable is read). fit's own schedule (StepLR) does not depend on the
    planned total, so such a run stopped at step N is the run that ``steps=N`` would have made
    (a scheduler planned over ``steps``, like a linear anneal, is the exception). The learner's
    :meth:`~mlcore.learner.TrainingHooks.agree_to_stop` is asked every step, so the ranks of a
    distributed run all stop at the same step whatever their own clocks say.

    The learner's other hooks (:class:`mlcore.learner.TrainingHooks`) are called on every step:
    ``after_backward`` after the backward pass, ``after_step`` after the optimizer's step. A learner
    whose update is more than one loss and one step (RL^2's PPO epochs) does it in its own
    ``train_step``, which fit calls first; the checkpoints, resume, NaN guard, time limit and
    progress bar are this loop's either way.

    A file named ``STOP`` in ``run_dir`` (``touch <run_dir>/STOP``) ends training the same way after the step
    that sees it, with ``FitResult.stopped`` saying "stop requested"; fit deletes the file, so the next call
    resumes. That is how a long run gives its core to another without losing the steps since its last checkpoint.

    ``fingerprint`` (a JSON-serialisable dict saying what defines the run, e.g.
    :func:`run_fingerprint` of the recipe) is stored in the checkpoint; resuming from a
    checkpoint with another fingerprint raises ``ValueError`` instead of continuing (or,
    past ``steps``, silently keeping) a different run. ``None`` skips the check.

    ``precision`` (``"float32"`` or ``"bfloat16"``): with ``"bfloat16"`` the meta-loss runs under
    ``torch.autocast`` (mixed precision: the weights, gradients and optimizer state stay float32). On a CPU
    with AVX-512 BF16 a 60-way ProtoNet step then takes about half the float32 time, a third with
    ``channels_last`` (``benchmarks/engineering.py --only autocast``); learners with their own ``train_step``
    train in float32 only.
    """
    _check_fit_arguments(learner, sampler, steps, lr, time_limit_s, precision)
    if optimizer is None:
        optimizer, scheduler = default_optimizer(learner, lr, lr_step, lr_gamma)
    ckpt = _Checkpoint(run_dir, learner, sampler, optimizer, scheduler, _fingerprint_json(fingerprint))
    start, history, prior_wall = ckpt.resume() if resume and ckpt.exists() else (0, [], 0.0)

    stop_at = _stop_time(deadline, time_limit_s)
    stop_file = Path(run_dir) / STOP_FILE if run_dir is not None else None
    stopped = None
    t0 = time.perf_counter()
    end = steps if stop_after is None else min(steps, start + stop_after)
    learner.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc=type(learner).__name__, leave=False, mininterval=1.0)
    running = _RunningMeans()
    step = start
    try:
        for step in range(start + 1, end + 1):
            loss, stats = _train_step(learner, sampler, optimizer, scheduler, grad_clip, step, ckpt, precision)
            running.add(loss, stats)
            if step % log_every == 0 or step == end:
                entry = running.entry(step)
                if val_fn is not None and val_every and (step % val_every == 0 or step == steps):
                    entry.update(_validate(learner, val_fn))
                history.append(entry)
                if bar is not None:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in entry.items() if k != "step"}, refresh=False)
            if bar is not None:
                bar.update(1)
            # a collective in a distributed run: every rank votes on every step
            requested = stop_file is not None and stop_file.exists()
            over = stop_at is not None and time.time() >= stop_at
            stop = learner.agree_to_stop(over or requested)
            if stop and step < end:
                if requested:
                    stop_file.unlink(missing_ok=True)  # consumed: the next call resumes and trains on
                why = "stop requested" if requested and not over else "time limit reached"
                stopped = f"{why} after {step} of {steps} steps"
                if running.n:
                    history.append(running.entry(step))
                ckpt.save(step, history, prior_wall + time.perf_counter() - t0)
                break
            if step % checkpoint_every == 0 or step == end:
                ckpt.save(step, history, prior_wall + time.perf_counter() - t0)
    finally:
        if bar is not None:
            bar.close()
    learner.eval()
    return FitResult(steps=step, wall_s=prior_wall + time.perf_counter() - t0, history=history, resumed_from=start,
                     stopped=stopped)


def test_sampler(ways: int, shots: int, queries: int = 15, split: str = "vinyals/test", device=None,
                 within_alphabet: bool = False, seed: int = EVAL_SEED):
    """The sampler whose :meth:`~mlcore.data.episodes.EpisodeSampler.fixed_set` gives the book's shared test episodes."""
    from .data.episodes import EpisodeSampler
    from .data.omniglot import load_split
    from .runtime import get_device

    return EpisodeSampler(load_split(split), ways, shots, queries, batch_size=1, device=get_device(device),
                          seed=seed, within_alphabet=within_alphabet)


def evaluate(learner, sampler, episodes: int = 1000, seed: int = EVAL_SEED, chunk: int = 50,
             progress: bool = False) -> dict:
    """Accuracy on ``episodes`` fixed episodes (seeded by ``seed``) with its 95 % CI.

    Returns ``{"accuracy", "ci95", "episodes", "per_episode"}``; ``per_episode`` lets the
    comparison chapter run paired tests on the very same tasks.
    """
    learner.eval()
    while True:
        try:
            return _evaluate_chunks(learner, sampler, episodes, seed, chunk, progress)
        except torch.cuda.OutOfMemoryError:  # (torch.OutOfMemoryError since 2.5; this alias works from 2.3)
            # the episodes are drawn before chunking, so smaller chunks score the very same episodes
            if chunk == 1:
                raise
            chunk = max(1, chunk // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def _evaluate_chunks(learner, sampler, episodes: int, seed: int, chunk: int, progress: bool) -> dict:
    accs: list[float] = []
    it = sampler.fixed_set(episodes, seed=seed, chunk=chunk)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=math.ceil(episodes / chunk), desc="evaluate", leave=False)
    grad_ctx = torch.enable_grad if getattr(learner, "needs_grad_at_test", False) else torch.no_grad
    for ep in it:
        with grad_ctx():
            logits = learner.predict_batch(ep)
        accs += (logits.argmax(-1) == ep.query_y).float().mean(-1).tolist()
    mean, ci = mean_ci95(accs)
    return {"accuracy": mean, "ci95": ci, "episodes": len(accs), "per_episode": accs}
