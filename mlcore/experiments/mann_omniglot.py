"""Study: Santoro et al.'s memory-augmented network on Omniglot, one training, two few-shot records.

    python -m mlcore reproduce --only mann_omniglot     # writes mann_omniglot_5w1s and mann_omniglot_5w5s

What is run: one :class:`mlcore.memory.mann.MANN` trained with its recipe (``MANN.recipe``: 5-way,
10-instance sequences), then scored twice: the standard few-shot protocol on the book's shared test
episodes (:func:`mlcore.engine.test_sampler`, seed ``mlcore.engine.EVAL_SEED``), and the paper's own
measurement, accuracy by presentation number in held-out sequences
(:func:`mlcore.memory.mann.accuracy_by_instance`).

What is recorded: ``mann_omniglot_5w1s`` and ``mann_omniglot_5w5s`` (one checkpoint), each with its
accuracy and 95 % CI, ``metrics.by_instance`` and the presentation that corresponds to the paper's
number (``paper_equivalent_instance``).
"""
from __future__ import annotations

import time
from pathlib import Path

from .. import budget as budget_mod
from ..engine import EVAL_SEED, evaluate, fit, test_sampler
from ..memory.mann import MANN, accuracy_by_instance
from ..results import atomic_torch_save, record_dir, run_record, save_record
from ..runs import build_recipe, make_optimizer, recipe_fingerprint, thin_curve, time_limited
from ..runtime import get_device, seed_everything


def reproduce(budget: str | None = None, seed: int = 0, out_dir=None, device=None, name: str = "mann_omniglot",
              encoder: str = "flat", steps: int | None = None, deadline: float | None = None,
              overrides: dict | None = None, run_dir=None) -> list:
    """Train one MANN on 5-way, 10-instance sequences; write ``<name>_5w1s`` and ``<name>_5w5s`` records.

    Each record's ``accuracy`` is the standard few-shot protocol (support fed as a labelled sequence,
    then every query answered from that memory, on the book's shared test episodes); its
    ``metrics.by_instance`` holds the paper's measurement (accuracy at the 1st..10th presentation of a
    class in held-out sequences). Paper correspondence: 1-shot ~ 2nd presentation (one labelled example
    seen), 5-shot ~ 6th presentation; Santoro et al.'s 82.8 / 94.9 are their 2nd / 5th presentations.
    ``deadline`` (a ``time.time()`` value: ``reproduce --time-limit``) stops training early; the records
    then say how many steps ran (``config.time_limited``). ``overrides`` sets recipe fields (for example
    Santoro et al.'s ``{"optimizer": "rmsprop", "lr": 1e-4}``); ``run_dir`` holds the resumable training
    checkpoint (default ``runs/<name>``), which refuses to resume under another recipe.
    """
    budget = budget_mod.current_budget(budget)
    _, recipe = build_recipe("mann", 5, 1, budget, overrides)
    recipe.model = {**recipe.model, "encoder": encoder}
    if steps is not None:
        recipe.steps = steps
    device = get_device(device)
    seed_everything(seed)
    learner = MANN(**recipe.model).to(device)
    sampler = learner.make_train_sampler(recipe, device, seed)
    suffix = "" if budget == "full" else f"_{budget}"
    out_dir = record_dir(out_dir, budget)
    optimizer, scheduler = make_optimizer(learner, recipe)
    t0 = time.perf_counter()
    fr = fit(learner, sampler, recipe.steps, lr=recipe.lr, optimizer=optimizer, scheduler=scheduler,
             grad_clip=recipe.grad_clip, run_dir=Path(run_dir) if run_dir else Path("runs") / f"{name}{suffix}",
             progress=budget == "full", deadline=deadline,
             fingerprint=recipe_fingerprint(recipe, "mann", seed))
    stopped = time_limited(recipe, fr)
    n_eval = budget_mod.pick(budget, smoke=100, full=1000)
    by_inst = accuracy_by_instance(learner, recipe.test_split, episodes=n_eval, seed=EVAL_SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / f"{name}{suffix}.pt"
    atomic_torch_save({k: v.detach().cpu() for k, v in learner.state_dict().items()}, ckpt)
    paths = []
    for shots in (1, 5):
        res = evaluate(learner, test_sampler(5, shots, recipe.test_queries, recipe.test_split, device), n_eval)
        rec_recipe = {**recipe.to_dict(), "test_shots": shots}
        rec = run_record(
        t0,
            name=f"{name}_5w{shots}s{suffix}", method="mann", dataset="omniglot", split=recipe.test_split, ways=5,
            shots=shots, accuracy=res["accuracy"], ci95=res["ci95"], episodes=res["episodes"], seed=seed,
            config={"recipe": rec_recipe, "model": recipe.model, "eval_seed": EVAL_SEED,
                    **({"time_limited": stopped} if stopped else {})},
            metrics={"by_instance": by_inst, "paper_equivalent_instance": shots + 1,
                     "final_train": fr.history[-1] if fr.history else {}, "history": fr.history[-20:],
                     # the whole run's training accuracy (overall and at the 2nd presentation), at most 200 rows:
                     # where it sat on the plateau and when it left it
                     "train_curve": thin_curve(fr.history)},
            train_wall_s=fr.wall_s, checkpoint=ckpt.name, budget=budget)
        paths.append(save_record(rec, out_dir))
    return paths
