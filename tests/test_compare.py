"""Chapter 9's comparison code on synthetic records in a temporary folder (no training, < 5 s)."""
from __future__ import annotations

import json
import math
import random

import pytest

from mlcore import compare
from mlcore.engine import EVAL_SEED
from mlcore.results import Record, save_record


def make_record(tmp_path, name, method, ways, shots, per_episode, *, budget="full", steps=100, train_s=10.0,
                queries=15, eval_seed=EVAL_SEED, within=False, split="vinyals/test", hardware=None):
    acc = sum(per_episode) / len(per_episode)
    rec = Record(name=name, method=method, dataset="omniglot", split=split, ways=ways, shots=shots, accuracy=acc,
                 ci95=0.01, episodes=len(per_episode), seed=0,
                 config={"recipe": {"steps": steps, "test_queries": queries, "within_alphabet": within,
                                    "meta_batch": 4},
                         "eval_seed": eval_seed},
                 metrics={"per_episode": per_episode}, hardware=hardware or {"cpu_threads": 2},
                 train_wall_s=train_s, budget=budget)
    save_record(rec, tmp_path)
    return json.loads((tmp_path / f"{name}.json").read_text())


def episodes(n, p, seed):
    rng = random.Random(seed)
    return [round(min(1.0, max(0.0, p + rng.uniform(-0.1, 0.1))), 4) for _ in range(n)]


def test_grid_marks_missing_and_never_fills_from_elsewhere(tmp_path):
    make_record(tmp_path, "protonet_omniglot_5w1s", "protonet", 5, 1, episodes(50, 0.9, 0))
    # a smoke run of the same setting must not replace the reference record
    make_record(tmp_path, "protonet_omniglot_5w1s_smoke", "protonet", 5, 1, episodes(50, 0.5, 1), budget="smoke")
    (tmp_path / "not_a_record.json").write_text(json.dumps({"hello": 1}))
    recs = compare.classification_records(tmp_path)
    rows = compare.comparison_grid(recs)
    by = {(r["method_id"], r["setting"]): r for r in rows}
    cell = by[("protonet", "5w1s")]
    assert cell["record"] == "protonet_omniglot_5w1s"
    assert cell["steps"] == 100 and cell["paper"] == "98.8"
    assert math.isclose(cell["gap"], 100 * cell["accuracy"] - 98.8)
    assert by[("protonet", "20w5s")]["ours"] == compare.MISSING
    assert by[("protonet", "20w5s")]["accuracy"] is None
    # every published method shows up, with its paper number and a "missing" cell
    assert by[("maml", "5w1s")]["ours"] == compare.MISSING and by[("maml", "5w1s")]["paper"] == "98.7 ± 0.4"
    assert by[("maml", "5w1s")]["paper_steps"] == 60_000
    assert len(rows) == len({r["method_id"] for r in rows}) * 4


def test_grid_uses_smoke_record_only_when_nothing_else_and_labels_it(tmp_path):
    make_record(tmp_path, "maml_omniglot_5w1s_smoke", "maml", 5, 1, episodes(20, 0.6, 0), budget="smoke")
    rows = compare.comparison_grid(compare.classification_records(tmp_path))
    cell = next(r for r in rows if r["method_id"] == "maml" and r["setting"] == "5w1s")
    assert cell["ours"].endswith("(smoke)")


def test_record_methods_merge_with_published_aliases(tmp_path):
    make_record(tmp_path, "relationnet_omniglot_5w1s", "relationnet", 5, 1, episodes(20, 0.9, 0))
    rows = compare.comparison_grid(compare.classification_records(tmp_path))
    ids = {r["method_id"] for r in rows}
    assert "relationnet" in ids and "relation" not in ids  # one row set for the Relation Network


