"""Land the records of finished long runs in ``results/``: copy, score under both protocols, regenerate pages.

    python benchmarks/land.py ~/.cache/mlcore/records matching_omniglot_20w5s matching_omniglot_5w1s

For each name it copies ``<name>.json`` and ``<name>.pt`` from the run's ``--out`` folder into ``results/``,
scores the record under the book's and the paper's protocols (:mod:`mlcore.experiments.protocol_scores`, which
reuses the record's own per-episode score where the protocols agree; records outside the Omniglot few-shot
protocols, such as RL² agents, keep the score their run wrote), then regenerates the README's table and the
reproduction notes, and lists the chapters that read the record (re-execute them, and chapter 9 always).

A record that a time limit or a ``STOP`` file ended early is refused unless ``--interim`` says it is meant.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".landing")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def has_protocols(record: Path) -> bool:
    """Whether the book's and the papers' test protocols apply: Omniglot few-shot records (ways and shots set)."""
    d = json.loads(record.read_text())
    return d.get("dataset") == "omniglot" and bool(d.get("ways")) and bool(d.get("shots"))


def land(source: Path, names: list[str], results: Path, interim: bool = False) -> list[Path]:
    pairs = []
    for name in names:
        rec, ckpt = source / f"{name}.json", source / f"{name}.pt"
        missing = [p.name for p in (rec, ckpt) if not p.exists()]
        if missing:
            raise SystemExit(f"{source} has no {' or '.join(missing)}: land only a run that wrote its record")
        stopped = json.loads(rec.read_text()).get("config", {}).get("time_limited")
        if stopped and not interim:
            raise SystemExit(f"{name} stopped early ({stopped}); resume its run, or pass --interim to land it as is")
        pairs.append((rec, ckpt))
    landed = []
    for rec, ckpt in pairs:
        _copy(ckpt, results / ckpt.name)  # weights first: a record never points at a missing checkpoint
        _copy(rec, results / rec.name)
        landed.append(results / rec.name)
    return landed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="the folder the long run wrote its record to (its --out)")
    ap.add_argument("names", nargs="+", help="record names, e.g. matching_omniglot_20w5s")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--interim", action="store_true", help="land a record that stopped before its planned steps")
    args = ap.parse_args(argv)
    from mlcore.experiments.protocol_scores import protocol_scores

    for path in land(args.source.expanduser(), args.names, args.results, args.interim):
        if not has_protocols(path):
            print(json.dumps({"record": path.stem, "protocols": "none (not an Omniglot few-shot record)"}))
            continue
        out = protocol_scores(path)
        print(json.dumps({"record": path.stem, **{k: round(100 * v["accuracy"], 2) for k, v in out.items()}}),
              flush=True)
    subprocess.run([sys.executable, "-m", "mlcore.report", "--readme"], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "tools/reproduction_notes.py"], cwd=ROOT, check=True)
    # chapters name a record whole or build it from its stem (f"matching_omniglot_{setting}")
    stems = {n for name in args.names for n in (name, name.rsplit("_", 1)[0] + "_")}
    readers = sorted({p.name for p in (ROOT / "notebooks").glob("*.py") for n in stems if n in p.read_text()})
    print("chapters that read these records (re-execute them, and 09 always):", ", ".join(readers) or "none")


if __name__ == "__main__":
    main()
