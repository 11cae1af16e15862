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