def test_paired_difference_matches_hand_computation(tmp_path):
    a_eps, b_eps = episodes(200, 0.9, 0), episodes(200, 0.85, 1)
    a = make_record(tmp_path, "a", "protonet", 5, 1, a_eps)
    b = make_record(tmp_path, "b", "maml", 5, 1, b_eps)
    res = compare.paired(a, b)
    d = [x - y for x, y in zip(a_eps, b_eps)]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    assert math.isclose(res["mean_difference"], mean, abs_tol=1e-9)
    assert math.isclose(res["ci95"], 1.96 * sd / math.sqrt(len(d)), rel_tol=1e-6)
    assert res["wins"] + res["ties"] + res["losses"] == 200
    assert res["verdict"] == "Prototypical Networks better"  # 5 points apart, CI ~1 point
    assert res["sign_test_p"] < 1e-6 and res["wilcoxon_p"] < 1e-6


def test_pairing_is_tighter_than_unpaired_when_episodes_share_difficulty(tmp_path):
    rng = random.Random(3)
    hard = [rng.uniform(0.5, 1.0) for _ in range(300)]  # episode difficulty both methods see
    a = make_record(tmp_path, "a", "protonet", 5, 1, [round(h, 4) for h in hard])
    b = make_record(tmp_path, "b", "maml", 5, 1, [round(max(0.0, h - 0.01 + rng.uniform(-0.01, 0.01)), 4)
                                                  for h in hard])
    res = compare.paired(a, b)
    assert res["ci95"] < res["unpaired_ci95"] / 5
    assert res["ci95"] < abs(res["mean_difference"])  # a 1-point gap is detectable only when paired
    assert res["unpaired_ci95"] > abs(res["mean_difference"])


def test_identical_records_are_not_different(tmp_path):
    eps = episodes(100, 0.8, 0)
    a = make_record(tmp_path, "a", "protonet", 5, 1, eps)
    b = make_record(tmp_path, "b", "maml", 5, 1, eps)
    res = compare.paired(a, b)
    assert res["mean_difference"] == 0 and res["ties"] == 100
    assert res["sign_test_p"] == 1.0 and res["verdict"] == "no detectable difference"


@pytest.mark.parametrize("change, word", [({"queries": 5}, "test queries"), ({"eval_seed": 1}, "eval seed"),
                                          ({"within": True, "split": "evaluation"}, "split")])
def test_pairing_refuses_different_episodes(tmp_path, change, word):
    a = make_record(tmp_path, "a", "protonet", 5, 1, episodes(50, 0.9, 0))
    b = make_record(tmp_path, "b", "maml", 5, 1, episodes(50, 0.9, 1), **change)
    with pytest.raises(ValueError, match=word):
        compare.paired(a, b)


def test_pairing_refuses_records_without_per_episode(tmp_path):
    a = make_record(tmp_path, "a", "protonet", 5, 1, episodes(50, 0.9, 0))
    b = dict(a, name="b", metrics={})
    with pytest.raises(ValueError, match="per-episode"):
        compare.paired(a, b)


def test_sign_test_exact_values():
    assert compare.sign_test_p(0, 0) == 1.0
    assert math.isclose(compare.sign_test_p(5, 0), 2 / 32)
    assert math.isclose(compare.sign_test_p(3, 3), 1.0)
    # 9 wins 1 loss: 2 * (1 + 10) / 1024
    assert math.isclose(compare.sign_test_p(9, 1), 22 / 1024)


def test_paired_table_pairs_within_settings_only(tmp_path):
    make_record(tmp_path, "p5", "protonet", 5, 1, episodes(50, 0.9, 0))
    make_record(tmp_path, "m5", "maml", 5, 1, episodes(50, 0.8, 1))
    make_record(tmp_path, "r5", "reptile", 5, 1, episodes(50, 0.7, 2))
    make_record(tmp_path, "p20", "protonet", 20, 1, episodes(50, 0.9, 3))
    make_record(tmp_path, "m20q", "maml", 20, 1, episodes(50, 0.8, 4), queries=5)
    rows = compare.paired_table(compare.classification_records(tmp_path))
    five = [r for r in rows if r["setting"] == "5w1s"]
    assert len(five) == 3 and all("skipped" not in r for r in five)
    assert five[0]["a"] == "p5"  # ordered best first, so differences read "better minus worse"
    twenty = [r for r in rows if r["setting"] == "20w1s"]
    assert len(twenty) == 1 and "test queries" in twenty[0]["skipped"]
    assert all(set(compare.fmt_paired(r)) >= {"pair", "difference", "verdict"} for r in rows)


