"""Study: chapter 2's measurement, no learning-to-learn vs transfer vs meta-learning, as shots grow.

    python -m mlcore reproduce --only traits_accuracy_vs_shots

What is run: on the *same* fixed 5-way test episodes (``mlcore.engine.test_sampler`` + ``evaluate``
with ``EVAL_SEED``), for K in {1, 2, 5, 10} shots, this scores

* ``scratch``: a Conv-4 trained on the support set alone (traditional supervised learning);
* ``pretrained_linear`` / ``pretrained_centroid``: transfer from a Conv-4 pre-trained as an
  ordinary 4,800-way classifier, with a linear probe or nearest centroids on its features;
* ``protonet``: meta-learned Prototypical Networks (the reference 5-way 1-shot record when it
  exists, else one trained here at the same budget).

Every test episode has 10 queries per class (10-shot + 10 queries = all 20 drawings of a
character), so the 1-shot ProtoNet number here is on different episodes than its own
record's 15-query ones.

What is recorded: ``traits_accuracy_vs_shots`` (per method and shot: accuracy, 95 % CI, episodes,
seconds), with the records it reused or trained (the pre-trained classifier, the ProtoNet) named
relative to it; :func:`rescore_traits` re-scores every method on fresh episodes.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..baselines.scratch import Scratch
from ..budget import current_budget, pick
from ..engine import EVAL_SEED, evaluate, test_sampler
from ..results import RESULTS_DIR, load_record, record_dir, results_dir, run_record, save_record
from ..runs import load, train_and_record
from ..runtime import get_device

SHOTS = (1, 2, 5, 10)
QUERIES = 10
PROTONET_REFERENCE = "protonet_omniglot_5w1s.json"
# Smoke runs (CI, 2 CPU cores) cut the scratch baseline's per-task Adam steps; full runs use the recipe's.
SMOKE_SCRATCH_STEPS = 20
#: The record's method keys, in words (chapters 2 and 10 label tables and plots with these).
METHOD_LABELS = {
    "scratch": "from scratch (traditional)",
    "pretrained_linear": "pretrained + linear probe (transfer)",
    "pretrained_centroid": "pretrained + nearest centroid (transfer)",
    "protonet": "ProtoNet (meta-learned)",
}


def score_methods(learners: dict, ways: int, shots, queries: int, episodes: int, seed: int = EVAL_SEED,
                  device=None, chunk: int = 50) -> dict:
    """Accuracy and 95 % CI of each learner at each shot, all on the same seeded episodes.

    Returns ``{method: {str(shot): {"accuracy", "ci95", "episodes", "wall_s"}}}``.
    """
    out: dict = {m: {} for m in learners}
    for k in shots:
        ts = test_sampler(ways, k, queries, device=device)
        for m, lrn in learners.items():
            t0 = time.perf_counter()
            r = evaluate(lrn, ts, episodes, seed=seed, chunk=chunk)
            out[m][str(k)] = {"accuracy": r["accuracy"], "ci95": r["ci95"], "episodes": r["episodes"],
                              "wall_s": time.perf_counter() - t0}
    return out


def _with_classifier(learner, classifier: str):
    """A copy of a Pretrained learner that uses another test-time classifier (same weights)."""
    cls = type(learner)
    twin = cls.from_config({**learner.config, "classifier": classifier})
    twin.load_state_dict(learner.state_dict())
    return twin.to(learner.device).eval()


def traits_vs_shots(budget: str | None = None, seed: int = 0, out_dir: str | Path | None = None, device=None,
                    ways: int = 5, shots=SHOTS, queries: int = QUERIES, episodes: int | None = None,
                    name: str = "traits_accuracy_vs_shots", reuse: bool = True, progress: bool = False,
                    protonet_record: str | Path | None = None, run_root: str | Path | None = None,
                    method: str = "traits", deadline: float | None = None) -> list[Path]:
    """Train what needs training, score every method at every shot, write one record.

    ``reuse``: a pretrained record of this budget already in ``out_dir`` is loaded instead
    of retrained (so re-running after the ProtoNet reference arrives only re-scores).
    ``protonet_record`` overrides where the ProtoNet comes from. ``run_root`` holds the resumable
    training checkpoints (default ``runs/<name>``; an interrupted run resumes from there).
    ``method`` is the record's method name (``python -m mlcore eval`` finds :func:`rescore_traits`
    through it). ``deadline`` (a ``time.time()`` value: ``reproduce --time-limit``) stops the trainings
    done here; their records say how many steps ran. Returns the records written.
    """
    budget = current_budget(budget)
    device = get_device(device)
    if ways < 2:
        raise ValueError(f"ways must be >= 2, got {ways}")
    if not shots or any((not isinstance(k, int)) or k < 1 or k + queries > 20 for k in shots):
        raise ValueError(f"shots must be positive ints with shot + queries ({queries}) <= 20, got {shots}")
    out_dir = record_dir(out_dir, budget)
    suffix = "" if budget == "full" else f"_{budget}"
    episodes = episodes or pick(budget, smoke=5, full=600)
    t0 = time.perf_counter()
    written: list[Path] = []

    # 1. transfer: ordinary supervised pre-training on all 4,800 trainval classes
    pre_name = f"pretrained_omniglot_{ways}w1s{suffix}"
    pre_path = out_dir / f"{pre_name}.json"
    if not (reuse and pre_path.exists()):
        pre_path = train_and_record("pretrained", ways, 1, budget=budget, seed=seed, out_dir=out_dir, device=device,
                                    name=pre_name, progress=progress,
                                    run_dir=None if run_root is None else Path(run_root) / pre_name,
                                    test_episodes=pick(budget, smoke=10, full=1000), deadline=deadline)
        written.append(pre_path)
    pretrained = load(pre_path, device)

    # 2. meta-learning: the ProtoNet reference record if it exists, else one trained at this budget
    if protonet_record is not None:
        proto_path = Path(protonet_record)
    elif (RESULTS_DIR / PROTONET_REFERENCE).exists():
        proto_path = RESULTS_DIR / PROTONET_REFERENCE
    else:
        proto_path = out_dir / f"traits_protonet_omniglot_{ways}w1s{suffix}.json"
        if not (reuse and proto_path.exists()):
            # at full budget 3,000 episodes (not ProtoNet's 10,000) keep this run inside its time slot
            proto_path = train_and_record("protonet", ways, 1, budget=budget, seed=seed, out_dir=out_dir,
                                          device=device, name=proto_path.stem, progress=progress,
                                          run_dir=None if run_root is None else Path(run_root) / proto_path.stem,
                                          test_episodes=pick(budget, smoke=10, full=1000),
                                          recipe_overrides={"steps": pick(budget, smoke=20, full=3000)},
                                          deadline=deadline)
            written.append(proto_path)
    protonet = load(proto_path, device)

    # 3. no meta-learning and no transfer: a fresh Conv-4 per task
    scratch_cfg = dict(Scratch.recipe(ways, 1, budget).model)
    scratch_cfg["steps"] = pick(budget, smoke=SMOKE_SCRATCH_STEPS, full=scratch_cfg["steps"])
    scratch = Scratch(**scratch_cfg).to(device)

    learners = {"scratch": scratch, "pretrained_linear": _with_classifier(pretrained, "linear"),
                "pretrained_centroid": _with_classifier(pretrained, "centroid"), "protonet": protonet}
    scores = score_methods(learners, ways, shots, queries, episodes, EVAL_SEED, device)
    pre_rec, proto_rec = load_record(pre_path), load_record(proto_path)
    rec = run_record(
        t0,
        name=f"{name}{suffix}", method=method, dataset="omniglot", split="vinyals/test", ways=ways, shots=None,
        episodes=episodes, seed=seed, budget=budget,
        config={"shots": list(shots), "queries": queries, "eval_seed": EVAL_SEED, "scratch": scratch_cfg,
                "pretrained_record": _relative(pre_path, out_dir), "pretrained_config": pre_rec.config,
                "protonet_record": _relative(proto_path, out_dir), "protonet_budget": proto_rec.budget,
                "protonet_steps": proto_rec.config.get("recipe", {}).get("steps")},
        metrics={"shots": list(shots), "methods": scores,
                 "train_wall_s": {"pretrained": pre_rec.train_wall_s, "protonet": proto_rec.train_wall_s}},
    )
    written.append(save_record(rec, out_dir))
    return written


def _relative(path: Path, base: Path) -> str:
    """How a record names another record: its file name when that one sits beside it or among the book's records
    (the results directory), else a path relative to the record's own folder. Never a machine-specific path: a
    record written in a run folder and then copied into ``results/`` still finds the book's records."""
    path = Path(path).resolve()
    if path.parent in (Path(base).resolve(), results_dir().resolve()):
        return path.name
    return os.path.relpath(path, Path(base).resolve())


