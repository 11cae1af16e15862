"""Train a method in one setting, score it on the shared test episodes, write its record.

This is what ``python -m mlcore train`` and ``reproduce`` call, and what ``mlcore.load``
reverses.
"""
from __future__ import annotations

import inspect
import json
import os
import time
from pathlib import Path

import torch

from . import budget as budget_mod
from .data.omniglot import IMAGE_SIZE
from .engine import EVAL_SEED, evaluate, fit, run_fingerprint, test_sampler
from .learner import Recipe
from .registry import learner_class
from .results import (
    RESULTS_DIR,
    Record,
    atomic_torch_save,
    checkpoint_path,
    load_record,
    run_record,
    save_record,
)
from .runtime import get_device, git_commit, keep_freed_memory, seed_everything

CURVE_KEYS = ("step", "acc", "acc_2nd", "pair_acc", "val_accuracy")


def thin_curve(history: list[dict], most: int = 200) -> list[dict]:
    """The training curve of a whole run for its record: every k-th logged row and the last, at most ~``most``.

    Rows keep the step and the accuracies the learner logged (``CURVE_KEYS``), not the losses.
    """
    k = max(1, -(-len(history) // most))
    rows = history[::k] + ([history[-1]] if history and (len(history) - 1) % k else [])
    return [{key: row[key] for key in CURVE_KEYS if key in row} for row in rows]


def record_name(method: str, ways: int, shots: int, dataset: str = "omniglot", suffix: str = "") -> str:
    return f"{method}_{dataset}_{ways}w{shots}s{suffix}"


def build_recipe(method: str, ways: int, shots: int, budget: str,
                 overrides: dict | None = None) -> tuple[type, Recipe]:
    """The learner class and its recipe for a setting, with ``overrides`` applied (unknown fields rejected)."""
    cls = learner_class(method)
    recipe: Recipe = cls.recipe(ways, shots, budget)
    for k, v in (overrides or {}).items():
        if k not in Recipe.__dataclass_fields__:
            raise ValueError(f"unknown recipe field {k!r}; allowed: {sorted(Recipe.__dataclass_fields__)}")
        setattr(recipe, k, v)
    return cls, recipe


def runs_root() -> Path:
    """Where long runs keep their run directories: ``$MLCORE_RUNS``, default ``~/.cache/mlcore/runs``."""
    return Path(os.environ.get("MLCORE_RUNS", Path.home() / ".cache" / "mlcore" / "runs"))


def start_long_run(threads: int) -> Path:
    """Make a long run's process-wide settings, once its arguments are known to be good, and return
    :func:`runs_root`: glibc keeps freed memory (:func:`mlcore.runtime.keep_freed_memory`), torch uses
    ``threads`` intra-op threads, and the git commit is read before training, so the record names the code
    the run started from."""
    keep_freed_memory()
    torch.set_num_threads(threads)
    git_commit()
    return runs_root()


def parse_recipe_sets(pairs: list[str]) -> dict:
    """Command-line recipe overrides: ``["lr_step=10000", "optimizer=sgd"]`` -> ``{"lr_step": 10000, "optimizer":
    "sgd"}``. Each value is read as JSON where it parses (numbers, lists, dicts), else kept as text;
    :func:`build_recipe` then rejects unknown fields."""
    overrides: dict = {}
    for pair in pairs:
        field, sep, text = pair.partition("=")
        if not sep or not field:
            raise ValueError(f"--set takes key=value (e.g. lr_step=10000), got {pair!r}")
        try:
            overrides[field] = json.loads(text)
        except json.JSONDecodeError:
            overrides[field] = text
    return overrides


# Recipe fields that only say how a trained model is scored; two recipes equal in every other field train the
# same model (ProtoNet trains 60-way whatever the test ways, so its 5-way and 20-way records share one training).
EVAL_ONLY_FIELDS = ("test_ways", "test_shots", "test_queries")


def same_training(a: dict, b: dict) -> bool:
    """Whether two recipe dicts describe the same training run (they may differ in how it is scored).

    Both are read through :class:`mlcore.learner.Recipe` first, so a record written before a field existed compares
    equal to a recipe that leaves that field at its default.
    """
    def strip(d: dict) -> dict:
        return {k: v for k, v in Recipe.from_dict(d).to_dict().items() if k not in EVAL_ONLY_FIELDS}

    return strip(a) == strip(b)


def recipe_fingerprint(recipe: Recipe, method: str, seed: int) -> dict:
    """What a run's checkpoint must match to be resumed: the recipe's training fields, the method and the seed.

    How the model is scored (``EVAL_ONLY_FIELDS``) is no part of it, so two records may share one training.
    """
    return run_fingerprint({k: v for k, v in recipe.to_dict().items() if k not in EVAL_ONLY_FIELDS},
                           method=method, seed=seed)


OPTIMIZERS = ("adam", "sgd", "rmsprop")


def make_optimizer(learner: torch.nn.Module, recipe: Recipe):
    """The outer optimizer and schedule a recipe names: Adam, SGD or RMSprop at ``lr``; StepLR or a linear anneal.

    RMSprop (Santoro et al.'s MANN) uses PyTorch's defaults (smoothing 0.99, eps 1e-8, no momentum): the paper
    gives only the learning rate. ``recipe.extra["optimizer_args"]`` passes further keyword arguments to the
    optimizer (e.g. ``{"momentum": 0.9}``); a name the optimizer does not take is refused."""
    if recipe.optimizer not in OPTIMIZERS:
        raise ValueError(f"recipe.optimizer must be one of {OPTIMIZERS}, got {recipe.optimizer!r}")
    params = [p for p in learner.parameters() if p.requires_grad]
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}[recipe.optimizer]
    kwargs = dict(recipe.extra.get("optimizer_args") or {})
    allowed = sorted(set(inspect.signature(cls).parameters) - {"params", "lr"})
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"recipe.extra['optimizer_args'] names {unknown}, which {cls.__name__} does not take; "
                         f"allowed: {allowed}")
    opt = cls(params, lr=recipe.lr, **kwargs)
    if recipe.lr_final is not None:
        if recipe.lr_step:
            raise ValueError("a recipe anneals either linearly (lr_final) or in steps (lr_step), not both")
        total, final = max(recipe.steps, 1), recipe.lr_final / recipe.lr
        # step s (0-based) uses lr * ((1 - s/T) + final * s/T), as Nichol et al. anneal the outer step
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - s / total) + final * s / total)
    elif recipe.lr_step:
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=recipe.lr_step, gamma=recipe.lr_gamma)
    else:
        sched = None
    return opt, sched


