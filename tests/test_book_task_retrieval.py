"""The chapters' tables and figures of the task-retrieval study, on a smoke run's metrics."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from mlcore.book import task_retrieval as tr
from mlcore.experiments import task_similarity as study


@pytest.fixture(scope="module")
def smoke():
    m = study.run_analysis("smoke", seed=0, device="cpu")
    m["_bg"], m["_ev"] = m["_models"]["bg"], m["_models"]["ev"]
    del m["_models"]
    return m


def test_tables_name_every_row(smoke):
    html = tr.table(smoke, "transfer", "background").data
    assert "same-alphabet source (label oracle)" in html and "pooled" in html
    assert html.count("<tr>") == len(smoke["transfer_tables"]["background"]) + 1
    for which in ("retrieval", "tests", "fine-tuning", "fine-tuning tests"):
        assert "<table" in tr.table(smoke, which).data
    with pytest.raises(ValueError, match="which must be"):
        tr.table(smoke, "nonsense")


def test_targets_are_measured_for_both_recipes(smoke):
    for recipe in ("frozen", "fine-tune"):
        got = tr.targets_met(smoke, recipe)
        assert len(got) == 3 and all(isinstance(met, bool) for met, _ in got.values())
    top3 = smoke["retrieval"]["all"][tr.HEADLINE]["in_top3_most_helpful"]
    assert tr.targets_met(smoke)["among the 3 most helpful sources at least 40 % of the time"][1] == \
        f"{100 * top3:.0f} %"
    with pytest.raises(ValueError, match="recipe must be"):
        tr.targets_met(smoke, "both")


def test_headline_measures_give_the_values_without_verdicts(smoke):
    for recipe in ("frozen", "fine-tune"):
        got, targets = tr.headline_measures(smoke, recipe), tr.targets_met(smoke, recipe)
        assert list(got.values()) == [value for _, value in targets.values()]
        assert not any("met" in k or "at least" in k for k in got)
    with pytest.raises(ValueError, match="recipe must be"):
        tr.headline_measures(smoke, "both")


def test_targets_met_either_side_of_their_thresholds():
    """Hand-made metrics just inside each target (met) and just outside it (missed); the words give the value."""
    def metrics(head=0.80, same=0.805, gain=0.021, p=0.04, top3=0.4):
        return {"transfer_tables": {"background": {f"retrieved by {tr.HEADLINE}": {"accuracy": head},
                                                   "same-alphabet source (label oracle)": {"accuracy": same}}},
                "paired_tests": {"all": {f"{tr.HEADLINE} - random source": {"mean_difference": gain, "holm_p": p}}},
                "retrieval": {"all": {tr.HEADLINE: {"in_top3_most_helpful": top3}}}}

    within, above, top = ("within 1 point of the same-alphabet source",
                          "at least 2 points above a random source, significant",
                          "among the 3 most helpful sources at least 40 % of the time")
    assert tr.targets_met(metrics()) == {within: (True, "-0.5 points"),
                                         above: (True, "+2.1 points, Holm p = 0.04"), top: (True, "40 %")}
    assert tr.targets_met(metrics(same=0.811))[within] == (False, "-1.1 points")
    # exactly on the thresholds, where float arithmetic lands a hair outside (100 * (0.80 - 0.81) < -1)
    assert tr.targets_met(metrics(same=0.81))[within] == (True, "-1.0 points")
    assert tr.targets_met(metrics(gain=0.02))[above][0] is True
    assert tr.targets_met(metrics(gain=0.019))[above] == (False, "+1.9 points, Holm p = 0.04")
    assert tr.targets_met(metrics(p=0.05))[above][0] is False  # significant means p < 0.05
    assert tr.targets_met(metrics(top3=0.39))[top] == (False, "39 %")


def test_figures_draw_what_the_record_holds(smoke):
    ax = tr.plot_retrieval_vs_sources(smoke, plt.figure().gca())
    assert len(ax.lines) == len(tr.RETRIEVERS) + 2
    assert list(ax.lines[0].get_xdata()) == smoke["retrieval_vs_sources"]["sizes"]
    ax = tr.plot_gain_vs_score(smoke, tr.HEADLINE, plt.figure().gca())
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == len(smoke["targets"]) * len(smoke["transfer_matrix"][0][0])
    fig = tr.plot_retrieved_grid(smoke, smoke["_bg"], smoke["_ev"], groups=(0, -1), top=2)
    assert len(fig.axes) == 2 * 3 * smoke["config"]["ways"]
    plt.close("all")
