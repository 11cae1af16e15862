"""Does the way a Siamese network combines K shots' scores cost it points? Score one record under each rule.

    python benchmarks/siamese_aggregate.py                                   # the 20-way 5-shot record
    python benchmarks/siamese_aggregate.py siamese_omniglot_5w5s --episodes 200

A verification network gives every (query, support image) pair a log-odds; with K > 1 shots a class gets K of
them. ``aggregate="max"`` (the records' rule, Koch's) keeps the best; ``"mean_logit"`` averages them. Both rules
score the *same* network on the book's shared test episodes (the record's own, so the record's rule must give the
record's number back exactly), and the paired per-episode differences give the gap between the rules with a 95 %
CI. Writes ``benchmarks/results/siamese_aggregate.json`` (keeping rows of records not named this time).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mlcore.engine import EVAL_SEED
from mlcore.experiments.siamese_omniglot import record_test_sampler
from mlcore.learner import check_task
from mlcore.metric.siamese import class_scores
from mlcore.results import RESULTS_DIR, atomic_write_text, load_record, mean_ci95
from mlcore.runs import load
from mlcore.runtime import git_commit, hardware

OUT = Path(__file__).resolve().parent / "results" / "siamese_aggregate.json"
RULES = ("max", "mean_logit")


def _per_episode_both_rules(learner, sampler, episodes: int) -> dict[str, list[float]]:
    """Per-episode accuracy under every rule, the pair scores computed once per episode (half the cost of two
    ``evaluate`` calls, on exactly the episodes ``evaluate`` draws)."""
    accs = {rule: [] for rule in RULES}
    learner.eval()
    with torch.no_grad():
        for ep in sampler.fixed_set(episodes, seed=EVAL_SEED, chunk=50):
            for i in range(ep.batch_size):
                support_x, query_x = learner.as_input(ep.support_x[i]), learner.as_input(ep.query_x[i])
                ways = check_task(support_x, ep.support_y[i], query_x)
                sim = learner.similarity(support_x, query_x)
                for rule in RULES:
                    hit = class_scores(sim, ep.support_y[i], ways, rule).argmax(-1) == ep.query_y[i]
                    accs[rule].append(hit.float().mean().item())
    return accs


def score_rules(record_path: Path, episodes: int | None = None) -> dict:
    """The record's network scored under every rule on the record's own test episodes, with paired gaps."""
    rec = load_record(record_path)
    learner = load(record_path)
    episodes = episodes or rec.episodes or 1000
    ts = record_test_sampler(rec, learner)
    t0 = time.perf_counter()
    per_episode = _per_episode_both_rules(learner, ts, episodes)
    wall = round(time.perf_counter() - t0, 1)
    rows = {rule: dict(zip(("accuracy", "ci95"), mean_ci95(accs)), per_episode=accs)
            for rule, accs in per_episode.items()}
    diff = [b - a for a, b in zip(rows["max"]["per_episode"], rows["mean_logit"]["per_episode"])]
    gap, gap_ci = mean_ci95(diff)
    own = rec.config.get("model", {}).get("aggregate", "max")
    return {"record": rec.name, "ways": rec.ways, "shots": rec.shots, "episodes": episodes,
            "record_rule": own, "record_accuracy": rec.accuracy,
            # the record's rule on the record's episodes must give its number back: the same weights and episodes
            "reproduces_record": episodes == rec.episodes and abs(rows[own]["accuracy"] - rec.accuracy) < 1e-6,
            "rules": {r: {k: v for k, v in row.items() if k != "per_episode"} for r, row in rows.items()},
            "wall_s": wall,
            "mean_logit_minus_max": {"accuracy": gap, "ci95": gap_ci},
            "episodes_where": {"mean_logit_better": sum(d > 0 for d in diff), "max_better": sum(d < 0 for d in diff)},
            "hardware": hardware(), "git_commit": git_commit(), "paper": "Vinyals et al. 2016 (Siamese re-implementation)"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=["siamese_omniglot_20w5s"])
    ap.add_argument("--episodes", type=int, default=None, help="fewer episodes for a quick look (not written)")
    ap.add_argument("--results", type=Path, default=RESULTS_DIR)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    table = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.names:
        row = score_rules(args.results / f"{name}.json", args.episodes)
        print(json.dumps({k: row[k] for k in ("record", "reproduces_record", "rules", "mean_logit_minus_max")}),
              flush=True)
        if args.episodes is None:
            table[name] = row
    if args.episodes is None:
        atomic_write_text(args.out, json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
