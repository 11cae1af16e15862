"""How much of a running-statistics score is the running statistics? Re-estimate them and score again.

A network trained with batch norm is scored under the book's protocol with the running statistics that training
left behind: an exponential average (momentum 0.1) of the last few dozen batches, an estimate whose error moves
the score even though the weights do not. For each record this script scores, on the book's 1,000 test
episodes:

* ``stored``: the statistics in the checkpoint (the record's own score, reused);
* ``precise``: the statistics replaced by the plain average over ``--precise-episodes`` training episodes
  (:func:`mlcore.protocols.recompute_batch_norm` with ``momentum=None``);
* ``continued``: ``--redraws`` times, the stored average continued for ``--continue-episodes`` more training
  episodes (momentum 0.1, a different draw each time): where the statistics would stand had training stopped
  that many episodes later without the weights changing.

and, for every pair of records given, the paired differences under each. The weights never change, so any
spread here is the statistics alone::

    python benchmarks/batch_norm_stats.py ~/.cache/mlcore/records/relation_schedule/relationnet_omniglot_5w1s.json \\
        ~/.cache/mlcore/records/relation_schedule/relationnet_omniglot_5w1s_lr_step_10k.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "batch_norm_stats.json"
MOMENTUM = 0.1  # PyTorch's default, which every mlcore learner trains with
TRAIN_SEED = 20_000  # training-episode draws for the re-estimates: not the runs' own seeds, not the test seed


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of b - a over the same episodes, with a 95 % interval (normal approximation)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired scores need two equally long lists of 2 or more, got {len(a)} and {len(b)}")
    d = [y - x for x, y in zip(a, b)]
    return {"mean": statistics.fmean(d), "ci95": 1.96 * statistics.stdev(d) / math.sqrt(len(d)), "episodes": len(d)}


def score_record(path: Path, precise_episodes: int, redraws: int, continue_episodes: int,
                 episodes: int | None = None) -> dict:
    import torch

    from mlcore.learner import Recipe
    from mlcore.protocols import book_protocol, recompute_batch_norm, score
    from mlcore.results import load_record
    from mlcore.runs import load

    rec = load_record(path)
    method = rec.method
    learner = load(path, "cpu")
    recipe = Recipe(**rec.config["recipe"])  # the training episodes the record's statistics came from
    stored_state = {k: v.clone() for k, v in learner.state_dict().items()}
    protocol = book_protocol(learner)

    def run(label: str) -> dict:
        t0 = time.perf_counter()
        r = score(learner, protocol, rec.ways, rec.shots, episodes=episodes)
        print(f"{path.stem} {label}: {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        return {"accuracy": r["accuracy"], "ci95": r["ci95"], "per_episode": [round(a, 4) for a in r["per_episode"]]}

    def train_episodes(seed: int):
        return learner.make_train_sampler(recipe, torch.device("cpu"), seed)

    stored = run("stored statistics")
    recompute_batch_norm(learner, train_episodes(TRAIN_SEED), precise_episodes)
    precise = run(f"statistics averaged over {precise_episodes} training episodes")
    continued = []
    for i in range(redraws):
        learner.load_state_dict(stored_state)
        recompute_batch_norm(learner, train_episodes(TRAIN_SEED + 1 + i), continue_episodes, momentum=MOMENTUM)
        continued.append(run(f"stored statistics continued over {continue_episodes} episodes, draw {i + 1}"))
    learner.load_state_dict(stored_state)
    return {"record": path.stem, "method": method, "setting": f"{rec.ways}w{rec.shots}s",
            "git_commit": rec.git_commit, "stored": stored, "precise": precise, "continued": continued,
            "paper_protocol": {k: v for k, v in rec.metrics.get("protocols", {}).get("paper", {}).items()
                               if k in ("accuracy", "ci95", "words")}}


def summarise(results: list[dict]) -> dict:
    out = {}
    for a, b in itertools.combinations(results, 2):
        key = f"{b['record']} - {a['record']}"
        out[key] = {
            "stored": paired(a["stored"]["per_episode"], b["stored"]["per_episode"]),
            "precise": paired(a["precise"]["per_episode"], b["precise"]["per_episode"]),
            "continued": [paired(x["per_episode"], y["per_episode"]) for x, y in zip(a["continued"], b["continued"])]}
    return out


def main(argv: list[str] | None = None) -> int:
    from mlcore.results import atomic_write_text
    from mlcore.runtime import git_commit, hardware

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", type=Path, help="record .json files with running-statistics batch norm")
    ap.add_argument("--precise-episodes", type=int, default=500)
    ap.add_argument("--redraws", type=int, default=3)
    ap.add_argument("--continue-episodes", type=int, default=50)
    ap.add_argument("--episodes", type=int, default=None, help="test episodes (default: the protocol's 1,000)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.records if not p.exists()]
    if missing:
        raise SystemExit(f"no such record: {', '.join(missing)}")
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results = [score_record(p, args.precise_episodes, args.redraws, args.continue_episodes, args.episodes)
               for p in args.records]
    pairs = summarise(results)
    for key, d in pairs.items():
        cont = ", ".join(f"{100 * c['mean']:+.2f}" for c in d["continued"])
        print(f"{key}: stored {100 * d['stored']['mean']:+.2f} ± {100 * d['stored']['ci95']:.2f}, precise "
              f"{100 * d['precise']['mean']:+.2f} ± {100 * d['precise']['ci95']:.2f}, continued {cont} points")
    result = {"benchmark": "batch_norm_stats", "momentum": MOMENTUM, "precise_episodes": args.precise_episodes,
              "continue_episodes": args.continue_episodes, "redraws": args.redraws, "records": results,
              "differences": pairs, "git_commit": git_commit(), "hardware": hardware(),
              "wall_s": round(time.perf_counter() - t0, 1)}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
