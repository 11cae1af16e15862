"""One colour and one marker per method, the same in every figure of the book.

A chapter that compares methods draws each with :func:`style`::

    from mlcore.book.plotting import style

    ax.errorbar(shots, acc, yerr=ci, label=label, capsize=3, **style("protonet"))

so ProtoNet is a red diamond in chapter 2, in chapter 10 and wherever else it is plotted. Hues
follow the families (memory-based reds and oranges, optimization-based blues and purples,
metric-based greens, baselines greys and olives); no two methods share both colour and marker.
Names are matched without regard to case, spaces, hyphens or underscores, so ``"UCB1"``,
``"epsilon-greedy"`` and ``"matching_fce"`` are all found. The values are plain colour and marker strings
that any matplotlib call accepts.

Below the styles are the figures that several chapters draw, or that would make a chapter's cell long. Each
draws with pyplot, returns the ``matplotlib.figure.Figure`` and does not show it: the cell calls
``plt.show()``. matplotlib is imported inside them, so importing the styles costs nothing.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

#: method -> (colour, marker). Few-shot learners and baselines first, then the meta-RL policies.
METHOD_STYLES: dict[str, tuple[str, str]] = {
    # memory-based (chapter 5)
    "protonet": ("tab:red", "D"),
    "matching": ("tab:orange", "^"),
    "matching_fce": ("#ffbb78", "v"),
    "mann": ("tab:pink", "P"),
    # optimization-based (chapter 4)
    "maml": ("tab:blue", "o"),
    "fomaml": ("#aec7e8", "o"),
    "reptile": ("tab:purple", "*"),
    "anil": ("tab:cyan", "X"),
    "metasgd": ("#c5b0d5", "p"),
    # metric-based (chapter 3)
    "siamese": ("tab:green", "s"),
    "relationnet": ("#98df8a", "h"),
    # not meta-learned (chapters 2, 9, 10)
    "scratch": ("tab:gray", "s"),
    "pretrained": ("tab:olive", "o"),
    "pretrained_linear": ("tab:olive", "o"),
    "pretrained_centroid": ("#dbdb8d", "v"),
    "pixels": ("tab:brown", "x"),
    # meta-RL (chapters 6, 7, 10)
    "rl2": ("tab:red", "o"),
    "random": ("#7f7f7f", "."),
    "greedy": ("tab:brown", "v"),
    "epsilon_greedy": ("#c49c94", "^"),
    "ucb1": ("tab:blue", "s"),
    "thompson": ("tab:green", "^"),
    "ots": ("#98df8a", "v"),
    "gittins": ("tab:orange", "*"),
    "psrl": ("tab:purple", "s"),
    "opsrl": ("#c5b0d5", "d"),
    "ucrl2": ("#9edae5", "<"),
    "beb": ("tab:cyan", "d"),
}

#: names under which the same method appears in records and tables
ALIASES: dict[str, str] = {"rl²": "rl2", "relation": "relationnet", "relation_net": "relationnet",
                           "protonets": "protonet", "prototypical": "protonet", "meta_sgd": "metasgd",
                           "pretrained_centroids": "pretrained_centroid", "pixel_centroids": "pixels"}


def _key(method: str) -> str:
    k = str(method).strip().lower().replace("-", "_").replace(" ", "_")
    return ALIASES.get(k, k)


def style(method: str) -> dict[str, str]:
    """``{"color": ..., "marker": ...}`` of ``method``, to pass as ``**style(method)`` to a plot call.

    Raises ValueError for a method that has no style yet: add it to :data:`METHOD_STYLES` (one
    colour and marker the book uses for it everywhere) rather than picking one in the chapter.
    """
    key = _key(method)
    if key not in METHOD_STYLES:
        raise ValueError(f"no plotting style for method {method!r}; known: {sorted(METHOD_STYLES)}. "
                         "Add it to mlcore.book.plotting.METHOD_STYLES so every chapter draws it alike.")
    colour, marker = METHOD_STYLES[key]
    return {"color": colour, "marker": marker}


def colour(method: str) -> str:
    """The colour of ``method`` (see :func:`style`)."""
    return style(method)["color"]


def marker(method: str) -> str:
    """The marker of ``method`` (see :func:`style`)."""
    return style(method)["marker"]


# ------------------------------------------------------------------ figures


def show_images(rows: Sequence[Sequence], titles: Sequence | None = None, row_labels: Sequence[str] | None = None,
                size: float = 1.0, suptitle: str | None = None):
    """A grid of images, one list per row, ink dark on white (chapter 1).

    Each image is a tensor or array of shape ``(1, H, W)`` or ``(H, W)`` with values in [0, 1]; rows may be
    shorter than the longest one (their last cells stay blank). ``titles[i][j]`` titles image ``j`` of row ``i``
    (a row's entry may be None), ``row_labels[i]`` labels row ``i`` on the left.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows * 1.1), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(row):
                img = row[j].detach().float().cpu().numpy() if hasattr(row[j], "detach") else np.asarray(row[j])
                ax.imshow(np.squeeze(img), cmap="gray_r", vmin=0, vmax=1)
                if titles is not None and titles[i] is not None and j < len(titles[i]):
                    ax.set_title(titles[i][j], fontsize=8)
        if row_labels is not None:
            axes[i][0].set_ylabel(row_labels[i], fontsize=9, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def show_episode(ep, title: str, max_queries: int = 3):
    """The first task of an ``Episode``: its support set in the top rows (one column per class), then up to
    ``max_queries`` rows of queries of each class (chapter 1)."""
    n, k, q = ep.ways, ep.shots, ep.queries
    sx = ep.support_x[0].view(n, k, *ep.support_x.shape[2:])
    qx = ep.query_x[0].view(n, q, *ep.query_x.shape[2:])
    rows = [[sx[c, s] for c in range(n)] for s in range(k)]
    rows += [[qx[c, j] for c in range(n)] for j in range(min(q, max_queries))]
    labels = [f"support {s + 1}" if k > 1 else "support" for s in range(k)]
    labels += [f"query {j + 1}" for j in range(min(q, max_queries))]
    return show_images(rows, titles=[[f"y={c}" for c in range(n)]] + [None] * (len(rows) - 1), row_labels=labels,
                       size=0.85 if n <= 5 else 0.55, suptitle=title)


def accuracy_vs_shots(rec, methods: Mapping[str, str], title: str, chance: bool = True):
    """Accuracy ± 95 % CI against shots, one line per method of ``methods`` (record key -> label), from a
    ``traits_accuracy_vs_shots`` record (chapters 2 and 10); chance is the dotted line, unless ``chance`` is False
    (the y axis then spans the methods' accuracies only, which shows the gaps between strong methods)."""
    import matplotlib.pyplot as plt

    shots = rec.metrics["shots"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for key, label in methods.items():
        row = rec.metrics["methods"][key]
        acc = [100 * row[str(k)]["accuracy"] for k in shots]
        ci = [100 * row[str(k)]["ci95"] for k in shots]
        ax.errorbar(shots, acc, yerr=ci, label=label, capsize=3, lw=1.5, **style(key))
    if chance:
        ax.axhline(100 / rec.ways, color="k", ls=":", lw=1, label=f"chance ({100 / rec.ways:.0f} %)")
    ax.set_xscale("log")
    ax.set_xticks(shots)
    ax.set_xticklabels([str(k) for k in shots])
    ax.set_xlabel("shots per class (K), log scale")
    ax.set_ylabel("query accuracy (%) ± 95 % CI")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def arm_rank_bars(runs: Mapping[str, object], rank, arms: int):
    """For each policy of ``runs`` (name -> actions, a ``(trials, pulls)`` tensor of arm indices), the fraction
    of trials that pull the best arm, the second best, ... at each pull, stacked (chapter 6).

    ``rank[b, arm]`` is the rank of ``arm`` in trial ``b`` (0 = best). One panel per policy, titled with how
    often it pulls the best arm in the last 10 pulls.
    """
    import matplotlib.pyplot as plt
    import torch

    fig, axes = plt.subplots(1, len(runs), figsize=(13 * len(runs) / 3, 3.4), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, (name, actions) in zip(axes, runs.items()):
        ranks = rank.gather(1, actions)  # (trials, pulls): rank of the arm pulled
        freq = torch.stack([(ranks == r).float().mean(0) for r in range(arms)])  # (arms, pulls)
        bottom = torch.zeros(freq.shape[1])
        for r in range(arms):
            ax.bar(range(1, freq.shape[1] + 1), freq[r], bottom=bottom, width=1.0,
                   label="best arm" if r == 0 else f"rank {r + 1}", color=plt.cm.viridis(r / max(1, arms - 1)))
            bottom += freq[r]
        ax.set(title=f"{name}\nbest arm in {freq[0, -10:].mean():.0%} of the last 10 pulls", xlabel="pull t")
    axes[0].set_ylabel("fraction of trials")
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def ratio_lines(ax, series: Mapping[str, Mapping[int, float]], xlabel: str, ylabel: str, title: str) -> None:
    """One line per entry of ``series`` (label -> {x: ratio}) on ``ax``, with the ratio 1 dashed (chapter 8:
    a measurement divided by its peer from the same run)."""
    for i, (label, points) in enumerate(series.items()):
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="os^Dv"[i % 5], label=label)
    ax.axhline(1.0, color="k", ls=":", lw=1)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if series:
        ax.legend(fontsize=8)


def two_domains(top: Sequence, bottom: Sequence, top_label: str, bottom_label: str):
    """Two rows of images, each row captioned above, ink dark on white (chapter 10: drawings of the training
    domain over drawings of a new one). ``top`` and ``bottom`` hold the same number of ``(H, W)`` images."""
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(top)
    fig, axes = plt.subplots(2, n, figsize=(9 * n / 8, 2.9), gridspec_kw={"wspace": 0.05, "hspace": 0.3},
                             squeeze=False)
    for i in range(n):
        for row, images in enumerate((top, bottom)):
            img = images[i].detach().float().cpu().numpy() if hasattr(images[i], "detach") else np.asarray(images[i])
            axes[row, i].imshow(img, cmap="gray_r")
            axes[row, i].axis("off")
    fig.text(0.13, 0.93, top_label, fontsize=9)
    fig.text(0.13, 0.48, bottom_label, fontsize=9)
    return fig


def ablation_bars(variants: Mapping[str, Mapping], xlabel: str, title: str, random_reward: float | None = None):
    """One horizontal bar per agent variant (name -> ``mean_total_reward`` and ``ci95``), intact agent first,
    with random play as a dotted line when ``random_reward`` is given (chapter 10: RL² ablated at test time)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    names = list(variants)
    colours = ["tab:blue", "tab:orange", "tab:red", "tab:green", "tab:purple"]
    ax.barh(names, [variants[n]["mean_total_reward"] for n in names], xerr=[variants[n]["ci95"] for n in names],
            color=[colours[i % len(colours)] for i in range(len(names))])
    if random_reward is not None:
        ax.axvline(random_reward, color="grey", ls=":", label="random play")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
