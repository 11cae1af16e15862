"""Study: Koch et al.'s Siamese network on Omniglot, trained once as a verifier, scored one-shot.

    python -m mlcore reproduce --only siamese_omniglot_vinyals      # 4 records, one network
    python -m mlcore reproduce --only siamese_omniglot_lake_20w1s   # Lake's protocol

What is run: one :class:`mlcore.metric.siamese.Siamese` trained for same/different verification with
its recipe (``Siamese.recipe`` on ``vinyals/trainval``, or ``Siamese.lake_recipe`` on the 30
background alphabets), then scored N-way K-shot on the book's shared test episodes at the network's
own resolution (:func:`fixed_test_sampler`: the classes and drawings of
:func:`mlcore.engine.test_sampler`, seed ``mlcore.engine.EVAL_SEED``).

What is recorded: ``siamese_omniglot_{5w1s,5w5s,20w1s,20w5s}`` (Vinyals split, all four pointing
to one checkpoint) or ``siamese_omniglot_lake_20w1s`` (20-way within-alphabet one-shot on the
evaluation alphabets); each with accuracy, 95 % CI, recipe, model config and training history.
:func:`evaluate_record` re-scores a record on fresh episodes (``python -m mlcore eval``).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..budget import current_budget, pick
from ..data.episodes import EpisodeSampler
from ..data.omniglot import load_split
from ..engine import EVAL_SEED, evaluate, fit
from ..learner import Recipe
from ..metric.siamese import Siamese
from ..results import atomic_torch_save, load_record, record_dir, run_record, save_record
from ..runs import load, thin_curve, time_limited
from ..runtime import get_device, seed_everything

SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def reproduce(budget: str | None = None, seed: int = 0, out_dir=None, device=None, protocol: str = "vinyals",
              progress: bool = True, test_episodes: int | None = None, steps: int | None = None,
              run_dir=None, method: str = "siamese", deadline: float | None = None) -> list[Path]:
    """Train one verification network, then score it one-shot; write one record per setting.

    ``protocol='vinyals'`` trains once on ``vinyals/trainval`` and writes the four records
    ``siamese_omniglot_{5w1s,5w5s,20w1s,20w5s}`` (all pointing to one checkpoint);
    ``protocol='lake'`` writes ``siamese_omniglot_lake_20w1s``. At the full budget training
    checkpoints go to ``runs/<name>_train`` (run the command again after a crash and it resumes).
    ``deadline`` (a ``time.time()`` value: ``reproduce --time-limit``) stops training early; the records
    then say how many steps ran (``config.time_limited``). (``method`` is accepted because the registry
    entry names it.)
    """
    if protocol not in ("vinyals", "lake"):
        raise ValueError(f"protocol must be 'vinyals' or 'lake', got {protocol!r}")
    budget = current_budget(budget)
    recipe = Siamese.recipe(5, 1, budget) if protocol == "vinyals" else Siamese.lake_recipe(budget)
    if steps is not None:
        recipe.steps = steps
    device = get_device(device)
    seed_everything(seed)
    learner = Siamese.from_config(recipe.model).to(device)
    sampler = learner.make_train_sampler(recipe, device, seed)
    suffix = "" if budget == "full" else f"_{budget}"
    base = "siamese_omniglot" if protocol == "vinyals" else "siamese_omniglot_lake"
    out_dir = record_dir(out_dir, budget)
    t0 = time.perf_counter()
    fr = fit(learner, sampler, recipe.steps, lr=recipe.lr, lr_step=recipe.lr_step, lr_gamma=recipe.lr_gamma,
             run_dir=run_dir if run_dir is not None or budget != "full" else Path("runs") / f"{base}_train",
             progress=progress, deadline=deadline)
    stopped = time_limited(recipe, fr)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / f"{base}{suffix}.pt"
    atomic_torch_save({k: v.detach().cpu() for k, v in learner.state_dict().items()}, ckpt)
    settings = SETTINGS if protocol == "vinyals" else ((20, 1),)
    n_test = test_episodes or pick(budget, smoke=50, full=1000)
    paths = []
    for ways, shots in settings:
        t1 = time.perf_counter()
        queries = recipe.test_queries
        ts = fixed_test_sampler(ways, shots, queries, recipe.test_split, device, recipe.within_alphabet,
                                learner.encoder.image_size)
        res = evaluate(learner, ts, n_test, seed=EVAL_SEED)
        r = Recipe.from_dict({**recipe.to_dict(), "ways": ways, "shots": shots, "test_ways": ways,
                              "test_shots": shots})
        name = f"{base}_{ways}w{shots}s{suffix}"
        rec = run_record(
            t0, name=name, method="siamese", dataset="omniglot", split=recipe.test_split, ways=ways,
            shots=shots, accuracy=res["accuracy"], ci95=res["ci95"], episodes=res["episodes"], seed=seed,
            config={"recipe": r.to_dict(), "model": learner.config, "eval_seed": EVAL_SEED,
                    "protocol": protocol, "test_queries": queries,
                    **({"time_limited": stopped} if stopped else {})},
            metrics={"final_train": fr.history[-1] if fr.history else {}, "history": fr.history[-20:],
                     "train_curve": thin_curve(fr.history), "eval_wall_s": time.perf_counter() - t1,
                     # kept for paired comparisons on the same episodes (chapter 9) and so that
                     # protocol_scores can reuse this score instead of scoring the network again
                     "per_episode": [round(a, 4) for a in res["per_episode"]]},
            train_wall_s=fr.wall_s, checkpoint=ckpt.name, budget=budget)
        paths.append(save_record(rec, out_dir))
    return paths


def fixed_test_sampler(ways: int, shots: int, queries: int, split: str, device, within_alphabet: bool,
                       image_size: int) -> EpisodeSampler:
    """The book's shared test episodes (same classes and drawings as ``engine.test_sampler``) at any resolution."""
    return EpisodeSampler(load_split(split, size=image_size), ways, shots, queries, batch_size=1, device=device,
                          seed=EVAL_SEED, within_alphabet=within_alphabet)


def record_test_sampler(rec, learner) -> EpisodeSampler:
    """The test episodes of a Siamese record's protocol (its ways, shots, queries, split), at the net's resolution."""
    recipe = rec.config.get("recipe", {})
    return fixed_test_sampler(rec.ways, rec.shots, rec.config.get("test_queries", recipe.get("test_queries", 15)),
                              rec.split, learner.device, recipe.get("within_alphabet", False),
                              learner.encoder.image_size)


def evaluate_record(record_path, episodes: int | None = None, seed: int = 123, device=None) -> dict:
    """Re-score a Siamese record on fresh episodes of its protocol, at the network's own resolution."""
    rec = load_record(record_path)
    learner = load(record_path, device)
    ts = record_test_sampler(rec, learner)
    res = evaluate(learner, ts, episodes or rec.episodes or 1000, seed=seed)
    return {"record": rec.name, "accuracy": res["accuracy"], "ci95": res["ci95"], "episodes": res["episodes"],
            "ways": rec.ways, "shots": rec.shots, "seed": seed, "reference_accuracy": rec.accuracy,
            "reference_ci95": rec.ci95}
