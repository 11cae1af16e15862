"""Tables and figures of the task-retrieval study (:mod:`mlcore.experiments.task_similarity`) for the book.

Every function reads the study's metrics dict (a live run's or a record's ``metrics``), so a chapter
shows the reference record and its own smoke run the same way.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..experiments.task_similarity import HEADLINE, RETRIEVERS, character_roles

SHORT = {RETRIEVERS[0]: "f_θ on gains", RETRIEVERS[1]: "f_θ on same alphabet", RETRIEVERS[2]: "Task2Vec",
         RETRIEVERS[3]: "mean embedding", RETRIEVERS[4]: "support leave-one-out",
         RETRIEVERS[5]: "best source on label tasks"}
STYLE = {RETRIEVERS[0]: ("C3", "o"), RETRIEVERS[1]: ("C1", "s"), RETRIEVERS[2]: ("C4", "^"),
         RETRIEVERS[3]: ("C2", "D"), RETRIEVERS[4]: ("C0", "v"), RETRIEVERS[5]: ("C5", "P"), "random": ("0.5", "x"),
         "best in hindsight": ("k", "*")}


def transfer_rows(m: dict, kind: str = "all") -> list[dict]:
    """The transfer table of one target kind as rows: how the new task was solved, accuracy ± CI, n."""
    return [{"start": k, "acc": f"{100 * v['accuracy']:.1f} ± {100 * v['ci95']:.1f}", "n": v["n"]}
            for k, v in m["transfer_tables"][kind].items()]


def retrieval_rows(m: dict, kind: str = "all") -> list[dict]:
    """Retrieval quality per retriever: top-3 hit rate, mean rank, rank correlation, regret, same alphabet."""
    rows = []
    for k, v in m["retrieval"][kind].items():
        rows.append({"retriever": k,
                     "top3": f"{100 * v['in_top3_most_helpful']:.0f} %",
                     "rank": f"{v['mean_rank_of_retrieved']:.1f}",
                     "rho": f"{v['rank_correlation_with_transfer']:.2f}" if "rank_correlation_with_transfer" in v
                     else "–",
                     "regret": f"{100 * v['regret_vs_best']:.1f}" if "regret_vs_best" in v else "–",
                     "same": f"{100 * v['same_alphabet_top1']:.0f} %" if "same_alphabet_top1" in v else "–"})
    return rows


def test_rows(m: dict, kind: str = "all") -> list[dict]:
    """The paired tests of the headline retriever against the others (per target group, Holm-corrected)."""
    rows = []
    for k, v in m["paired_tests"][kind].items():
        rows.append({"comparison": k, "diff": f"{100 * v['mean_difference']:+.2f} ± {100 * v['ci95']:.2f}",
                     "wtl": f"{v['wins']}/{v['ties']}/{v['losses']}",
                     "p": f"{v['wilcoxon_p'] if v['wilcoxon_p'] is not None else v['sign_test_p']:.2g}",
                     "holm": f"{v['holm_p']:.2g}"})
    return rows


def targets_met(m: dict, recipe: str = "frozen") -> dict:
    """The study's three targets for the headline retriever under one transfer recipe, measured.

    Each entry is (met, the measured value in words). ``recipe`` is ``frozen`` (nearest centroids on
    every source's frozen features) or ``fine-tune`` (fine-tuning from the pick; the top-3 criterion
    needs every source fine-tuned, so it is taken from the frozen matrix).
    """
    if recipe == "frozen":
        bg_tab, tests = m["transfer_tables"]["background"], m["paired_tests"]
        same_row, rnd_key = "same-alphabet source (label oracle)", f"{HEADLINE} - random source"
    elif recipe == "fine-tune":
        bg_tab, tests = m["fine_tuning"]["tables"]["background"], m["fine_tuning"]["paired_tests"]
        same_row, rnd_key = "same-alphabet source", f"{HEADLINE} - random source (one per target)"
    else:
        raise ValueError(f"recipe must be 'frozen' or 'fine-tune', got {recipe!r}")
    head = bg_tab[f"retrieved by {HEADLINE}"]["accuracy"]
    same = bg_tab[same_row]["accuracy"]
    rnd = tests["all"][rnd_key]
    top3 = m["retrieval"]["all"][HEADLINE]["in_top3_most_helpful"]
    # rounded past float noise only: 100 * (0.80 - 0.81) is -1.0000000000000009, which is -1 point, not less
    gap, gain = round(100 * (head - same), 9), round(100 * rnd["mean_difference"], 9)
    return {"within 1 point of the same-alphabet source": (gap >= -1, f"{gap:+.1f} points"),
            "at least 2 points above a random source, significant": (
                gain >= 2 and rnd["holm_p"] < 0.05, f"{gain:+.1f} points, Holm p = {rnd['holm_p']:.1g}"),
            "among the 3 most helpful sources at least 40 % of the time": (top3 >= 0.4, f"{100 * top3:.0f} %")}


#: How :func:`headline_measures` words each of :func:`targets_met`'s quantities, without the thresholds.
MEASURE_NAMES = {
    "within 1 point of the same-alphabet source": "retrieved source minus the same-alphabet source (background targets)",
    "at least 2 points above a random source, significant": "retrieved source minus a random source (paired)",
    "among the 3 most helpful sources at least 40 % of the time": "new tasks where the pick is among the 3 most helpful",
}


def headline_measures(m: dict, recipe: str = "frozen") -> dict[str, str]:
    """The three quantities behind :func:`targets_met`, as measured values in words, with no verdict."""
    return {MEASURE_NAMES[k]: value for k, (_, value) in targets_met(m, recipe).items()}


def plot_retrieval_vs_sources(m: dict, ax=None):
    """Accuracy of the pick against the number of sources to choose from, per retriever."""
    ax = ax or plt.gca()
    c = m["retrieval_vs_sources"]
    for k in ["best in hindsight", *RETRIEVERS, "random"]:
        col, mk = STYLE[k]
        ax.plot(c["sizes"], [100 * v for v in c[k]], color=col, marker=mk, ms=4, lw=1.2, label=SHORT.get(k, k))
    ax.set_xscale("log")
    ax.set_xticks(c["sizes"], [str(s) for s in c["sizes"]])
    ax.set_xticks([], minor=True)  # no 4×10⁰-style labels between the sizes
    ax.set_xlabel("source tasks to choose from")
    ax.set_ylabel("accuracy on the new task (%)")
    ax.legend(fontsize=7)
    return ax


def plot_gain_vs_score(m: dict, retriever: str = HEADLINE, ax=None):
    """Each (new task, source) pair: the retriever's score against the source's gain over the average source."""
    ax = ax or plt.gca()
    acc = torch.tensor(m["transfer_matrix"])[:, 0]  # (G, S), first drawing split
    score = torch.tensor(m["scores_split0"][retriever])
    gain = 100 * (acc - acc.mean(-1, keepdim=True))
    kinds = [t["kind"] for t in m["targets"]]
    for kind, col in [("background", "C3"), ("evaluation", "C0")]:
        sel = torch.tensor([k == kind for k in kinds])
        if sel.any():
            ax.scatter(score[sel].flatten().numpy(), gain[sel].flatten().numpy(), s=3, alpha=0.3, color=col,
                       label=f"{kind} targets")
    rho = m["retrieval"]["all"][retriever]["rank_correlation_with_transfer"]
    ax.set_title(f"{SHORT[retriever]}: mean rank correlation per task {rho:.2f}", fontsize=9)
    ax.set_xlabel("predicted similarity f(T_new, T_source)")
    ax.set_ylabel("gain over the average source (points)")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.legend(fontsize=7, markerscale=3)
    return ax


def plot_retrieved_grid(m: dict, bg, ev, groups=(0, -1), top: int = 3, retriever: str = HEADLINE):
    """A few new tasks (one drawing per character) above the sources the retriever ranks highest."""
    roles = character_roles(bg, ev, m["config"])
    ways = m["config"]["ways"]
    scores = torch.tensor(m["scores_split0"][retriever])
    acc = torch.tensor(m["transfer_matrix"])[:, 0]
    names_bg, names_ev = m["alphabets"], m["eval_alphabets"]
    groups = [g % len(m["targets"]) for g in groups]
    fig, axes = plt.subplots(len(groups) * (1 + top), ways, figsize=(0.9 * ways, 0.95 * len(groups) * (1 + top)))
    row = 0
    for g in groups:
        t = m["targets"][g]
        cs, names = (bg, names_bg) if t["kind"] == "background" else (ev, names_ev)
        first = m["target_drawings_split0"][g]
        for c in range(ways):
            axes[row, c].imshow(cs.images[t["chars"][c], first[c][0], 0].numpy(), cmap="gray_r")
        axes[row, 0].set_ylabel(f"new\n{names[t['alphabet']].split('_(')[0][:12]}", fontsize=6)
        row += 1
        for s in scores[g].argsort(descending=True)[:top].tolist():
            src = roles["sources"][s]
            same = t["kind"] == "background" and src["alphabet"] == t["alphabet"]
            for c in range(ways):
                axes[row, c].imshow(bg.images[src["chars"][c % len(src["chars"])], 0, 0].numpy(),
                                    cmap="Greens" if same else "gray_r")
            axes[row, 0].set_ylabel(f"{names_bg[src['alphabet']].split('_(')[0][:12]}\n"
                                    f"{100 * acc[g, s]:.0f} %", fontsize=6)
            row += 1
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"new tasks and the sources {SHORT[retriever]} ranks highest\n"
                 "(accuracy after transfer; green = same alphabet)", fontsize=8)
    fig.tight_layout()
    return fig


def fine_tune_rows(m: dict, kind: str = "all") -> list[dict]:
    """Fine-tuning every weight from the starts that matter: accuracy ± CI per start."""
    return [{"start": k, "acc": f"{100 * v['accuracy']:.1f} ± {100 * v['ci95']:.1f}", "n": v["n"]}
            for k, v in m["fine_tuning"]["tables"][kind].items()]


COLUMNS = {"transfer": [("start", "how the new task is solved"), ("acc", "accuracy (%)"), ("n", "target groups")],
           "retrieval": [("retriever", "retriever"), ("top3", "pick in top 3"), ("rank", "mean rank of pick"),
                         ("rho", "rank corr. with transfer"), ("regret", "regret (points)"),
                         ("same", "same alphabet")],
           "tests": [("comparison", "paired comparison"), ("diff", "mean difference (points)"),
                     ("wtl", "wins/ties/losses"), ("p", "Wilcoxon p"), ("holm", "Holm p")]}


def table(m: dict, which: str, kind: str = "all"):
    """One of the study's tables as HTML for a notebook: ``transfer``, ``fine-tuning``, ``retrieval``,
    ``tests`` or ``fine-tuning tests``, for target kind ``all``, ``background`` or ``evaluation``."""
    from IPython.display import HTML

    from ..compare import html_table

    if which == "transfer":
        rows, cols = transfer_rows(m, kind), COLUMNS["transfer"]
    elif which == "fine-tuning":
        rows, cols = fine_tune_rows(m, kind), COLUMNS["transfer"]
    elif which == "retrieval":
        rows, cols = retrieval_rows(m, kind), COLUMNS["retrieval"]
    elif which == "tests":
        rows, cols = test_rows(m, kind), COLUMNS["tests"]
    elif which == "fine-tuning tests":
        rows, cols = test_rows({"paired_tests": m["fine_tuning"]["paired_tests"]}, kind), COLUMNS["tests"]
    else:
        raise ValueError(f"which must be transfer, fine-tuning, retrieval, tests or fine-tuning tests, got {which!r}")
    return HTML(html_table(rows, cols))
