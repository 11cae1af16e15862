"""Reproductions a GPU session should (re)run: those with no record, and records trained short of their recipe.

    python benchmarks/short_records.py            # one name per line
    python benchmarks/short_records.py --why      # with the reason

"Short" means: a time limit stopped the run (``config.time_limited``), or, for records made by
``train_and_record``, the record's recipe ran fewer steps than the method's full recipe (a
``--steps N`` cut). Reproduction functions with their own recipes (Siamese, RL², ...) are only
caught by the first test: the Siamese Vinyals net (2,000 of 6,000 steps by ``--steps``) is not listed. ``benchmarks/gpu_session.sh`` uses this list when given no names.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcore import registry
from mlcore.results import RESULTS_DIR, load_record
from mlcore.runs import build_recipe

# reproduction functions whose records are not named after the reproduction
RECORD_GLOBS = {"siamese_omniglot_vinyals": "siamese_omniglot_[0-9]*w*s.json"}


def short_records(results_dir: Path = RESULTS_DIR) -> list[tuple[str, str]]:
    """``(reproduction name, reason)`` for every reproduction that is missing or was trained short."""
    out = []
    for name, spec in sorted(registry.reproductions().items()):
        path = results_dir / f"{name}.json"
        if "fn" in spec:
            # one function may write several records
            made = sorted(results_dir.glob(RECORD_GLOBS.get(name, f"{name}*.json")))
            if not made:
                out.append((name, "no record"))
                continue
            limited = [load_record(p).config.get("time_limited") for p in made]
            if any(limited):
                lim = next(x for x in limited if x)
                out.append((name, f"time limit: {lim['steps_run']} of {lim['planned_steps']} steps"))
            continue
        if not path.exists():
            out.append((name, "no record"))
            continue
        rec = load_record(path)
        if rec.config.get("weights_from"):
            continue  # scores another record's weights; that one is checked itself
        lim = rec.config.get("time_limited")
        if lim:
            out.append((name, f"time limit: {lim['steps_run']} of {lim['planned_steps']} steps"))
            continue
        _, full = build_recipe(spec["method"], spec["ways"], spec["shots"], "full", spec.get("recipe"))
        ran = rec.config.get("recipe", {}).get("steps")
        if ran is not None and ran < full.steps:
            out.append((name, f"--steps cut: {ran} of {full.steps} steps"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--why", action="store_true", help="print the reason beside each name")
    a = ap.parse_args(argv)
    for name, why in short_records():
        print(f"{name}\t{why}" if a.why else name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