def test_lake_rows_and_cost_points(tmp_path):
    make_record(tmp_path, "siamese_lake", "siamese", 20, 1, episodes(40, 0.7, 0), within=True, split="evaluation",
                train_s=300.0)
    make_record(tmp_path, "p5", "protonet", 5, 1, episodes(40, 0.9, 1), train_s=12.0,
                hardware={"gpu": "NVIDIA H200", "cpu_threads": 16})
    recs = compare.classification_records(tmp_path)
    lake = compare.lake_rows(recs)
    assert lake[0]["record"] == "siamese_lake"
    assert {r["who"] for r in lake} >= {"human", "convolutional Siamese net (Koch et al.)"}
    assert "92" in next(r["accuracy"] for r in lake if r["who"].startswith("convolutional"))
    sources = {r["who"]: r["source"] for r in lake if r["record"] is None}
    assert sources["human"] == "Lake et al. 2015" and sources["1-nearest-neighbour on pixels"] == "Lake et al. 2013"
    # Lake rows never enter the Vinyals-split grid
    assert all(r["record"] != "siamese_lake" for r in compare.comparison_grid(recs))
    pts = compare.cost_points(recs)
    assert {p["record"] for p in pts} == {"siamese_lake", "p5"}
    assert next(p for p in pts if p["record"] == "p5")["hardware"] == "NVIDIA H200"


def test_plot_runs_headless(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    make_record(tmp_path, "p5", "protonet", 5, 1, episodes(40, 0.9, 1), train_s=12.0)
    ax = compare.plot_cost_accuracy(compare.cost_points(compare.classification_records(tmp_path)))
    assert ax.get_xscale() == "log"


def test_html_table_escapes_and_marks_missing():
    out = compare.html_table([{"a": "<b>", "b": None}], [("a", "A & B"), ("b", "second")])
    assert "&lt;b&gt;" in out and "A &amp; B" in out and "<td>–</td>" in out
    assert out.startswith('<div style="overflow-x:auto">')


def test_holm_matches_hand_computation():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone: 0.06)
    adjusted = compare.holm([0.01, 0.04, 0.03, 0.005])
    assert all(math.isclose(x, y) for x, y in zip(adjusted, [0.03, 0.06, 0.06, 0.02]))
    assert [x < 0.05 for x in adjusted] == [True, False, False, True]
    assert compare.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert compare.holm([]) == [] and compare.holm([0.2]) == [0.2]  # one test: no correction
    with pytest.raises(ValueError):
        compare.holm([0.1, float("nan")])


def test_mean_difference_p_agrees_with_the_ci():
    assert math.isclose(compare.mean_difference_p(1.96, 1.96), 0.05, rel_tol=1e-3)  # CI just touches 0
    assert compare.mean_difference_p(0.0, 0.1) == 1.0
    assert compare.mean_difference_p(0.3, 0.1) < 1e-6


def test_holm_table_corrects_the_family(tmp_path):
    make_record(tmp_path, "p5", "protonet", 5, 1, episodes(200, 0.9, 0))
    make_record(tmp_path, "m5", "maml", 5, 1, episodes(200, 0.8, 1))
    make_record(tmp_path, "r5", "reptile", 5, 1, episodes(200, 0.797, 2))
    rows = compare.holm_table(compare.paired_table(compare.classification_records(tmp_path)))
    assert len(rows) == 3 and all(r["holm_p"] >= r["p"] for r in rows)
    expected = compare.holm([r["p"] for r in rows])
    assert all(math.isclose(x, r["holm_p"]) for x, r in zip(expected, rows))
    by = {(r["a"], r["b"]): r for r in rows}
    assert by[("p5", "m5")]["holm_verdict"] == "Prototypical Networks better at these budgets"
    assert by[("m5", "r5")]["holm_verdict"] == "no detectable difference at these budgets"
    assert compare.fmt_paired(by[("p5", "m5")])["verdict"].endswith("at these budgets")


