"""How long a MANN stays on its plateau under Santoro et al.'s RMSprop, and what the learning rate has to do with it.

    python benchmarks/mann_optimizers.py run rmsprop_1e-4 --hours 7   # the paper's recipe: 100,000 updates
    python benchmarks/mann_optimizers.py run rmsprop_1e-3 --hours 1   # ten times the learning rate: 6,000 updates
    python benchmarks/mann_optimizers.py run rmsprop_1e-4_momentum_0.9 --hours 1   # the paper's rate, momentum 0.9
    python benchmarks/mann_optimizers.py run rmsprop_1e-4_momentum_0.9_100k        # the same, 100,000 updates
    python benchmarks/mann_optimizers.py collect                      # -> benchmarks/results/mann_optimizers.json

Every variant is Santoro et al.'s recipe as :func:`mlcore.experiments.mann_omniglot.reproduce` builds it with
``overrides``: PyTorch's RMSprop (no momentum: the paper names only the learning rate), 16 sequences of 5 classes
x 10 instances per update, every image turned by up to 10 degrees and shifted by up to 2 pixels. Only the learning
rate, the planned updates and RMSprop's momentum differ. ``run`` trains one variant resumably (run it again to continue; ``--hours``
stops it with a checkpoint and an interim record) in ``$MLCORE_RUNS/<run dir>`` and writes its records under
``~/.cache/mlcore/records/<records dir>/``. ``collect`` reads each variant's latest record and keeps its training
curve (accuracy overall and at the 2nd presentation of a class, on the augmented training sequences, thinned to
at most 200 rows), how far it got, its by-presentation accuracy on held-out test sequences, wall time, commit and
hardware. Adam at 1e-3 without augmentation, the book's MANN recipe, is ``benchmarks/mann_plateau.py``'s log.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AUGMENT = {"instances": 10, "augment": {"max_rotation": 10.0, "max_shift": 2.0}}
MOMENTUM = {"optimizer": "rmsprop", "lr": 1e-4, "extra": {**AUGMENT, "optimizer_args": {"momentum": 0.9}}}
# name -> (recipe overrides, run directory, records directory, record name); the directories are those the
# book's runs used, so that this script resumes and collects them
VARIANTS = {
    "rmsprop_1e-4": ({"optimizer": "rmsprop", "lr": 1e-4, "steps": 100_000, "extra": AUGMENT},
                     "mann_omniglot_paper_full", "mann_paper", "mann_omniglot"),
    "rmsprop_1e-3": ({"optimizer": "rmsprop", "lr": 1e-3, "steps": 6_000, "extra": AUGMENT},
                     "mann_rmsprop1e3_6k", "mann_rmsprop_1e-3", "mann_rmsprop1e3"),
    # the paper's rate with momentum 0.9, which makes a plateau step about lr / (1 - 0.9): the paper names no momentum
    "rmsprop_1e-4_momentum_0.9": ({**MOMENTUM, "steps": 6_000},
                                  "mann_rmsprop1e4_m09_6k", "mann_rmsprop_1e-4_m09", "mann_rmsprop1e4m09"),
    # the same for the paper's whole budget: does it reach the paper's 82.8 % at the 2nd presentation?
    "rmsprop_1e-4_momentum_0.9_100k": ({**MOMENTUM, "steps": 100_000}, "mann_rmsprop1e4_m09_100k",
                                       "mann_rmsprop_1e-4_m09_100k", "mann_rmsprop1e4m09_100k"),
}
HOME = Path.home() / ".cache" / "mlcore"
OUT = Path(__file__).resolve().parent / "results" / "mann_optimizers.json"


def run(variant: str, hours: float | None, budget: str = "full") -> list:
    from mlcore.experiments.mann_omniglot import reproduce
    from mlcore.runs import start_long_run

    runs = start_long_run(threads=1)
    overrides, run_dir, records, name = VARIANTS[variant]
    deadline = None if hours is None else time.time() + 3600 * hours
    return reproduce(budget, overrides=overrides, out_dir=HOME / "records" / records, name=name,
                     run_dir=runs / run_dir, deadline=deadline, device="cpu")


def collect(records_root: Path = HOME / "records", out: Path = OUT) -> dict:
    """Each variant's training curve and test accuracy by presentation, from its latest record."""
    from mlcore.results import atomic_write_text

    rows = {}
    for variant, (overrides, _, records, name) in VARIANTS.items():
        path = records_root / records / f"{name}_5w1s.json"
        if not path.exists():
            continue
        rec = json.loads(path.read_text())
        cfg, metrics = rec["config"], rec["metrics"]
        if "train_curve" not in metrics:
            raise SystemExit(f"{path} keeps no metrics.train_curve (written by code older than the curve): resume "
                             f"its run with this script to write a new record")
        planned = (cfg.get("time_limited") or {}).get("planned_steps", cfg["recipe"]["steps"])
        curve = metrics["train_curve"]
        if len(curve) > 1 and curve[-1]["step"] - curve[-2]["step"] < 10:
            # a run ended by a call that trained a few updates (to write its record) logs a last row that
            # averages only those: noise, not a point of the curve
            curve = curve[:-1]
        rows[variant] = {"overrides": overrides, "planned_updates": planned, "updates": cfg["recipe"]["steps"],
                         "train_curve": curve, "test_by_presentation": metrics["by_instance"],
                         "train_wall_s": rec["train_wall_s"], "git_commit": rec["git_commit"],
                         "hardware": rec["hardware"], "created": rec["created"]}
    if not rows:
        raise SystemExit(f"no records of {sorted(VARIANTS)} under {records_root}: run them first")
    result = {"benchmark": "mann_optimizers", "variants": rows}
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train one variant (resumes its run directory)")
    r.add_argument("variant", choices=sorted(VARIANTS))
    r.add_argument("--hours", type=float, default=None, help="stop after this long, with a checkpoint")
    c = sub.add_parser("collect", help="gather the variants' records into one JSON")
    c.add_argument("--records", default=str(HOME / "records"))
    c.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.cmd == "run":
        if args.hours is not None and not args.hours > 0:
            ap.error(f"--hours must be > 0, got {args.hours}")
        print(run(args.variant, args.hours))
    else:
        result = collect(Path(args.records), Path(args.out))
        for variant, row in result["variants"].items():
            last = row["train_curve"][-1]
            print(f"{variant}: {row['updates']:,} of {row['planned_updates']:,} updates, training accuracy "
                  f"{100 * last['acc']:.1f} % (2nd presentation {100 * last['acc_2nd']:.1f} %)")


if __name__ == "__main__":
    main()
