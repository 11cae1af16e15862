"""One long RL² reproduction, resumable: train a setting's recipe in a run directory outside the work tree.

    python benchmarks/rl2_long_run.py mdp_n25 --out ~/.cache/mlcore/records/rl2_mdp_n25

The settings are ``mlcore.rl.SPECS`` (``bandit_n100_k10``, ``mdp_n10``, ...); the recipe is
``rl2_records.rl2_config(spec, budget)``. The run directory (``$MLCORE_RUNS``, default ``~/.cache/mlcore/runs``,
then ``<record name>_<budget>``) holds the checkpoint, written every 10 PPO updates; the same command on the
same machine resumes it exactly. ``touch <run directory>/STOP`` ends it after the current update, with a
checkpoint and an interim record that says so. The record and its weights go to ``--out`` when training ends;
``benchmarks/land.py`` lands them.

A variant: ``--set FIELD=VALUE`` overrides an ``RL2Config`` field (VALUE read as JSON, else as text) and needs
``--name``, which names its record and run directory (chapter 6, exercise 5):

    python benchmarks/rl2_long_run.py bandit_n100_k5 --set lr=0.001 --name rl2_bandit_n100_k5_lr1e-3 \
        --out ~/.cache/mlcore/records/rl2_lr1e-3

It trains on one thread (``mlcore.rl.envs.cpu_threads``: the GRU's step-sized products gain nothing from a
second), so run one per core. Like ``long_run.py`` it asks glibc's malloc to keep freed memory (:func:`mlcore.runtime.keep_freed_memory`):
without it an update of 2,000 trials spends about a fifth of its CPU time in the kernel, faulting in the pages
its GRU activations were freed from (an update of 10-episode MDP trials: ~0.8 M page faults against ~0.2 M).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from mlcore.experiments.rl2_records import reproduce_rl2
from mlcore.rl import SPECS
from mlcore.rl.rl2 import RL2Config
from mlcore.runs import parse_recipe_sets, start_long_run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("setting", help=f"one of {', '.join(SPECS)}")
    ap.add_argument("--budget", default="full", choices=("full", "smoke"))
    ap.add_argument("--out", default=None, help="where the record goes (default: the results directory)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override an RL2Config field (a variant; needs --name)")
    ap.add_argument("--name", default=None, help="the variant's record and run name")
    args = ap.parse_args(argv)
    if args.setting not in SPECS:
        ap.error(f"unknown setting {args.setting!r}; choose one of {', '.join(SPECS)}")
    try:
        overrides = parse_recipe_sets(args.set)
    except ValueError as e:
        ap.error(str(e))
    unknown = sorted(set(overrides) - set(RL2Config.__dataclass_fields__) - {"spec"})
    if unknown or "spec" in overrides:
        ap.error(f"cannot override {', '.join(unknown or ['spec'])}: --set takes the fields of RL2Config "
                 f"except spec ({', '.join(f for f in RL2Config.__dataclass_fields__ if f != 'spec')})")
    if overrides and not args.name:
        ap.error("--set changes the recipe: give the variant a --name, so that it neither resumes nor overwrites "
                 "the recipe's own run")
    runs = start_long_run(threads=1)  # RL^2 trains on one thread whatever this says (rl.envs.cpu_threads)
    name = args.name or f"rl2_{args.setting}" + ("" if args.budget == "full" else f"_{args.budget}")
    t0 = time.time()
    paths = reproduce_rl2(args.budget, seed=args.seed, out_dir=args.out, device="cpu", spec=SPECS[args.setting],
                          overrides=overrides or None, progress=False, run_dir=runs / f"{name}_{args.budget}",
                          name=name)
    print(f"wrote {paths[0]} after {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
