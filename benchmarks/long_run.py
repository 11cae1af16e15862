"""One long reproduction, resumable: train a record's recipe in a run directory outside the work tree.

    python benchmarks/long_run.py reptile 5 1 --budget cpu --time-limit 5100

The run directory (``$MLCORE_RUNS``, default ``~/.cache/mlcore/runs``, then ``<record name>_<budget>``)
holds the training checkpoint; run the same command again, on the same machine, and it resumes
exactly. The record and its checkpoint are written to ``--out`` (default: the results directory) when
training ends. ``touch <run directory>/STOP`` ends it after the current step, with a checkpoint and a record
that says so (the core is then free for another run; the same command resumes it later). Run it from a clean checkout (e.g. a ``git worktree`` of the commit to reproduce), so the
record's git commit names the code that trained it.

A variant of the recipe: ``--set FIELD=VALUE`` overrides a recipe field (VALUE read as JSON, else as text; repeat
for more) and ``--name`` names the variant's record and run directory, so it never resumes or overwrites the
recipe's own run:

    python benchmarks/long_run.py relationnet 5 1 --budget cpu --set lr_step=10000 \
        --name relationnet_omniglot_5w1s_lr_step_10k --out ~/.cache/mlcore/records/relation_schedule

It asks glibc's malloc to keep freed memory (:func:`mlcore.runtime.keep_freed_memory`): otherwise every
step frees and re-faults its activations (a Relation Net 5w1s episode: ~14,000 page faults, a 60-way
ProtoNet episode ~150,000; ``benchmarks/step_speed.py`` measures what that costs per method).
"""
from __future__ import annotations

import argparse
import time

from mlcore.runs import build_recipe, parse_recipe_sets, record_name, start_long_run, train_and_record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method")
    ap.add_argument("ways", type=int)
    ap.add_argument("shots", type=int)
    ap.add_argument("--budget", default="cpu", choices=("full", "cpu", "smoke"))
    ap.add_argument("--time-limit", type=float, default=None, help="seconds of training before it stops")
    ap.add_argument("--out", default=None, help="where the record goes (default: the results directory)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a recipe field (a variant; needs --name)")
    ap.add_argument("--name", default=None, help="the variant's record and run name")
    args = ap.parse_args(argv)
    try:
        overrides = parse_recipe_sets(args.set)
        if overrides:
            build_recipe(args.method, args.ways, args.shots, args.budget, overrides)  # unknown fields fail here
    except ValueError as e:
        ap.error(str(e))
    if overrides and not args.name:
        ap.error("--set changes the recipe: give the variant a --name, so that it neither resumes nor overwrites "
                 "the recipe's own run")
    runs = start_long_run(args.threads)
    name = args.name or record_name(args.method, args.ways, args.shots)
    t0 = time.time()
    path = train_and_record(args.method, args.ways, args.shots, budget=args.budget, out_dir=args.out,
                            name=args.name, run_dir=runs / f"{name}_{args.budget}", progress=False,
                            recipe_overrides=overrides or None, time_limit_s=args.time_limit)
    print(f"wrote {path} after {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
