"""benchmarks/relation_schedule.py: the paired difference it reports, and a clear stop when a run has not ended."""
import pytest


def test_paired_difference_is_the_mean_of_per_episode_differences_with_its_interval(benchmark_script):
    m = benchmark_script("relation_schedule")
    d = m.paired([0.9, 0.8, 1.0, 0.7], [1.0, 0.8, 1.0, 0.9])
    assert d["mean"] == pytest.approx(0.075) and d["episodes"] == 4
    assert d["ci95"] == pytest.approx(1.96 * 0.0957427 / 2, rel=1e-4)  # sample sd of (0.1, 0, 0, 0.2)
    with pytest.raises(ValueError, match="equally long"):
        m.paired([1.0], [1.0, 0.5])


def test_collect_stops_with_a_clear_message_when_a_record_is_missing(tmp_path, benchmark_script):
    with pytest.raises(SystemExit, match="no record for relationnet_omniglot_5w1s, "):
        benchmark_script("relation_schedule").collect(tmp_path, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()