def _referenced(base: Path, ref: str) -> Path:
    """Where a record named by :func:`_relative` lies: beside the naming record, else among the book's records."""
    path = Path(base) / ref
    return path if path.exists() else results_dir() / Path(ref).name


def rescore_traits(record_path: str | Path, episodes: int | None = None, seed: int = 123, device=None) -> dict:
    """``python -m mlcore eval`` for a traits record: every method, every shot, on fresh episodes."""
    rec = load_record(record_path)
    base = Path(getattr(rec, "_path", record_path)).parent
    device = get_device(device)
    pretrained = load(_referenced(base, rec.config["pretrained_record"]), device)
    learners = {"scratch": Scratch(**rec.config["scratch"]).to(device),
                "pretrained_linear": _with_classifier(pretrained, "linear"),
                "pretrained_centroid": _with_classifier(pretrained, "centroid"),
                "protonet": load(_referenced(base, rec.config["protonet_record"]), device)}
    n = episodes or rec.episodes
    scores = score_methods(learners, rec.ways, rec.config["shots"], rec.config["queries"], n, seed, device)
    return {"record": rec.name, "seed": seed, "episodes": n,
            "accuracy": {m: {k: round(v["accuracy"], 4) for k, v in s.items()} for m, s in scores.items()},
            "ci95": {m: {k: round(v["ci95"], 4) for k, v in s.items()} for m, s in scores.items()}}
