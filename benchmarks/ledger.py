"""Where the long runs stand: one line per run directory under ``$MLCORE_RUNS`` (default ``~/.cache/mlcore/runs``).

    python benchmarks/ledger.py            # a markdown table for results/LEDGER.md

Reads each run's ``last.pt`` (the resumable training checkpoint) and prints its step, training time,
seconds per step, training accuracy over the last five logged rows (for a MANN also at the 2nd presentation of a
class, where its plateau shows; for RL² the mean total reward per trial instead), latest validation accuracy
(where the recipe validates) and when it was written.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch


def run_rows(runs: Path) -> list[dict]:
    rows = []
    for ck in sorted(runs.glob("*/last.pt")):
        state = torch.load(ck, map_location="cpu", weights_only=True)
        step, wall = int(state["step"]), float(state.get("wall_s", 0.0))
        vals = [(h["step"], h["val_accuracy"]) for h in state.get("history", []) if "val_accuracy" in h]
        history = state.get("history", [])
        key = "pair_acc" if any("pair_acc" in h for h in history) else "acc"  # Siamese: pairs
        last = [h for h in history if key in h][-5:]
        train = f"{100 * sum(h[key] for h in last) / len(last):.1f} %" if last else "–"
        rewards = [h["mean_total_reward"] for h in history if "mean_total_reward" in h][-5:]  # RL^2
        if not last and rewards:
            train = f"reward {sum(rewards) / len(rewards):.1f} per trial"
        if last and key == "pair_acc":
            train += " (verification pairs)"
        if last and all("acc_2nd" in h for h in last):
            train += f" (2nd presentation {100 * sum(h['acc_2nd'] for h in last) / len(last):.1f} %)"
        rows.append({"run": ck.parent.name, "step": step, "train_h": wall / 3600, "s_per_step": wall / max(step, 1),
                     "train": train,
                     "val": f"{100 * vals[-1][1]:.2f} % at {vals[-1][0]:,}" if vals else "–",
                     "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ck.stat().st_mtime))})
    return rows


def main() -> None:
    runs = Path(os.environ.get("MLCORE_RUNS", Path.home() / ".cache" / "mlcore" / "runs"))
    print("| run | step | training | s/step | training accuracy or reward | latest validation | checkpoint written |")
    print("|---|---|---|---|---|---|---|")
    for r in run_rows(runs):
        print(f"| {r['run']} | {r['step']:,} | {r['train_h']:.2f} h | {r['s_per_step']:.2f} | {r['train']} | {r['val']} | "
              f"{r['written']} |")


if __name__ == "__main__":
    main()
