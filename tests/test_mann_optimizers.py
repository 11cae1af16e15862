"""benchmarks/mann_optimizers.py: the variants are the paper's recipe at two learning rates; collect keeps their curves."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "mann_optimizers.py"
_spec = importlib.util.spec_from_file_location("mann_optimizers", _path)
mo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mo)


def test_variants_differ_only_in_learning_rate_and_length():
    (a, *_), (b, *_) = mo.VARIANTS["rmsprop_1e-4"], mo.VARIANTS["rmsprop_1e-3"]
    assert {k: v for k, v in a.items() if k not in ("lr", "steps")} == \
           {k: v for k, v in b.items() if k not in ("lr", "steps")}
    assert (a["optimizer"], a["lr"], a["steps"]) == ("rmsprop", 1e-4, 100_000)  # Santoro et al.'s
    from mlcore.memory.mann import check_augment

    check_augment(a["extra"]["augment"])  # a valid augmentation for the sampler
    (m, *_) = mo.VARIANTS["rmsprop_1e-4_momentum_0.9"]
    assert m["lr"] == 1e-4 and m["extra"]["optimizer_args"] == {"momentum": 0.9}
    assert {k: v for k, v in m["extra"].items() if k != "optimizer_args"} == a["extra"]


def test_collect_keeps_curves_and_how_far_each_run_got(tmp_path):
    _, _, records, name = mo.VARIANTS["rmsprop_1e-3"]
    rec = {"config": {"recipe": {"steps": 2500}, "time_limited": {"planned_steps": 6000, "steps_run": 2500}},
           "metrics": {"train_curve": [{"step": 50, "acc": 0.2, "acc_2nd": 0.2}, {"step": 2500, "acc": 0.4,
                                                                                    "acc_2nd": 0.45}],
                       "by_instance": [0.4, 0.6]},
           "train_wall_s": 900.0, "git_commit": "abc", "hardware": {"cpu_threads": 1}, "created": "2026-11-30"}
    (tmp_path / records).mkdir()
    (tmp_path / records / f"{name}_5w1s.json").write_text(json.dumps(rec))
    out = tmp_path / "out.json"
    result = mo.collect(tmp_path, out)
    row = json.loads(out.read_text())["variants"]["rmsprop_1e-3"]
    assert result["variants"]["rmsprop_1e-3"] == row and "rmsprop_1e-4" not in result["variants"]
    assert (row["updates"], row["planned_updates"]) == (2500, 6000)
    assert row["train_curve"][-1]["acc_2nd"] == 0.45 and row["overrides"]["lr"] == 1e-3
    # a last row of a single update (a run finished by a one-step call) is dropped from the curve
    rec["metrics"]["train_curve"].append({"step": 2501, "acc": 0.1, "acc_2nd": 0.1})
    (tmp_path / records / f"{name}_5w1s.json").write_text(json.dumps(rec))
    assert mo.collect(tmp_path, out)["variants"]["rmsprop_1e-3"]["train_curve"][-1]["step"] == 2500
    with pytest.raises(SystemExit, match="run them first"):
        mo.collect(tmp_path / "empty", tmp_path / "none.json")


def test_run_refuses_a_non_positive_time_limit(capsys):
    with pytest.raises(SystemExit):
        mo.main(["run", "rmsprop_1e-3", "--hours", "0"])
    assert "--hours must be > 0" in capsys.readouterr().err