def test_under_protocol_swaps_in_that_protocols_scores_and_leaves_out_unscored_records():
    from mlcore import compare

    def rec(name, method, book, paper=None):
        ps = {"book": {"accuracy": sum(book) / len(book), "ci95": 0.01, "episodes": len(book), "per_episode": book,
                       "protocol": {"batch_norm": "per_query", "queries": 15}}}
        if paper is not None:
            ps["paper"] = {"accuracy": sum(paper) / len(paper), "ci95": 0.02, "episodes": len(paper),
                           "per_episode": paper, "protocol": {"batch_norm": "batch", "queries": "shots"}}
        return {"name": name, "method": method, "dataset": "omniglot", "split": "vinyals/test", "ways": 5,
                "shots": 1, "accuracy": 0.99, "ci95": 0.0, "config": {"eval_seed": 2017, "recipe": {"test_queries": 15}},
                "metrics": {"per_episode": [0.99] * len(book), "protocols": ps}}

    a = rec("maml_omniglot_5w1s", "maml", [1.0, 0.8, 0.9, 1.0], paper=[1.0, 1.0])
    b = rec("protonet_omniglot_5w1s", "protonet", [0.8, 0.8, 0.8, 0.9])
    c = {**rec("x", "matching", [0.5]), "metrics": {}}  # never scored under the protocols
    book = compare.under_protocol([a, b, c], "book")
    assert [r["name"] for r in book] == ["maml_omniglot_5w1s", "protonet_omniglot_5w1s"]
    assert book[0]["accuracy"] == pytest.approx(0.925) and book[0]["metrics"]["per_episode"] == [1.0, 0.8, 0.9, 1.0]
    assert a["accuracy"] == 0.99  # the original record is untouched
    pair = compare.paired(book[0], book[1])
    assert pair["mean_difference"] == pytest.approx(0.1)
    paper = compare.under_protocol([a, b], "paper")
    assert [r["name"] for r in paper] == ["maml_omniglot_5w1s"]
    assert paper[0]["config"]["recipe"]["test_queries"] == 1  # "shots" resolved to the record's shots
    # two records under different protocols are never paired: their episodes differ (queries per class)
    ok, why = compare.same_episodes(paper[0], book[1])
    assert not ok and "queries" in why
    with pytest.raises(ValueError, match="protocol must be one of"):
        compare.under_protocol([a], "transductive")
    rows = compare.transduction_rows([a, b])
    assert [r["record"] for r in rows] == ["maml_omniglot_5w1s"] and rows[0]["gain"] == pytest.approx(7.5)


def test_training_curves_smooth_keep_episode_accuracy_and_prefer_the_papers_protocol(tmp_path):
    rec = make_record(tmp_path, "maml_omniglot_5w1s", "maml", 5, 1, [0.9, 1.0])
    rec["metrics"]["train_curve"] = [{"step": 50 * (i + 1), "acc": a} for i, a in enumerate([0.5, 0.7, 0.9, 0.9])]
    rec["metrics"]["protocols"] = {"book": {"accuracy": 0.95}, "paper": {"accuracy": 0.99}}
    pairs = make_record(tmp_path, "siamese_omniglot_5w1s", "siamese", 5, 1, [1.0])
    pairs["metrics"]["train_curve"] = [{"step": s, "pair_acc": 0.9} for s in range(1, 9)]
    (c,) = compare.training_curves([rec, pairs], smooth=2)
    assert c["steps"] == [50, 100, 150, 200]
    assert c["train_accuracy"] == pytest.approx([0.5, 0.6, 0.8, 0.9])  # moving average over two logged rows
    assert (c["test_accuracy"], c["test_protocol"], c["paper_accuracy"]) == (0.99, "paper", 98.7)
    import matplotlib

    matplotlib.use("Agg")
    axes = compare.plot_training_curves([c])
    assert len(axes) == 1 and axes[0].get_title() == "5w1s"