def _shared_weights(source: Path, recipe: Recipe, seed: int, method: str):
    """The trained weights and training stats of ``source`` (a record) when it is the same training, else None."""
    if not source.exists():
        return None
    rec = load_record(source)
    if rec.method != method or rec.seed != seed or not same_training(rec.config.get("recipe", {}), recipe.to_dict()):
        return None
    ck = checkpoint_path(rec)
    if ck is None or not ck.exists():
        return None
    return rec, torch.load(ck, map_location="cpu", weights_only=True)


def time_limited(recipe: Recipe, fr) -> dict | None:
    """After a fit stopped early (its deadline, or a STOP file): make ``recipe.steps`` the steps that ran, and say so.

    Nothing in a recipe's schedule depends on the planned total, so the recipe then describes exactly
    the run that happened (``--steps N`` repeats it). Returns the note for ``config.time_limited``.
    """
    if not getattr(fr, "stopped", None):
        return None
    note = {"planned_steps": recipe.steps, "steps_run": fr.steps, "reason": fr.stopped}
    if recipe.lr_final is not None:
        # a linear anneal is planned over the whole run: a cut run is not the shorter run, so keep the plan
        note["schedule"] = f"linear anneal planned over {recipe.steps} steps, cut at {fr.steps}"
        return note
    recipe.steps = fr.steps
    return note


