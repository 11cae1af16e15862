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


def test_replay_regenerates_a_runs_last_episodes_and_refuses_another_stream(tmp_path, benchmark_script):
    import torch

    from mlcore.metric.relation import RelationNet

    m = benchmark_script("batch_norm_stats")
    recipe = RelationNet.recipe(5, 1, "smoke")
    recipe.steps = 6
    learner = RelationNet.from_config(recipe.model)
    sampler = learner.make_train_sampler(recipe, torch.device("cpu"), 3)
    drawn = [ep for _, ep in zip(range(6), sampler)]
    tail = m.replay_tail(learner, recipe, 3, 2)
    assert len(tail) == 2 and all(torch.equal(a.query_x, b.query_x) for a, b in zip(tail, drawn[-2:]))
    torch.save({"sampler": sampler.state_dict()}, tmp_path / "last.pt")
    m.replay_tail(learner, recipe, 3, 2, tmp_path / "last.pt")  # the same stream: accepted
    with pytest.raises(SystemExit, match="do not end where"):
        m.replay_tail(learner, recipe, 4, 2, tmp_path / "last.pt")  # another seed's episodes


def test_survey_merges_records_keeps_no_episodes_and_refuses_other_settings(tmp_path, benchmark_script):
    """Two real records (the pretrained baseline, trained on class batches, and ProtoNet), a few episodes each."""
    import json
    from pathlib import Path

    m = benchmark_script("batch_norm_stats")
    results = Path(__file__).resolve().parents[1] / "results"
    out = tmp_path / "survey.json"
    small = ["--survey", "--episodes", "4", "--precise-episodes", "3", "--redraws", "1", "--continue-episodes", "2",
             "--out", str(out)]
    assert m.main([str(results / "pretrained_omniglot_5w1s.json"), *small]) == 0
    assert m.main([str(results / "protonet_omniglot_5w1s.json"), *small]) == 0
    d = json.loads(out.read_text())
    assert [r["record"] for r in d["records"]] == ["pretrained_omniglot_5w1s", "protonet_omniglot_5w1s"]
    for r in d["records"]:
        assert "per_episode" not in r["stored"] and "per_episode" not in r["precise"] and len(r["continued"]) == 1
        assert r["gain"] == r["precise"]["accuracy"] - r["stored"]["accuracy"]
    before = out.read_text()
    with pytest.raises(SystemExit, match="surveyed with"):
        m.main([str(results / "protonet_omniglot_5w1s.json"), *small[:-4], "--precise-episodes", "5",
                "--out", str(out)])
    assert out.read_text() == before


def test_a_checkpoint_that_no_longer_holds_the_records_weights_is_told_apart(benchmark_script):
    """The record's first per-episode scores are the probe: a perturbed network fails it, the record's passes."""
    from pathlib import Path

    import torch

    from mlcore.protocols import book_protocol
    from mlcore.results import load_record
    from mlcore.runs import load

    m = benchmark_script("batch_norm_stats")
    path = Path(__file__).resolve().parents[1] / "results" / "protonet_omniglot_5w1s.json"
    rec, learner = load_record(path), load(path, "cpu")
    book = rec.metrics["protocols"]["book"]
    assert m.reproduces_record(learner, book_protocol(learner), rec, book)
    with torch.no_grad():
        for bn in (x for x in learner.modules() if isinstance(x, torch.nn.BatchNorm2d)):
            bn.running_var.mul_(1.5)  # other statistics, same weights
    assert not m.reproduces_record(learner, book_protocol(learner), rec, book)
    assert not m.reproduces_record(learner, book_protocol(learner), rec, {**book, "per_episode": []})


def test_drop_removes_survey_entries_and_refuses_names_it_does_not_have(tmp_path, benchmark_script):
    import json

    m = benchmark_script("batch_norm_stats")
    out = tmp_path / "survey.json"
    out.write_text(json.dumps({"records": [{"record": "a"}, {"record": "b"}], "precise_episodes": 500}))
    assert m.main(["--survey", "--drop", "a", "--out", str(out)]) == 0
    assert [r["record"] for r in json.loads(out.read_text())["records"]] == ["b"]
    with pytest.raises(SystemExit, match="no entry for c; it has b"):
        m.main(["--survey", "--drop", "c", "--out", str(out)])
    with pytest.raises(SystemExit):
        m.main(["--drop", "b", "--out", str(out)])  # not a survey
    assert [r["record"] for r in json.loads(out.read_text())["records"]] == ["b"]
