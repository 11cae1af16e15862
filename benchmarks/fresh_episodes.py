"""Do retrained records hold on fresh test episodes? Re-score each on episodes drawn with another seed.

    python benchmarks/fresh_episodes.py                                  # the records retrained at the papers' recipes
    python benchmarks/fresh_episodes.py reptile_omniglot_5w1s --seed 7   # any records

Each record is scored again exactly as ``python -m mlcore eval results/<name>.json --seed 123`` does (the
book's protocol, the record's own number of episodes or trials), on episodes the record never saw. Two
independent estimates of the same accuracy differ by less than the 95 % CI of their difference,
sqrt(ci_record^2 + ci_fresh^2), in 19 cases of 20; a record outside it was scored on episodes that flatter it
(or something changed since it was written). Writes ``benchmarks/results/fresh_episodes.json``, keeping the rows
of records not named this time (each row names the commit and hardware that scored it).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mlcore import registry
from mlcore.results import RESULTS_DIR, atomic_write_text, load_record
from mlcore.runs import reevaluate
from mlcore.runtime import git_commit, hardware

# the records retrained at their papers' recipes: Sung et al.'s Relation Net, Nichol
# et al.'s Reptile, Finn et al.'s MAML and first-order MAML, Meta-SGD on MAML's, RL^2 on update-indexed schedules
RETRAINED = ("relationnet_omniglot_5w1s", "relationnet_omniglot_5w5s", "relationnet_omniglot_20w1s",
             "relationnet_omniglot_20w5s", "reptile_omniglot_5w1s", "maml_omniglot_5w1s", "fomaml_omniglot_5w1s",
             "maml_omniglot_20w1s", "metasgd_omniglot_20w1s", "rl2_bandit_n10_k5", "rl2_bandit_n10_k10",
             "rl2_bandit_n100_k5", "rl2_bandit_n100_k10", "rl2_mdp_n10", "rl2_mdp_n25")


def rescore(name: str, seed: int, results_dir: Path = RESULTS_DIR, episodes: int | None = None) -> dict:
    """One record scored on fresh episodes, beside its own number: {record, metric, reference, fresh, ...}."""
    path = results_dir / f"{name}.json"
    rec = load_record(path)
    fn = registry.eval_fn_for(rec.name, rec.method)
    t0 = time.perf_counter()
    if fn:  # RL^2 and the other non-classifiers: mean total reward per trial
        out = registry.resolve(fn)(path, episodes=episodes, seed=seed, device="cpu")
        metric, ref, ref_ci = "mean_total_reward", out["reference_mean_total_reward"], out["reference_ci95"]
        fresh, fresh_ci = out["mean_total_reward"], out["ci95"]
    else:
        out = reevaluate(path, episodes=episodes, seed=seed, device="cpu")
        metric, ref, ref_ci, fresh, fresh_ci = "accuracy", out["reference_accuracy"], out["reference_ci95"], \
            out["accuracy"], out["ci95"]
    diff_ci = math.hypot(ref_ci, fresh_ci)
    return {"record": name, "metric": metric, "reference": ref, "reference_ci95": ref_ci, "fresh": fresh,
            "fresh_ci95": fresh_ci, "difference": fresh - ref, "difference_ci95": diff_ci,
            "within": abs(fresh - ref) <= diff_ci, "seed": seed, "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="*", default=list(RETRAINED))
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--episodes", type=int, default=None, help="default: as many as each record used")
    ap.add_argument("--spread", type=int, default=12, metavar="N",
                    help="for a record outside the CI whose re-score took under a minute: score it on N more "
                         "episode sets (seeds 1000..1000+N-1) and report the mean and spread of the set means")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "fresh_episodes.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.records:
        row = rescore(name, args.seed, episodes=args.episodes)
        scale = 100 if row["metric"] == "accuracy" else 1
        print(f"{name:28s} record {scale * row['reference']:7.2f} +- {scale * row['reference_ci95']:.2f}   fresh "
              f"{scale * row['fresh']:7.2f} +- {scale * row['fresh_ci95']:.2f}   difference "
              f"{scale * row['difference']:+.2f} +- {scale * row['difference_ci95']:.2f} "
              f"({'within' if row['within'] else 'OUTSIDE'})", flush=True)
        if not row["within"] and args.spread and row["wall_s"] < 60:
            # is the record's own episode set, or the fresh one, the unusual draw? many more sets tell
            means = [rescore(name, 1000 + i, episodes=args.episodes)["fresh"] for i in range(args.spread)]
            row["spread"] = {"seeds": [1000, 1000 + args.spread - 1], "mean": statistics.fmean(means),
                             "sd_of_set_means": statistics.stdev(means), "set_means": means}
            print(f"{'':28s} over {args.spread} more sets: {scale * row['spread']['mean']:.2f}, sd of the set "
                  f"means {scale * row['spread']['sd_of_set_means']:.2f} (the CI implies "
                  f"{scale * row['reference_ci95'] / 1.96:.2f})", flush=True)
        rows.append(row)
    # rows of records not re-scored this time are kept, each with the commit and hardware that scored it
    out = Path(args.out)
    kept = json.loads(out.read_text()) if out.exists() else {"rows": []}
    for row in kept["rows"]:
        row.setdefault("git_commit", kept.get("git_commit"))
        row.setdefault("hardware", kept.get("hardware"))
    for row in rows:
        row["git_commit"], row["hardware"] = git_commit(), hardware()
    fresh = {row["record"] for row in rows}
    merged = [row for row in kept["rows"] if row["record"] not in fresh] + rows
    order = {name: i for i, name in enumerate(RETRAINED)}
    merged.sort(key=lambda row: order.get(row["record"], len(order)))
    atomic_write_text(out, json.dumps({"benchmark": "fresh_episodes", "rows": merged}, indent=1))


if __name__ == "__main__":
    main()