def train_and_record(method: str, ways: int, shots: int, budget: str | None = None, seed: int = 0,
                     out_dir: str | Path | None = None, device=None, name: str | None = None,
                     test_episodes: int | None = None, progress: bool = True, run_dir: str | Path | None = None,
                     recipe_overrides: dict | None = None, shared_training: str | None = None,
                     time_limit_s: float | None = None, deadline: float | None = None) -> Path:
    """Train ``method`` for N-way K-shot with its recipe at ``budget``; write record + checkpoint.

    Returns the record's path. The checkpoint (a state dict) sits beside the record as
    ``<name>.pt``. ``run_dir`` holds the resumable training checkpoint (default:
    ``runs/<name>``): run the same command again after a crash and it resumes.

    ``shared_training`` names another record whose recipe trains the same model (equal in every field but
    the test ones): when that record sits in ``out_dir`` with the same seed, its weights are scored here
    instead of training again, and the record says so (``config.weights_from``); otherwise the model is
    trained in that record's run directory, so the second of the two reproductions resumes a finished run.

    ``time_limit_s`` (seconds of training; ``train --time-limit``) and ``deadline`` (a ``time.time()``
    value; ``reproduce --time-limit``) stop training early (see :func:`mlcore.engine.fit`); the record's
    recipe then says the steps that ran and ``config.time_limited`` the plan.
    """
    budget = budget_mod.current_budget(budget)
    cls, recipe = build_recipe(method, ways, shots, budget, recipe_overrides)
    device = get_device(device)
    # one whole run (the CLI's `train`, a study's step): seeded process-wide on purpose, as a script would be
    seed_everything(seed)
    learner = cls.from_config(recipe.model).to(device)
    if recipe.extra.get("channels_last") and device.type == "cpu":
        # NHWC convolutions are ~1.25x faster for Conv-4 on a 2-core AVX2 CPU (measured in chapter 8)
        learner = learner.to(memory_format=torch.channels_last)
    sampler = learner.make_train_sampler(recipe, device, seed)
    name = name or record_name(method, ways, shots, suffix="" if budget in ("full", "cpu") else f"_{budget}")
    out_dir = Path(out_dir) if out_dir is not None else (RESULTS_DIR if budget in ("full", "cpu") else Path("runs"))
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / (shared_training or name)
    shared = _shared_weights(out_dir / f"{shared_training}.json", recipe, seed, method) if shared_training else None
    val_fn = None
    if recipe.val_split and recipe.val_every:
        vs = test_sampler(recipe.test_ways or ways, recipe.test_shots or shots, recipe.test_queries,
                          recipe.val_split, device)

        def val_fn(lrn):
            r = evaluate(lrn, vs, recipe.val_episodes, seed=EVAL_SEED + 1)
            return {"accuracy": r["accuracy"]}

    t0 = time.perf_counter()
    if shared is not None:
        source, state = shared
        learner.load_state_dict(state)
        train_wall, history = source.train_wall_s, source.metrics.get("history", [])
    else:
        optimizer, scheduler = make_optimizer(learner, recipe)
        fr = fit(learner, sampler, recipe.steps, lr=recipe.lr, optimizer=optimizer, scheduler=scheduler,
                 grad_clip=recipe.grad_clip, run_dir=run_dir, val_fn=val_fn, val_every=recipe.val_every,
                 progress=progress, time_limit_s=time_limit_s, deadline=deadline,
                 fingerprint=recipe_fingerprint(recipe, method, seed))
        train_wall, history = fr.wall_s, fr.history
    stopped = time_limited(recipe, fr) if shared is None else None
    n_test = test_episodes or budget_mod.pick(budget, smoke=100, full=1000)
    ts = test_sampler(recipe.test_ways or ways, recipe.test_shots or shots, recipe.test_queries, recipe.test_split,
                      device, within_alphabet=recipe.within_alphabet)
    res = evaluate(learner, ts, n_test, seed=EVAL_SEED, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / f"{name}.pt"
    atomic_torch_save({k: v.detach().cpu() for k, v in learner.state_dict().items()}, ckpt)
    rec = run_record(
        t0,
        name=name, method=method, dataset="omniglot", split=recipe.test_split, ways=recipe.test_ways or ways,
        shots=recipe.test_shots or shots, accuracy=res["accuracy"], ci95=res["ci95"], episodes=res["episodes"],
        seed=seed, config={"recipe": recipe.to_dict(), "model": recipe.model, "eval_seed": EVAL_SEED,
                           **({"weights_from": shared[0].name, "training_hardware": shared[0].hardware}
                              if shared is not None else {}),
                           **({"time_limited": stopped} if stopped else {})},
        metrics={"final_train": history[-1] if history else {}, "history": history[-20:],
                 "train_curve": thin_curve(history),
                 # validation accuracy against meta-steps: the learning curve of the whole run
                 **({"learning_curve": [{"step": h["step"], "val_accuracy": h["val_accuracy"]} for h in history
                                        if "val_accuracy" in h]} if any("val_accuracy" in h for h in history) else {}),
                 # per-episode accuracies on the shared test episodes: chapter 9's paired comparisons use them
                 "per_episode": [round(a, 4) for a in res["per_episode"]]},
        train_wall_s=train_wall, checkpoint=ckpt.name, budget=budget,
    )
    return save_record(rec, out_dir)


def regenerate_hint(rec: Record) -> str:
    """How to get a record's missing weights back (checkpoints over ~2 MB are not committed, see README)."""
    from .registry import reproduction_for

    name = reproduction_for(rec.name)
    if name is None:
        return "re-run the study that wrote this record"
    budget = "" if rec.budget in (None, "full") else f" --budget {rec.budget}"
    return f"regenerate them with `python -m mlcore reproduce --only {name}{budget}`"


def load(record_path: str | Path, device=None):
    """Rebuild the trained learner of a record (weights loaded with ``weights_only=True``).

    The learner knows the size of the images it was trained on (:attr:`~mlcore.learner.FewShotLearner.input_size`),
    so its ``predict`` takes raw drawings of any size and resizes them itself, as the data pipeline does.
    """
    rec = load_record(record_path)
    cls = learner_class(rec.method)
    model_cfg = rec.config.get("model", {})
    learner = cls.from_config(model_cfg)
    ck = checkpoint_path(rec)
    if ck is None or not ck.exists():
        raise FileNotFoundError(f"record {rec.name} points to checkpoint {rec.checkpoint!r}, which is missing "
                                f"(looked at {ck}); {regenerate_hint(rec)}")
    state = torch.load(ck, map_location="cpu", weights_only=True)
    learner.load_state_dict(state)
    if learner.input_size is None:
        # the images it was trained on: the data pipeline's (a net built for another size says so itself), so
        # its predict resizes raw drawings to them
        learner.input_size = IMAGE_SIZE
    learner.record = rec
    return learner.to(get_device(device)).eval()


def reevaluate(record_path: str | Path, ways: int | None = None, shots: int | None = None,
               episodes: int | None = None, seed: int = 123, device=None, queries: int | None = None) -> dict:
    """Score a record's learner on fresh episodes of its test split (``seed`` picks them)."""
    rec = load_record(record_path)
    learner = load(record_path, device)
    recipe = rec.config.get("recipe", {})
    ts = test_sampler(ways or rec.ways, shots or rec.shots, queries or recipe.get("test_queries", 15),
                      rec.split or "vinyals/test", learner.device, within_alphabet=recipe.get("within_alphabet", False))
    res = evaluate(learner, ts, episodes or rec.episodes or 1000, seed=seed)
    return {"record": rec.name, "accuracy": res["accuracy"], "ci95": res["ci95"], "episodes": res["episodes"],
            "ways": ts.ways, "shots": ts.shots, "seed": seed, "reference_accuracy": rec.accuracy,
            "reference_ci95": rec.ci95}
