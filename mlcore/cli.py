"""Command line: ``python -m mlcore train|eval|reproduce|list|data``."""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time


def _positive(v: str) -> int:
    i = int(v)
    if i < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return i


def _seconds(v: str) -> float:
    try:
        f = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {v!r}") from None
    if not f > 0 or f == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of seconds, got {v}")
    return f


TIME_LIMIT_HELP = ("stop training after this many seconds, keep the checkpoint, score what was trained; "
                   "the record's config.time_limited says how many steps ran")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlcore", description="Meta-Learning, Engineered: train, "
                                "evaluate and reproduce the book's results.")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a method and write its record")
    t.add_argument("method")
    t.add_argument("--ways", type=_positive, required=True)
    t.add_argument("--shots", type=_positive, required=True)
    t.add_argument("--budget", choices=["smoke", "full", "cpu"], default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="folder for the record and checkpoint (full: results/, else runs/)")
    t.add_argument("--device", default=None)
    t.add_argument("--steps", type=_positive, default=None, help="override the recipe's number of meta-steps")
    t.add_argument("--distributed", action="store_true", help="split each meta-batch across torchrun ranks")
    t.add_argument("--time-limit", type=_seconds, default=None, metavar="SECONDS", help=TIME_LIMIT_HELP)

    e = sub.add_parser("eval", help="score a record's learner on fresh episodes; prints one JSON line")
    e.add_argument("record")
    e.add_argument("--ways", type=_positive, default=None)
    e.add_argument("--shots", type=_positive, default=None)
    e.add_argument("--episodes", type=_positive, default=None)
    e.add_argument("--seed", type=int, default=123)
    e.add_argument("--device", default=None)

    r = sub.add_parser("reproduce", help="regenerate records under results/")
    r.add_argument("--only", action="append", default=None, help="record name (repeatable)")
    r.add_argument("--budget", choices=["smoke", "full", "cpu"], default="full")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default=None)
    r.add_argument("--device", default=None)
    r.add_argument("--steps", type=_positive, default=None,
                   help="override the recipe's meta-steps (a CPU-sized run of a full recipe; the record says so)")
    r.add_argument("--time-limit", type=_seconds, default=None, metavar="SECONDS",
                   help=TIME_LIMIT_HELP + " (one limit for the whole command)")

    sub.add_parser("list", help="list methods and reproducible records")
    d = sub.add_parser("data", help="download and cache Omniglot (official zips, sha256-checked)")
    d.add_argument("--root", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command; a user's mistake (an unknown name, a missing record, a bad value) is one line on stderr,
    ``error: ...``, and exit status 2. ``MLCORE_DEBUG=1`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("MLCORE_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from . import registry

    if args.cmd == "list":
        print(json.dumps({"methods": sorted(registry.learners()), "reproductions": sorted(registry.reproductions())},
                         indent=1))
        return 0
    if args.cmd == "data":
        from .data.omniglot import ensure_omniglot

        print(ensure_omniglot(args.root))
        return 0
    if args.cmd in ("train", "reproduce"):
        from .runtime import git_commit, keep_freed_memory

        git_commit()  # read (and cache) the commit this run starts from; records written later carry it
        keep_freed_memory()  # ~1.2-1.8x less CPU per step on a CPU (benchmarks/step_speed.py)
    if args.cmd == "train":
        from .runs import train_and_record

        overrides = {"steps": args.steps} if args.steps else None
        if args.distributed:
            from .distributed import train_distributed

            path = train_distributed(args.method, args.ways, args.shots, budget=args.budget, seed=args.seed,
                                     out_dir=args.out, recipe_overrides=overrides, time_limit_s=args.time_limit)
        else:
            path = train_and_record(args.method, args.ways, args.shots, budget=args.budget, seed=args.seed,
                                    out_dir=args.out, device=args.device, recipe_overrides=overrides,
                                    time_limit_s=args.time_limit)
        if path is not None:
            print(json.dumps({"record": str(path)}))
        return 0
    if args.cmd == "eval":
        from .results import load_record

        rec = load_record(args.record)
        fn = registry.eval_fn_for(rec.name, rec.method)
        if fn:
            out = registry.resolve(fn)(args.record, episodes=args.episodes, seed=args.seed, device=args.device)
        else:
            from .runs import reevaluate

            out = reevaluate(args.record, args.ways, args.shots, args.episodes, args.seed, args.device)
        print(json.dumps(out))
        return 0
    if args.cmd == "reproduce":
        # one limit for the whole command: every reproduction trains until the same deadline
        deadline = None if args.time_limit is None else time.time() + args.time_limit
        return reproduce(args.only, args.budget, args.seed, args.out, args.device, args.steps, deadline)
    return 2


def reproduce(only: list[str] | None, budget: str, seed: int, out: str | None, device: str | None,
              steps: int | None = None, deadline: float | None = None) -> int:
    """Run the named reproductions (all by default); ``deadline`` (a ``time.time()`` value) stops the
    training of every one that trains, and their records say how far each got."""
    from . import registry
    from .runs import train_and_record

    table = registry.reproductions()
    names = only or sorted(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown reproduction(s) {unknown}; `python -m mlcore list` shows the {len(table)} there are")
    for name in names:
        spec = dict(table[name])
        spec.pop("eval_fn", None)
        spec.pop("records", None)
        if "fn" in spec:
            fn = registry.resolve(spec.pop("fn"))
            for key, value, flag, what in (("steps", steps, "--steps", "has no step count"),
                                           ("deadline", deadline, "--time-limit", "takes no deadline")):
                if value is None:
                    continue
                if key in inspect.signature(fn).parameters:
                    spec[key] = value
                else:
                    print(f"{flag} does not apply to {name} (its reproduction function {what}); "
                          "running its own budget", file=sys.stderr)
            paths = fn(budget=budget, seed=seed, out_dir=out, device=device, **spec)
        else:
            paths = [train_and_record(spec["method"], spec["ways"], spec["shots"], budget=budget, seed=seed,
                                      out_dir=out, device=device,
                                      name=name if budget in ("full", "cpu") else f"{name}_{budget}",
                                      recipe_overrides={**spec.get("recipe", {}),
                                                        **({"steps": steps} if steps else {})},
                                      shared_training=(None if "shared_training" not in spec else
                                                       spec["shared_training"] + ("" if budget in ("full", "cpu")
                                                                                  else f"_{budget}")),
                                      deadline=deadline)]
        for p in paths:
            print(json.dumps({"reproduced": name, "record": str(p)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
