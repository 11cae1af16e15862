"""mlcore.book.plotting: one colour and marker per method, found under the names records and tables use."""
from types import SimpleNamespace

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mlcore.book import plotting
from mlcore.book.plotting import METHOD_STYLES, colour, marker, style
from mlcore.data import Episode
from mlcore.registry import learners


def test_no_two_methods_look_alike():
    seen: dict[tuple[str, str], str] = {}
    for method, look in METHOD_STYLES.items():
        if method == "pretrained_linear":  # the pretrained classifier with its default (linear) probe
            assert look == METHOD_STYLES["pretrained"]
            continue
        assert look not in seen, f"{method} and {seen.get(look)} are both drawn as {look}"
        seen[look] = method


def test_every_registered_method_has_a_style():
    assert set(learners()) <= set(METHOD_STYLES)


@pytest.mark.parametrize("name, key", [("UCB1", "ucb1"), ("epsilon-greedy", "epsilon_greedy"),
                                       ("RL²", "rl2"), ("Matching FCE", "matching_fce"), ("ProtoNet", "protonet")])
def test_names_from_records_and_tables_are_found(name, key):
    assert style(name) == {"color": METHOD_STYLES[key][0], "marker": METHOD_STYLES[key][1]}
    assert (colour(name), marker(name)) == METHOD_STYLES[key]


def test_unknown_method_says_where_to_add_it():
    with pytest.raises(ValueError, match="METHOD_STYLES"):
        style("my_new_method")


# ------------------------------------------------------------------ the figures


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_show_images_lays_out_rows_titles_and_labels():
    rows = [[torch.zeros(1, 5, 5), torch.ones(5, 5)], [torch.full((1, 5, 5), 0.5)]]
    fig = plotting.show_images(rows, titles=[["a", "b"], None], row_labels=["top", "bottom"], suptitle="grid")
    axes = fig.axes
    assert len(axes) == 4  # 2 x 2 grid; the short row leaves its last cell blank
    assert [len(ax.images) for ax in axes] == [1, 1, 1, 0]
    assert [ax.get_title() for ax in axes[:2]] == ["a", "b"]
    assert axes[0].get_ylabel() == "top" and axes[2].get_ylabel() == "bottom"
    assert fig._suptitle.get_text() == "grid"
    assert axes[1].images[0].get_array().shape == (5, 5)  # (1, H, W) and (H, W) both drawn as H x W


def test_show_episode_draws_support_rows_then_queries():
    ways, shots, queries = 3, 2, 4
    ep = Episode(torch.rand(1, ways * shots, 1, 6, 6), torch.arange(ways).repeat_interleave(shots)[None],
                 torch.rand(1, ways * queries, 1, 6, 6), torch.arange(ways).repeat_interleave(queries)[None],
                 ways, shots, queries)
    fig = plotting.show_episode(ep, "episode", max_queries=3)
    axes = fig.axes
    assert len(axes) == (shots + 3) * ways
    assert [ax.get_ylabel() for ax in axes[::ways]] == ["support 1", "support 2", "query 1", "query 2", "query 3"]
    assert [ax.get_title() for ax in axes[:ways]] == ["y=0", "y=1", "y=2"]
    # column c shows class c: the first query row of class 1 is query 0 of class 1
    assert torch.equal(torch.as_tensor(axes[shots * ways + 1].images[0].get_array().data),
                       ep.query_x[0, queries, 0])


def _traits_record():
    shots = [1, 5]
    methods = {key: {str(k): {"accuracy": 0.5 + 0.1 * i + 0.01 * k, "ci95": 0.02} for k in shots}
               for i, key in enumerate(("scratch", "protonet"))}
    return SimpleNamespace(ways=5, metrics={"shots": shots, "methods": methods})


