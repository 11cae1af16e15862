"""benchmarks/batch_norm_stats.py: paired differences under each kind of statistics, and a clear stop on bad input."""
import pytest


def _scores(record, stored, precise, continued):
    return {"record": record, "stored": {"per_episode": stored}, "precise": {"per_episode": precise},
            "continued": [{"per_episode": c} for c in continued]}


def test_differences_pair_the_same_episodes_under_each_kind_of_statistics(benchmark_script):
    m = benchmark_script("batch_norm_stats")
    a = _scores("held", [1.0, 0.8, 0.9], [1.0, 0.9, 0.9], [[1.0, 0.8, 0.8], [0.9, 0.9, 0.9]])
    b = _scores("halved", [0.9, 0.7, 0.8], [1.0, 0.9, 1.0], [[1.0, 0.9, 0.8], [0.9, 0.9, 0.9]])
    d = m.summarise([a, b])["halved - held"]
    assert d["stored"]["mean"] == pytest.approx(-0.1) and d["stored"]["ci95"] == pytest.approx(0.0, abs=1e-12)
    assert d["precise"]["mean"] == pytest.approx(0.1 / 3)
    assert [c["mean"] for c in d["continued"]] == pytest.approx([0.1 / 3, 0.0])
    with pytest.raises(ValueError, match="equally long"):
        m.paired([1.0, 0.5], [1.0])


def test_a_missing_record_stops_before_anything_is_loaded(tmp_path, benchmark_script):
    with pytest.raises(SystemExit, match="no such record: .*nothing.json"):
        benchmark_script("batch_norm_stats").main([str(tmp_path / "nothing.json"), "--out", str(tmp_path / "o.json")])
    assert not (tmp_path / "o.json").exists()
