"""mlcore.book.records: records and benchmark files as the chapters read them."""
import json

from mlcore.book import records


def test_reference_says_when_a_record_is_missing(tmp_path, capsys):
    assert records.reference("nothing_here", tmp_path) is None
    assert "nothing_here: reference record not yet produced" in capsys.readouterr().out


def test_benchmark_names_the_command_that_writes_a_missing_file(tmp_path, capsys):
    assert records.benchmark("engineering_cuda", "python benchmarks/engineering.py --device cuda", tmp_path) is None
    out = capsys.readouterr().out
    assert "engineering_cuda.json" in out and "`python benchmarks/engineering.py --device cuda`" in out
    assert records.benchmark("engineering_cuda", "cmd", tmp_path, quiet=True) is None
    assert capsys.readouterr().out == ""
    (tmp_path / "b.json").write_text(json.dumps({"rows": [1]}))
    assert records.benchmark("b", "cmd", tmp_path) == {"rows": [1]}


def _row(steps, batch, fo, ckpt, ms):
    return {"inner_steps": steps, "meta_batch": batch, "first_order": fo, "checkpoint": ckpt, "step_ms": ms}


def test_memory_rows_divide_each_time_by_its_neighbouring_peer():
    rows = [_row(1, 4, False, False, 300.0), _row(1, 4, True, False, 100.0),
            _row(2, 4, True, False, 100.0), _row(1, 2, False, False, 50.0),  # sweep row: no first-order neighbour
            _row(2, 4, False, False, 999.0),                   # its first-order peer is two rows away: not paired
            _row(3, 4, False, False, 200.0), _row(3, 4, False, True, 500.0)]
    out = records.memory_rows(rows)
    assert [(r["vs"], r["time_ratio"]) for r in out] == [
        ("first order", 3.0), (None, None), (None, None), (None, None), (None, None), (None, None),
        ("no checkpoint", 2.5)]  # the checkpointed row against the plain row measured just before it
    assert out[0]["step_ms"] == 300.0  # the rows keep their fields


def test_order_ratios_pair_second_with_first_order_per_inner_steps():
    rows = [{"inner_steps": s, "first_order": fo, "peak": p}
            for s, fo, p in ((1, False, 300.0), (1, True, 200.0), (2, False, 500.0), (2, True, 250.0),
                             (5, False, 900.0))]  # 5 steps has no first-order peer
    assert records.order_ratios(rows, "peak") == {1: 1.5, 2: 2.0}
