"""Run many reproductions concurrently (one process each), within a deadline.

On a GPU lent for minutes every ``REPRODUCTIONS`` entry can start at once (small Conv-4
runs leave most of an H100/H200 idle); on a 2-core CPU use ``--jobs 2`` with one thread
per run. ``NAME:STEPS`` runs a full recipe at a reduced number of meta-steps (the record's
config says how many). Each run gets ``--time-limit`` = what is left of the deadline minus
``--eval-reserve`` seconds, so it stops training in time to score itself and write its
record (the record says how many steps ran); a run still going at the deadline is killed. Records land in ``<out>/results``; logs in ``<out>/logs``; a summary in
``<out>/summary.json``.

    python benchmarks/reproduce_many.py --out /tmp/cpu --deadline 2400 --jobs 2 protonet_omniglot_20w1s:2000 ...
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=420.0, help="seconds from start")
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--budget", default="full")
    ap.add_argument("--eval-reserve", type=float, default=120.0,
                    help="seconds kept back from each run's training for scoring and writing its record")
    args = ap.parse_args()
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", TQDM_MININTERVAL="30")
    t0 = time.time()
    pending, running, done = list(args.names), {}, {}
    while pending or running:
        while pending and len(running) < args.jobs:
            name, _, steps = pending.pop(0).partition(":")
            # open for the child's whole life, closed below when it ends: no with-block spans that
            log = open(out / "logs" / f"{name}.log", "w")  # noqa: SIM115
            train_s = args.deadline - (time.time() - t0) - args.eval_reserve
            cmd = [sys.executable, "-m", "mlcore", "reproduce", "--only", name, "--budget", args.budget,
                   "--out", str(out / "results")] + (["--steps", steps] if steps else []) + \
                  ["--time-limit", str(round(max(train_s, 5.0), 1))]
            running[name] = (subprocess.Popen(cmd, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT),
                             log, time.time())
        for name, (proc, log, start) in list(running.items()):
            rc = proc.poll()
            if rc is None and time.time() - t0 > args.deadline:
                proc.kill()
                rc = "killed at deadline"
            if rc is not None:
                log.close()
                done[name] = {"rc": rc, "wall_s": round(time.time() - start, 1)}
                print(json.dumps({name: done[name]}), flush=True)
                del running[name]
        time.sleep(1.0)
    (out / "summary.json").write_text(json.dumps({"total_s": round(time.time() - t0, 1), "runs": done}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
