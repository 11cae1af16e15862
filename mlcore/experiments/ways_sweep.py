"""Study: ProtoNet trained with more or fewer ways and shots, scored on the same test settings.

    python -m mlcore reproduce --only protonet_ways_sweep

Snell et al. found that training with *more* ways than at test time (60-way episodes for
5-way tests) helps: each episode then holds more confusable classes, so the embedding
has to separate more of them at once.

What is run: one :class:`mlcore.memory.protonet.ProtoNet` per (training ways, training shots), each with
the same recipe and number of episodes, each scored on every test setting on the book's shared test
episodes (seed ``mlcore.engine.EVAL_SEED``).

What is recorded: one record ``protonet_ways_sweep`` whose ``metrics.grid`` is a list of cells
(training ways and shots x test ways and shots, each with its accuracy, 95 % CI, episodes, steps run and
checkpoint), plus one checkpoint per trained model. :func:`reevaluate_sweep` re-scores every cell.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import budget as budget_mod
from ..engine import EVAL_SEED, evaluate, fit, test_sampler
from ..memory.protonet import ProtoNet
from ..results import atomic_torch_save, load_record, record_dir, run_record, save_record
from ..runtime import get_device, seed_everything


def protonet_ways_sweep(budget: str | None = None, seed: int = 0, out_dir=None, device=None,
                        name: str = "protonet_ways_sweep", train_ways=None, train_shots=None, steps=None,
                        test_settings=((5, 1), (5, 5), (20, 1), (20, 5)), episodes=None,
                        deadline: float | None = None) -> list:
    """Train ProtoNet once per (training ways, training shots); evaluate each on ``test_settings``.

    Writes one record ``<name>`` (``metrics.grid``: a list of cells) plus one checkpoint per trained model.
    ``deadline`` (a ``time.time()`` value: ``reproduce --time-limit``) is shared out among the models.
    """
    budget = budget_mod.current_budget(budget)
    train_ways = tuple(train_ways or budget_mod.pick(budget, smoke=(5, 20), full=(5, 20, 60)))
    train_shots = tuple(train_shots or budget_mod.pick(budget, smoke=(1,), full=(1, 5)))
    steps = steps or budget_mod.pick(budget, smoke=30, full=3000)
    episodes = episodes or budget_mod.pick(budget, smoke=40, full=1000)
    device = get_device(device)
    suffix = "" if budget == "full" else f"_{budget}"
    out_dir = record_dir(out_dir, budget)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid, t0 = [], time.perf_counter()
    models_left = len(train_shots) * len(train_ways)
    for k in train_shots:
        for n in train_ways:
            # under a time limit every model gets an equal share of what is left (the cell says its steps)
            own = None if deadline is None else time.time() + max(0.0, deadline - time.time()) / models_left
            models_left -= 1
            seed_everything(seed)
            learner = ProtoNet().to(device)
            recipe = ProtoNet.recipe(5, k, budget)
            recipe.ways, recipe.steps = n, steps
            fr = fit(learner, learner.make_train_sampler(recipe, device, seed), steps, lr=recipe.lr,
                     lr_step=recipe.lr_step, lr_gamma=recipe.lr_gamma, progress=False, deadline=own)
            ckpt = out_dir / f"{name}{suffix}_train{n}w{k}s.pt"
            atomic_torch_save({k_: v.detach().cpu() for k_, v in learner.state_dict().items()}, ckpt)
            for tw, ts in test_settings:
                r = evaluate(learner, test_sampler(tw, ts, device=device), episodes, seed=EVAL_SEED)
                grid.append({"train_ways": n, "train_shots": k, "test_ways": tw, "test_shots": ts,
                             "accuracy": r["accuracy"], "ci95": r["ci95"], "episodes": r["episodes"],
                             "train_wall_s": fr.wall_s, "steps": fr.steps, "checkpoint": ckpt.name})
    rec = run_record(
        t0, name=f"{name}{suffix}", method="protonet_ways_sweep", dataset="omniglot", split="vinyals/test",
        seed=seed, config={"train_ways": list(train_ways), "train_shots": list(train_shots), "steps": steps,
                           "test_settings": [list(t) for t in test_settings], "eval_seed": EVAL_SEED},
        metrics={"grid": grid}, budget=budget)
    return [save_record(rec, out_dir)]


def reevaluate_sweep(record_path, episodes=None, seed: int = 123, device=None) -> dict:
    """Re-score every cell of a sweep record on fresh episodes (``seed``); returns the new grid."""
    rec = load_record(record_path)
    base = Path(rec._path).parent
    device = get_device(device)
    cells, models = [], {}
    for cell in rec.metrics["grid"]:
        if cell["checkpoint"] not in models:
            m = ProtoNet()
            m.load_state_dict(torch.load(base / cell["checkpoint"], map_location="cpu", weights_only=True))
            models[cell["checkpoint"]] = m.to(device).eval()
        r = evaluate(models[cell["checkpoint"]], test_sampler(cell["test_ways"], cell["test_shots"], device=device),
                     episodes or cell["episodes"], seed=seed)
        cells.append({**{k: cell[k] for k in ("train_ways", "train_shots", "test_ways", "test_shots")},
                      "accuracy": r["accuracy"], "ci95": r["ci95"], "reference_accuracy": cell["accuracy"],
                      "reference_ci95": cell["ci95"]})
    return {"record": rec.name, "seed": seed, "grid": cells}