def test_accuracy_vs_shots_draws_one_styled_line_per_method_and_chance():
    rec = _traits_record()
    fig = plotting.accuracy_vs_shots(rec, {"scratch": "from scratch", "protonet": "ProtoNet"}, "title")
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["chance (20 %)", "from scratch", "ProtoNet"]
    proto = next(c for c in ax.containers if c.get_label() == "ProtoNet")
    assert list(proto.lines[0].get_ydata()) == pytest.approx([61.0, 65.0])
    assert proto.lines[0].get_color() == plotting.colour("protonet")
    assert ax.get_xscale() == "log" and ax.get_title() == "title"
    plt.close(fig)
    ax = plotting.accuracy_vs_shots(rec, {"protonet": "ProtoNet"}, "zoomed", chance=False).axes[0]
    assert ax.get_legend_handles_labels()[1] == ["ProtoNet"]
    assert ax.get_ylim()[0] > 50  # no chance line pulling the axis down to 20 %


def test_arm_rank_bars_stacks_rank_fractions_to_one():
    means = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    rank = means.argsort(-1, descending=True).argsort(-1)
    best = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]])  # always the best arm
    mixed = torch.tensor([[0, 2, 1, 1], [1, 2, 0, 0]])
    fig = plotting.arm_rank_bars({"best": best, "mixed": mixed}, rank, arms=3)
    ax_best, ax_mixed = fig.axes
    assert "100%" in ax_best.get_title() and ax_mixed.get_title().startswith("mixed")
    heights = torch.tensor([[p.get_height() for p in c] for c in ax_mixed.containers])  # (ranks, pulls)
    assert torch.allclose(heights.sum(0), torch.ones(4))
    assert heights[0].tolist() == [0.0, 0.0, 1.0, 1.0]  # pulls 3 and 4 hit the best arm in both trials


def test_ratio_lines_one_line_per_series_and_the_parity_line():
    _, ax = plt.subplots()
    plotting.ratio_lines(ax, {"graph": {1: 1.4, 2: 1.8}, "time": {2: 1.2, 1: 1.1}}, "steps", "ratio", "t")
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines[:2]] == ["graph", "time"]
    assert list(lines[1].get_xdata()) == [1, 2] and list(lines[1].get_ydata()) == [1.1, 1.2]
    assert list(lines[2].get_ydata()) == [1.0, 1.0]  # the dotted "costs the same" line
    assert ax.get_legend() is not None


def test_two_domains_draws_each_row_of_images_under_its_caption():
    top, bottom = torch.rand(4, 6, 6), torch.zeros(4, 6, 6)
    fig = plotting.two_domains(top, bottom, "training domain", "new domain")
    axes = fig.axes
    assert len(axes) == 8 and all(len(ax.images) == 1 and not ax.axison for ax in axes)
    assert torch.equal(torch.as_tensor(axes[2].images[0].get_array().data), top[2])  # row 1 is `top`, in order
    assert torch.equal(torch.as_tensor(axes[4 + 3].images[0].get_array().data), bottom[3])
    assert [t.get_text() for t in fig.texts] == ["training domain", "new domain"]


def test_ablation_bars_one_bar_per_variant_and_random_play():
    variants = {"full": {"mean_total_reward": 6.6, "ci95": 0.1}, "no reward": {"mean_total_reward": 5.0, "ci95": 0.2},
                "no memory": {"mean_total_reward": 5.2, "ci95": 0.2}, "fourth": {"mean_total_reward": 4.0, "ci95": 0.3}}
    fig = plotting.ablation_bars(variants, "reward", "ablations", random_reward=5.0)
    ax = fig.axes[0]
    bars = ax.patches
    assert [p.get_width() for p in bars] == [6.6, 5.0, 5.2, 4.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(variants)
    assert len({p.get_facecolor() for p in bars}) == 4  # more variants than the first three colours
    assert list(ax.get_lines()[-1].get_xdata()) == [5.0, 5.0]  # random play, dotted
    assert ax.get_legend_handles_labels()[1] == ["random play"]
    assert ax.get_xlabel() == "reward" and ax.get_title() == "ablations"
    plt.close(fig)
    ax = plotting.ablation_bars(variants, "reward", "ablations").axes[0]
    assert ax.get_legend() is None and not ax.get_lines()
