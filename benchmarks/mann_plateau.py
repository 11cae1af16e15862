"""How long a MANN sits on its plateau: accuracy by presentation every N updates of the chapter 5 recipe.

    python benchmarks/mann_plateau.py --minutes 30 --out benchmarks/results/mann_plateau_plain.jsonl
    python benchmarks/mann_plateau.py --key-strength --minutes 30 --out benchmarks/results/mann_plateau_ks.jsonl

A MANN (Santoro et al. 2016, ``mlcore.memory.mann``) first learns only that a new image probably
carries an unused label: ~45 % at a class's 1st presentation, ~28-31 % at every later one (chance
20 %). Only later does it learn to address its memory by class, and then the later presentations
climb above the first. This script trains the paper-sized MANN (5 classes x 10 instances, batch 16,
Adam 1e-3, gradient clip 10, seed 0, one CPU thread) in chunks of ``--every`` updates (each chunk
resumes the previous one exactly from its checkpoint) and after each chunk scores 200 held-out
sequences (seed 1) by presentation number, writing one JSON line per chunk. With ``--key-gap``
each line also holds :func:`mlcore.memory.mann.key_class_similarity` (same-class minus
different-class key cosine), which opens when the memory starts being used. The committed logs
were written without ``--key-gap``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mlcore.data import load_split
from mlcore.engine import fit
from mlcore.memory.mann import MANN, SequenceSampler, accuracy_by_instance, key_class_similarity


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key-strength", action="store_true", help="MANN(key_strength=True)")
    ap.add_argument("--minutes", type=float, default=30.0, help="stop starting new chunks after this long")
    ap.add_argument("--every", type=int, default=500, help="updates per chunk")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--key-gap", action="store_true", help="also log the same- vs different-class key cosine")
    ap.add_argument("--run-dir", type=Path, default=None, help="checkpoint folder (default runs/mann_plateau_*)")
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per chunk")
    a = ap.parse_args(argv)
    if a.every < 1 or a.batch < 1 or a.minutes <= 0:
        ap.error("--every and --batch must be >= 1 and --minutes > 0")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tag = "ks" if a.key_strength else "plain"
    run_dir = a.run_dir or Path("runs") / f"mann_plateau_{tag}"
    model = MANN(ways=5, key_strength=a.key_strength)
    sampler = SequenceSampler(load_split("vinyals/trainval"), 5, 10, a.batch, "cpu", 0)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    t0, done = time.time(), 0
    with a.out.open("w") as log:
        while time.time() - t0 < 60 * a.minutes:
            fit(model, sampler, done + a.every, lr=1e-3, grad_clip=10.0, progress=False, run_dir=run_dir)
            done += a.every
            res = accuracy_by_instance(model, episodes=200, seed=1)
            line = {"updates": done, "wall": round(time.time() - t0),
                    "by_instance": [round(x, 3) for x in res["accuracy"]]}
            if a.key_gap:
                line["key_gap"] = round(key_class_similarity(model)["gap"], 4)
            log.write(json.dumps(line) + "\n")
            log.flush()
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
