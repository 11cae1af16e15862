"""benchmarks/siamese_aggregate.py: one network, two rules for combining shots, scored on the record's own episodes."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mlcore.experiments.siamese_omniglot import reproduce

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "siamese_aggregate.py"
_spec = importlib.util.spec_from_file_location("siamese_aggregate", _path)
sa = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sa)


def test_the_records_rule_gives_its_number_back_and_the_gap_is_paired(tmp_path):
    paths = reproduce("smoke", out_dir=tmp_path, test_episodes=4, steps=2, progress=False)
    row = sa.score_rules(next(p for p in paths if p.stem.startswith("siamese_omniglot_5w5s")))
    assert row["reproduces_record"] is True and row["record_rule"] == "max"
    rules = row["rules"]
    assert row["mean_logit_minus_max"]["accuracy"] == pytest.approx(
        rules["mean_logit"]["accuracy"] - rules["max"]["accuracy"], abs=1e-6)
    assert sum(row["episodes_where"].values()) <= row["episodes"] == 4
