"""benchmarks/ledger.py: one row per run directory, from its last.pt, with the quantity the run is trained on."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "ledger.py"
_spec = importlib.util.spec_from_file_location("ledger", _path)
ledger = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ledger)


def _run(runs: Path, name: str, step: int, history: list[dict]) -> None:
    (runs / name).mkdir(parents=True)
    torch.save({"step": step, "wall_s": 2.0 * step, "history": history}, runs / name / "last.pt")


def test_ledger_rows_show_accuracy_validation_and_rl2_reward(tmp_path):
    _run(tmp_path, "protonet_5w1s", 10, [{"step": s, "acc": 0.5 + s / 100} for s in range(1, 11)]
         + [{"step": 10, "val_accuracy": 0.9712}])
    _run(tmp_path, "rl2_mdp_n10_full", 4, [{"step": s, "mean_total_reward": 100.0 + s} for s in range(1, 5)])
    rows = {r["run"]: r for r in ledger.run_rows(tmp_path)}
    assert rows["protonet_5w1s"]["train"] == "58.0 %"  # mean of the last five logged rows: steps 6-10
    assert rows["protonet_5w1s"]["val"] == "97.12 % at 10"
    assert rows["protonet_5w1s"]["s_per_step"] == 2.0
    assert rows["rl2_mdp_n10_full"]["train"] == "reward 102.5 per trial"
    assert rows["rl2_mdp_n10_full"]["val"] == "–"
