"""Seconds per training step of every few-shot method's full recipe on this CPU, and what a setting buys.

    python benchmarks/step_speed.py --out benchmarks/results/step_speed_cpu.json

Each method is timed in a fresh process, one thread, twice: with glibc's default malloc and with
:func:`mlcore.runtime.keep_freed_memory`, which the CLI and ``benchmarks/long_run.py`` apply (freed
blocks are kept for reuse instead of handed back and re-faulted every step). The two runs of a method alternate
(default, tuned, default, tuned, ...) so that load from other work on the machine falls on both alike;
the ratio is the median of the per-pair ratios, and CPU time (user + system) is reported beside wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

METHODS = [("protonet", 5, 1), ("matching", 5, 1), ("relationnet", 5, 1), ("maml", 5, 1), ("fomaml", 5, 1),
           ("reptile", 5, 1), ("metasgd", 5, 1), ("anil", 5, 1)]

CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads(1)
from mlcore.runs import build_recipe, make_optimizer
method, ways, shots, steps, tuned = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if tuned == "1":
    from mlcore.runtime import keep_freed_memory
    assert keep_freed_memory()
cls, recipe = build_recipe(method, ways, shots, "full")
learner = cls.from_config(recipe.model)
sampler = learner.make_train_sampler(recipe, torch.device("cpu"), 0)
opt, sched = make_optimizer(learner, recipe)
def step():
    loss, _ = learner.meta_loss(sampler.sample())
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3):
    step()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({"wall": (t1 - t0) / steps, "user": (r1.ru_utime - r0.ru_utime) / steps,
                  "system": (r1.ru_stime - r0.ru_stime) / steps, "faults": (r1.ru_minflt - r0.ru_minflt) / steps}))
"""


def time_once(method: str, ways: int, shots: int, steps: int, tuned: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", CHILD, method, str(ways), str(shots), str(steps), str(int(tuned))],
                         env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--repeats", type=int, default=3, help="alternating default/tuned pairs per method")
    ap.add_argument("--methods", nargs="*", default=None, help="method names (default: all few-shot methods)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from mlcore.runtime import hardware

    chosen = [m for m in METHODS if args.methods is None or m[0] in args.methods]
    rows = []
    for method, ways, shots in chosen:
        pairs = [(time_once(method, ways, shots, args.steps, False), time_once(method, ways, shots, args.steps, True))
                 for _ in range(args.repeats)]
        cpu = [(d["user"] + d["system"]) / (t["user"] + t["system"]) for d, t in pairs]
        row = {"method": method, "setting": f"{ways}w{shots}s",
               "default": {k: statistics.median(d[k] for d, _ in pairs) for k in pairs[0][0]},
               "tuned_malloc": {k: statistics.median(t[k] for _, t in pairs) for k in pairs[0][1]},
               "cpu_time_speedup": statistics.median(cpu),
               "wall_speedup": statistics.median(d["wall"] / t["wall"] for d, t in pairs)}
        rows.append(row)
        print(f"{method:>12} {row['setting']}: {row['default']['user'] + row['default']['system']:.3f} -> "
              f"{row['tuned_malloc']['user'] + row['tuned_malloc']['system']:.3f} CPU-s/step "
              f"(x{row['cpu_time_speedup']:.2f}; page faults/step {row['default']['faults']:.0f} -> "
              f"{row['tuned_malloc']['faults']:.0f})", flush=True)
    result = {"benchmark": "step_speed", "steps": args.steps, "repeats": args.repeats, "hardware": hardware(),
              "note": "one thread per run; medians over alternating pairs; the machine may have had other load",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    if args.out:
        from mlcore.results import atomic_write_text

        out = Path(args.out)
        if args.methods and out.exists():  # a subset replaces its own rows and keeps the others, marked by date
            old = json.loads(out.read_text())
            kept = [dict(r, created=r.get("created", old.get("created"))) for r in old["rows"]
                    if r["method"] not in args.methods]
            for r in rows:
                r["created"] = result["created"]
            order = [m for m, _, _ in METHODS]
            result["rows"] = sorted(kept + rows, key=lambda r: order.index(r["method"]))
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
