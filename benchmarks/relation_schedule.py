"""Does Sung et al.'s learning-rate decay lift the Relation Network's 5-way 1-shot plateau?

Sung et al. halve Adam's learning rate every 100,000 of their 1,000,000 episodes. The book's 5w1s record ran the
cpu budget's 40,000 episodes, all at the first rate, and its validation curve sat at 98.6-98.9 % from 30,000 on,
short of the paper's 99.6. Two runs of 40,000 episodes answer whether the rate is what holds it there; they share
the seed, and so the episodes, and differ only in the schedule:

    python benchmarks/long_run.py relationnet 5 1 --budget cpu --out ~/.cache/mlcore/records/relation_schedule
    python benchmarks/long_run.py relationnet 5 1 --budget cpu --set lr_step=10000 \\
        --name relationnet_omniglot_5w1s_lr_step_10k --out ~/.cache/mlcore/records/relation_schedule
    python benchmarks/relation_schedule.py collect   # -> benchmarks/results/relation_schedule.json

The first is the recipe at the cpu budget (the rate held), the second halves it every 10,000 episodes (the
paper's schedule compressed ten-fold: four rates instead of ten). ``collect`` scores both records under the
book's and the paper's protocols (:mod:`mlcore.experiments.protocol_scores`, written into the records), pairs
their per-episode test scores (the same episodes), and keeps their validation curves beside the committed record's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOME = Path.home() / ".cache" / "mlcore"
ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "relation_schedule.json"
# arm -> record name, in ~/.cache/mlcore/records/relation_schedule/
ARMS = {"rate_held": "relationnet_omniglot_5w1s", "rate_halved_every_10k": "relationnet_omniglot_5w1s_lr_step_10k"}


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of b - a over the same episodes, with a 95 % interval (normal approximation)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired scores need two equally long, non-empty lists, got {len(a)} and {len(b)}")
    from mlcore.results import mean_ci95

    mean, ci95 = mean_ci95([y - x for x, y in zip(a, b)])
    return {"mean": mean, "ci95": ci95, "episodes": len(a)}


def arm_summary(path: Path, scores: dict) -> dict:
    rec = json.loads(path.read_text())
    cfg, metrics = rec["config"], rec["metrics"]
    curve = metrics.get("learning_curve", [])
    return {"record": path.stem, "lr_step": cfg["recipe"].get("lr_step"), "steps": cfg["recipe"]["steps"],
            "validation_curve": [(p["step"], round(p["val_accuracy"], 4)) for p in curve],
            "book": {k: scores["book"][k] for k in ("accuracy", "ci95", "episodes")},
            "paper": {k: scores["paper"][k] for k in ("accuracy", "ci95", "episodes")},
            "train_wall_s": rec.get("train_wall_s"), "git_commit": rec.get("git_commit"),
            "hardware": rec.get("hardware")}


def collect(records: Path, out: Path) -> dict:
    from mlcore.experiments.protocol_scores import protocol_scores
    from mlcore.results import atomic_write_text

    missing = [name for name in ARMS.values() if not (records / f"{name}.json").exists()]
    if missing:
        raise SystemExit(f"{records} has no record for {', '.join(missing)}: run the commands in this script's "
                         "docstring first")
    scores = {arm: protocol_scores(records / f"{name}.json") for arm, name in ARMS.items()}
    result = {"benchmark": "relation_schedule", "setting": "Relation Network 5w1s, Sung et al.'s recipe, cpu budget",
              "arms": {arm: arm_summary(records / f"{name}.json", scores[arm]) for arm, name in ARMS.items()},
              "halved_minus_held": {p: paired(scores["rate_held"][p]["per_episode"],
                                              scores["rate_halved_every_10k"][p]["per_episode"])
                                    for p in ("book", "paper")}}
    committed = ROOT / "results" / "relationnet_omniglot_5w1s.json"
    if committed.exists():
        rec = json.loads(committed.read_text())
        result["committed_record"] = {
            "note": "trained before Relation Networks embedded support and queries in two passes (commit fed316f)",
            "validation_curve": [(p["step"], round(p["val_accuracy"], 4)) for p in rec["metrics"]["learning_curve"]],
            "book": rec["metrics"]["protocols"]["book"]["accuracy"],
            "paper": rec["metrics"]["protocols"]["paper"]["accuracy"]}
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    for arm, s in result["arms"].items():
        last = s["validation_curve"][-1] if s["validation_curve"] else None
        print(f"{arm:>22}: book {100 * s['book']['accuracy']:.2f} ± {100 * s['book']['ci95']:.2f}, paper "
              f"{100 * s['paper']['accuracy']:.2f} ± {100 * s['paper']['ci95']:.2f}; last validation {last}")
    for p, d in result["halved_minus_held"].items():
        print(f"halved - held, {p}'s protocol: {100 * d['mean']:+.2f} ± {100 * d['ci95']:.2f} points "
              f"over {d['episodes']} paired episodes")
    print(f"wrote {out.name}")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("collect",))
    ap.add_argument("--records", default=str(HOME / "records" / "relation_schedule"))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    collect(Path(args.records), Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
