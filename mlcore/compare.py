"""Chapter 9's side-by-side comparison, computed from ``results/*.json`` and nothing else.

* :func:`comparison_grid`: every few-shot method x (5w1s, 5w5s, 20w1s, 20w5s): our accuracy with
  its 95 % CI, the training steps and wall time and hardware the record carries, the paper's number
  beside it (:mod:`mlcore.reference`); a cell with no record says ``"missing"``, never a number from
  elsewhere.
* :func:`lake_rows`: records on Lake's 20-way within-alphabet protocol beside Koch et al.'s 92.0 %
  and the human 95.5 %.
* :func:`paired`: two records scored on the *same* test episodes (same ``EVAL_SEED``, ways, shots,
  queries, split and number of episodes) give per-episode differences; their mean with a 95 % CI,
  win/tie/loss counts, a sign test and a Wilcoxon signed-rank test say whether a gap is real.
* :func:`holm` and :func:`holm_table`: the Holm–Bonferroni correction for a family of paired tests
  (chapter 9 runs one per pair of methods and setting), so a verdict holds for the family at 5 %.
* :func:`cost_points`: (training wall time, accuracy) per record for the cost-vs-accuracy plot.

Record selection, the table formats and the papers' numbers are reused from :mod:`mlcore.report`
and :mod:`mlcore.reference`.
"""
from __future__ import annotations

import math
import os
from itertools import combinations

from . import reference
from .engine import EVAL_SEED
from .report import fmt_accuracy, fmt_seconds, is_classification, load_records, setting_of, within_alphabet
from .results import mean_ci95
from .runtime import hardware_label

#: The four Vinyals-split settings chapter 9 tabulates.
GRID_SETTINGS: tuple[str, ...] = ("5w1s", "5w5s", "20w1s", "20w5s")
MISSING = "missing"

#: Training length of the papers' protocols where ``shared/reference/targets.md`` states it
#: (outer iterations); other papers train "until convergence" or do not state it there.
PAPER_STEPS: dict[str, tuple[int, str]] = {
    "maml": (60_000, "Finn et al. 2017: 60,000 meta-iterations"),
}


def recipe_of(rec: dict) -> dict:
    return (rec.get("config") or {}).get("recipe") or {}


def steps_of(rec: dict) -> int | None:
    """Outer training steps the record's run actually used (``config.recipe.steps``)."""
    s = recipe_of(rec).get("steps")
    return int(s) if isinstance(s, (int, float)) else None


def is_reference(rec: dict) -> bool:
    """Reference records carry budget ``"full"``, ``"cpu"`` (or none); smoke runs never stand in for them."""
    return rec.get("budget") in (None, "full", "cpu")


PROTOCOL_NAMES = {"book": "the book's protocol", "paper": "the paper's protocol"}


def under_protocol(records: list[dict], which: str = "book") -> list[dict]:
    """The records as scored under one protocol (``"book"`` or ``"paper"``), for tables and paired tests.

    Each returned record is a copy whose accuracy, CI, episodes, per-episode accuracies and test queries
    are those measured under that protocol (``metrics.protocols`` of the record, written by
    :mod:`mlcore.experiments.protocol_scores`); records not scored under it are left out. A comparison
    built on the result compares like with like: one protocol, said once.
    """
    if which not in PROTOCOL_NAMES:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOL_NAMES)}, got {which!r}")
    out = []
    for rec in records:
        score = ((rec.get("metrics") or {}).get("protocols") or {}).get(which)
        if not score or not score.get("per_episode"):
            continue
        proto = score.get("protocol") or {}
        queries = proto.get("queries", 15)
        queries = rec.get("shots") if queries == "shots" else queries
        cfg = dict(rec.get("config") or {})
        cfg["recipe"] = {**recipe_of(rec), "test_queries": queries}
        out.append({**rec, "accuracy": score["accuracy"], "ci95": score.get("ci95"),
                    "episodes": score.get("episodes"), "config": cfg, "protocol": which,
                    "batch_norm": proto.get("batch_norm"),
                    "metrics": {**(rec.get("metrics") or {}), "per_episode": score["per_episode"]}})
    return out


def transduction_rows(records: list[dict]) -> list[dict]:
    """Per record scored both ways: the book's (non-transductive) and the paper's protocol, and the gap."""
    rows = []
    for rec in records:
        ps = (rec.get("metrics") or {}).get("protocols") or {}
        book, paper = ps.get("book"), ps.get("paper")
        if not book or not paper or book.get("reused_record_score") and paper.get("reused_record_score"):
            continue
        rows.append({"record": rec["name"], "method": reference.display_name(rec["method"]),
                     "setting": setting_of(rec), "book": fmt_accuracy(book["accuracy"], book.get("ci95")),
                     "book_words": book.get("words", ""), "paper": fmt_accuracy(paper["accuracy"], paper.get("ci95")),
                     "paper_words": paper.get("words", ""),
                     "gain": 100 * (paper["accuracy"] - book["accuracy"])})
    rows.sort(key=lambda r: -r["gain"])
    return rows


def classification_records(directory: str | os.PathLike | None = None) -> list[dict]:
    """Few-shot classification records in ``directory`` (default ``results/``), as :mod:`mlcore.report` defines them."""
    records, _ = load_records(directory)
    return [r for r in records if is_classification(r)]


def _pick(recs: list[dict]) -> dict | None:
    """One record per (method, setting): a reference record if there is one, else the newest other."""
    if not recs:
        return None
    ref = [r for r in recs if is_reference(r)]
    pool = ref or recs
    return max(pool, key=lambda r: r.get("created", ""))


def methods_in_order(records: list[dict], extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Method ids: the papers' methods in :data:`mlcore.reference.METHODS` order, then any others."""
    have = {r["method"] for r in records} | set(extra)
    canon_order = list(reference.METHODS)

    def key(m: str):
        c = reference.canonical_method(m)
        return (canon_order.index(c) if c in canon_order else len(canon_order), m)

    return sorted(have, key=key)


def comparison_grid(records: list[dict], methods: list[str] | None = None,
                    settings: tuple[str, ...] = GRID_SETTINGS) -> list[dict]:
    """One row per (method, setting) of the grid; absent records give ``ours == "missing"``.

    ``methods`` defaults to every method with a classification record plus every method with a
    published number, so a family that has not produced its records yet still shows its rows.
    """
    cls = [r for r in records if is_classification(r) and not within_alphabet(r)]
    if methods is None:
        have = {reference.canonical_method(r["method"]) for r in cls if r["method"] not in reference.VARIANT_NAMES}
        methods = methods_in_order(cls, extra=[m for (m, s) in reference.OMNIGLOT if s in settings and m not in have])
    by_key: dict[tuple[str, str], list[dict]] = {}
    for r in cls:
        by_key.setdefault((r["method"], setting_of(r)), []).append(r)
    rows = []
    for m in methods:
        for s in settings:
            rec = _pick(by_key.get((m, s), []))
            pub = reference.published(m, s)
            paper_steps = PAPER_STEPS.get(reference.canonical_method(m))
            row = {"method_id": m, "method": reference.display_name(m), "setting": s,
                   "paper": pub.text() if pub else "–", "paper_accuracy": pub.accuracy if pub else None,
                   "paper_steps": paper_steps[0] if paper_steps else None}
            if rec is None:
                row.update(record=None, ours=MISSING, accuracy=None, ci95=None, steps=None, train_s=None,
                           train_time="–", hardware="–", budget=None, episodes=None, gap=None)
            else:
                acc, ci = rec["accuracy"], rec.get("ci95")
                budget = rec.get("budget") or "full"
                row.update(record=rec["name"], accuracy=acc, ci95=ci, episodes=rec.get("episodes"),
                           ours=fmt_accuracy(acc, ci) + ("" if is_reference(rec) else f" ({budget})"),
                           steps=steps_of(rec), train_s=rec.get("train_wall_s"),
                           train_time=fmt_seconds(rec.get("train_wall_s")) + _shared_note(rec),
                           hardware=_training_hardware(rec),
                           budget=budget, gap=(100 * acc - pub.accuracy) if pub else None)
            rows.append(row)
    return rows


def _shared_note(rec: dict) -> str:
    """' (the 5w1s training)' when a record scores another record's weights (config.weights_from)."""
    src = (rec.get("config") or {}).get("weights_from")
    return f" (the {src.rsplit('_', 1)[-1]} training)" if src else ""


def _training_hardware(rec: dict) -> str:
    """Where the record's model was trained (a shared training's machine, else the record's own)."""
    hw = (rec.get("config") or {}).get("training_hardware") or rec.get("hardware")
    return hardware_label(hw) if hw else "–"


def pivot(rows: list[dict], settings: tuple[str, ...] = GRID_SETTINGS) -> list[dict]:
    """Grid rows -> one row per method with ``"<setting>"`` = "ours / paper" cells (compact view)."""
    out: dict[str, dict] = {}
    for r in rows:
        d = out.setdefault(r["method_id"], {"method": r["method"]})
        ours = r["ours"] if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}"
        d[r["setting"]] = f"{ours} / {r['paper']}"
    return list(out.values())


def lake_rows(records: list[dict]) -> list[dict]:
    """Records on Lake's within-alphabet 20-way one-shot protocol, then the published reference points."""
    rows = []
    for r in records:
        if is_classification(r) and within_alphabet(r):
            rows.append({"who": reference.display_name(r["method"]) + " (ours)", "record": r["name"],
                         "accuracy": fmt_accuracy(r["accuracy"], r.get("ci95")), "steps": steps_of(r),
                         "train_time": fmt_seconds(r.get("train_wall_s")),
                         "budget": r.get("budget") or "full", "source": "this book"})
        if r.get("split") == "lake_official" and r.get("accuracy") is not None:
            spread = (r.get("metrics") or {}).get("benchmark_spread") or {}
            note = (f"; benchmarks built Lake's way from his alphabets: {spread['mean']:.1%} mean, "
                    f"{spread['std']:.1%} std" if {"mean", "std"} <= spread.keys() else "")
            rows.append({"who": reference.display_name(r["method"]) + " (ours), Lake's 400 official trials",
                         "record": r["name"], "accuracy": fmt_accuracy(r["accuracy"], r.get("ci95")),
                         "steps": None, "train_time": "–", "budget": r.get("budget") or "full",
                         "source": f"this book (weights of {(r.get('config') or {}).get('weights_from')}){note}"})
    for who, (acc, key) in reference.LAKE_WITHIN_ALPHABET.items():
        rows.append({"who": who, "record": None, "accuracy": f"{acc:g}", "steps": None, "train_time": "–",
                     "budget": None, "source": reference.CITATIONS[key], "bibkey": key})
    return rows


# ---------------------------------------------------------------------------------------------
# Paired comparison on the same episodes
# ---------------------------------------------------------------------------------------------

def episode_protocol(rec: dict) -> tuple:
    """What fixes a record's test episodes: (eval seed, ways, shots, test queries, split, within, n)."""
    cfg = rec.get("config") or {}
    recipe = recipe_of(rec)
    return (cfg.get("eval_seed", EVAL_SEED), rec.get("ways"), rec.get("shots"), recipe.get("test_queries", 15),
            rec.get("split") or "vinyals/test", within_alphabet(rec), len(per_episode(rec) or []))


def per_episode(rec: dict) -> list[float] | None:
    pe = (rec.get("metrics") or {}).get("per_episode")
    return list(pe) if isinstance(pe, list) and pe else None


def same_episodes(a: dict, b: dict) -> tuple[bool, str]:
    """Whether two records were scored on identical episodes, and if not, why not."""
    for rec in (a, b):
        if per_episode(rec) is None:
            return False, f"record {rec.get('name')} has no per-episode accuracies (metrics.per_episode)"
    pa, pb = episode_protocol(a), episode_protocol(b)
    if pa != pb:
        fields = ("eval seed", "ways", "shots", "test queries", "split", "within-alphabet", "episodes")
        diff = [f"{f}: {x} vs {y}" for f, x, y in zip(fields, pa, pb) if x != y]
        return False, "different test episodes (" + "; ".join(diff) + ")"
    return True, ""


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test (ties dropped): P(as extreme a split under a fair coin)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(a: dict, b: dict) -> dict:
    """Per-episode comparison of record ``a`` minus record ``b`` (accuracies as fractions).

    Raises ``ValueError`` when the two records were not scored on the same episodes.
    """
    ok, why = same_episodes(a, b)
    if not ok:
        raise ValueError(f"cannot pair {a.get('name')} with {b.get('name')}: {why}")
    xa, xb = per_episode(a), per_episode(b)
    d = [u - v for u, v in zip(xa, xb)]
    mean, ci = mean_ci95(d)
    wins = sum(x > 1e-12 for x in d)
    losses = sum(x < -1e-12 for x in d)
    out = {"a": a["name"], "b": b["name"], "a_method": a["method"], "b_method": b["method"],
           "setting": setting_of(a), "episodes": len(d),
           "mean_difference": mean, "ci95": ci, "wins": wins, "ties": len(d) - wins - losses, "losses": losses,
           "sign_test_p": sign_test_p(wins, losses), "wilcoxon_p": None, "p": mean_difference_p(mean, ci)}
    if wins + losses > 0:
        try:
            from scipy.stats import wilcoxon  # optional: the sign test above needs no scipy
            out["wilcoxon_p"] = float(wilcoxon(xa, xb, zero_method="wilcox").pvalue)
        except ImportError:
            pass
    # the CI of the difference excludes zero <=> the gap is real at the 95 % level
    out["verdict"] = ("no detectable difference" if math.isnan(ci) or abs(mean) <= ci
                      else (f"{reference.display_name(a['method'])} better" if mean > 0
                            else f"{reference.display_name(b['method'])} better"))
    # the unpaired CIs, for contrast: pairing removes the episode-difficulty variance both share
    out["unpaired_ci95"] = math.sqrt(mean_ci95(xa)[1] ** 2 + mean_ci95(xb)[1] ** 2) if len(d) > 1 else float("nan")
    return out


def paired_table(records: list[dict], settings: tuple[str, ...] = GRID_SETTINGS + ("20w1s-within",)) -> list[dict]:
    """Every pair of methods that share a setting's episodes (one record per method and setting)."""
    rows = []
    cls = [r for r in records if is_classification(r)]
    for s in settings:
        by_method: dict[str, list[dict]] = {}
        for r in cls:
            if setting_of(r) == s:
                by_method.setdefault(r["method"], []).append(r)
        picked = [_pick(v) for _, v in sorted(by_method.items())]
        picked = [r for r in picked if r is not None and per_episode(r) is not None]
        picked.sort(key=lambda r: -r["accuracy"])
        for a, b in combinations(picked, 2):
            ok, why = same_episodes(a, b)
            if not ok:
                rows.append({"setting": s, "a": a["name"], "b": b["name"], "skipped": why})
                continue
            rows.append(paired(a, b))
    return rows


def mean_difference_p(mean: float, ci95: float) -> float:
    """Two-sided p-value of a mean difference under the normal approximation its 95 % CI uses.

    The CI is ``mean ± 1.96 se``, so ``se = ci95 / 1.96`` and ``p = P(|Z| >= |mean| / se)``;
    ``p < 0.05`` exactly when the CI excludes 0 (up to 1.96 vs 1.95996).
    """
    if math.isnan(mean) or math.isnan(ci95):
        return float("nan")
    if ci95 <= 0:
        return 1.0 if mean == 0 else 0.0
    return math.erfc(abs(mean) / (ci95 / 1.96) / math.sqrt(2))


def holm(pvalues) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given.

    Sort the m p-values ascending, p_(1) <= ... <= p_(m); the adjusted value of p_(i) is
    ``max over j <= i of min(1, (m - j + 1) p_(j))``. Rejecting every hypothesis whose adjusted
    p-value is below alpha keeps the probability of *any* false rejection in the family at most
    alpha, whatever the dependence between the tests (Holm 1979). Example: (0.01, 0.04, 0.03,
    0.005) -> (0.03, 0.06, 0.06, 0.02).
    """
    p = [float(x) for x in pvalues]
    bad = [x for x in p if math.isnan(x) or not 0.0 <= x <= 1.0]
    if bad:
        raise ValueError(f"p-values must lie in [0, 1], got {bad[:3]}")
    m = len(p)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def holm_table(rows: list[dict], alpha: float = 0.05) -> list[dict]:
    """``rows`` of :func:`paired_table` with the family's Holm correction applied.

    Every compared (not skipped) row is one test of the family; each gets ``holm_p`` (its adjusted
    :func:`mean_difference_p`) and ``holm_verdict``: the better method "at these budgets" when
    ``holm_p < alpha``, else "no detectable difference at these budgets". The verdicts describe the
    records (their training budgets and seeds), not the methods in general. Skipped rows are returned
    unchanged.
    """
    tested = [i for i, r in enumerate(rows) if "skipped" not in r]
    pvals = [rows[i].get("p") for i in tested]
    pvals = [mean_difference_p(rows[i]["mean_difference"], rows[i]["ci95"]) if p is None else p
             for i, p in zip(tested, pvals)]
    pvals = [1.0 if math.isnan(p) else p for p in pvals]
    out = [dict(r) for r in rows]
    for i, p, hp in zip(tested, pvals, holm(pvals)):
        r = out[i]
        r["p"], r["holm_p"] = p, hp
        if hp < alpha and r["verdict"] != "no detectable difference":  # it names the better method
            r["holm_verdict"] = f"{r['verdict']} at these budgets"
        else:
            r["holm_verdict"] = "no detectable difference at these budgets"
    return out


def fmt_paired(row: dict) -> dict:
    """A paired row in percent points for tables."""
    if "skipped" in row:
        return {"setting": row["setting"], "pair": f"{row['a']} vs {row['b']}", "difference": "–",
                "W/T/L": "–", "sign p": "–", "Wilcoxon p": "–", "verdict": "not paired: " + row["skipped"]}
    wp = row.get("wilcoxon_p")
    return {"setting": row["setting"], "pair": f"{row['a']} − {row['b']}",
            "difference": f"{100 * row['mean_difference']:+.2f} ± {100 * row['ci95']:.2f}",
            "unpaired": f"± {100 * row['unpaired_ci95']:.2f}",
            "W/T/L": f"{row['wins']}/{row['ties']}/{row['losses']}", "sign p": f"{row['sign_test_p']:.2g}",
            "Wilcoxon p": "–" if wp is None else f"{wp:.2g}",
            "p": "–" if row.get("p") is None else f"{row['p']:.2g}",
            "Holm p": "–" if row.get("holm_p") is None else f"{row['holm_p']:.2g}",
            "verdict": row.get("holm_verdict", row["verdict"])}


def html_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """``rows`` as an HTML table (``columns``: (row key, header)), in a horizontally scrolling box.

    Notebooks display this rather than Markdown: the book renders notebook outputs with CommonMark,
    which has no tables, and a wide table must scroll instead of overflowing the page.
    """
    import html

    def cell(v) -> str:
        return "–" if v is None else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k))}</td>" for k, _ in columns) + "</tr>" for r in rows)
    return (f'<div style="overflow-x:auto"><table class="table" style="font-size:0.85em">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


# ---------------------------------------------------------------------------------------------
# Cost vs accuracy
# ---------------------------------------------------------------------------------------------

def cost_points(records: list[dict]) -> list[dict]:
    """One point per classification record with a training wall time: cost and accuracy side by side."""
    pts = []
    for r in records:
        if not is_classification(r) or not r.get("train_wall_s"):
            continue
        pts.append({"record": r["name"], "method_id": r["method"], "method": reference.display_name(r["method"]),
                    "setting": setting_of(r), "train_s": float(r["train_wall_s"]),
                    "train_time": fmt_seconds(r["train_wall_s"]), "accuracy": float(r["accuracy"]),
                    "ci95": r.get("ci95"), "steps": steps_of(r),
                    "meta_batch": recipe_of(r).get("meta_batch"),
                    "hardware": _training_hardware(r), "budget": r.get("budget") or "full"})
    return sorted(pts, key=lambda p: (p["setting"], p["train_s"]))


def plot_cost_accuracy(points: list[dict], ax=None, settings: tuple[str, ...] = GRID_SETTINGS):
    """Training wall time (log x) vs test accuracy, one panel colour per method, one marker per setting."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    markers = dict(zip(settings + ("20w1s-within",), "os^Dv"))
    methods = sorted({p["method"] for p in points})
    colours = dict(zip(methods, plt.cm.tab10.colors * 3))
    for p in points:
        ax.errorbar(p["train_s"], 100 * p["accuracy"], yerr=100 * (p["ci95"] or 0), fmt=markers.get(p["setting"], "x"),
                    color=colours[p["method"]], ms=6, capsize=2)
    ax.set_xscale("log")
    ax.set_xlabel("training wall time (s, log scale)")
    ax.set_ylabel("test accuracy (%)")
    for m in methods:
        ax.plot([], [], "o", color=colours[m], label=m)
    for s, mk in markers.items():
        if any(p["setting"] == s for p in points):
            ax.plot([], [], mk, color="grey", label=s)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.grid(alpha=0.3)
    return ax


def plot_paired_heatmaps(rows: list[dict], settings: tuple[str, ...] = GRID_SETTINGS, alpha: float = 0.05,
                         title: str = ""):
    """One panel per setting: method x method, the paired mean difference (row minus column, points).

    ``rows`` come from :func:`holm_table`; a cell is starred where the Holm-adjusted p is below ``alpha``
    and left blank where the two records were not scored on the same episodes.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [s for s in settings if any(r.get("setting") == s and "skipped" not in r for r in rows)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, s in zip(axes[0], panels):
        rs = [r for r in rows if r.get("setting") == s and "skipped" not in r]
        names = sorted({r["a_method"] for r in rs} | {r["b_method"] for r in rs},
                       key=lambda m: list(reference.METHODS).index(reference.canonical_method(m))
                       if reference.canonical_method(m) in reference.METHODS else 99)
        idx = {m: i for i, m in enumerate(names)}
        diff = np.full((len(names), len(names)), np.nan)
        star = np.zeros_like(diff, dtype=bool)
        for r in rs:
            i, j = idx[r["a_method"]], idx[r["b_method"]]
            diff[i, j], diff[j, i] = 100 * r["mean_difference"], -100 * r["mean_difference"]
            star[i, j] = star[j, i] = r.get("holm_p", 1.0) < alpha
        lim = np.nanmax(np.abs(diff)) if np.isfinite(diff).any() else 1.0
        ax.imshow(diff, cmap="RdBu", vmin=-lim, vmax=lim)
        for i in range(len(names)):
            for j in range(len(names)):
                if np.isfinite(diff[i, j]):
                    ax.text(j, i, f"{diff[i, j]:+.1f}" + ("*" if star[i, j] else ""), ha="center", va="center",
                            fontsize=6, color="white" if abs(diff[i, j]) > 0.6 * lim else "black")
        labels = [reference.display_name(m) for m in names]
        ax.set_xticks(range(len(names)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), labels, fontsize=7)
        ax.set_title(s, fontsize=9)
    fig.suptitle(title or "row minus column, points (* real after Holm, at these budgets)", fontsize=9)
    fig.tight_layout()
    return fig


def learning_curves(records: list[dict]) -> list[dict]:
    """Records that kept validation accuracy against meta-steps (``metrics.learning_curve``)."""
    out = []
    for rec in records:
        curve = (rec.get("metrics") or {}).get("learning_curve")
        if curve and is_classification(rec) and all("val_accuracy" in c for c in curve):
            pub = reference.published(rec["method"], setting_of(rec))
            paper_steps = (reference.PAPER_RECIPES.get(reference.canonical_method(rec["method"]), {})
                           .get((rec.get("ways"), rec.get("shots")), {}).get("steps"))
            out.append({"record": rec["name"], "method": reference.display_name(rec["method"]),
                        "setting": setting_of(rec), "steps": [c["step"] for c in curve],
                        "val_accuracy": [c["val_accuracy"] for c in curve],
                        "paper_accuracy": pub.accuracy if pub else None, "paper_steps": paper_steps})
    return out


def training_curves(records: list[dict], smooth: int = 5) -> list[dict]:
    """Records that kept their training accuracy against meta-steps (``metrics.train_curve``), with their test score.

    A run trained on the training and validation characters together (a paper's full budget) has no validation
    curve; its training curve still shows whether it had stopped improving. Each curve is a moving average over
    ``smooth`` logged rows; only episode accuracy (``acc``) is kept, so verification-pair curves (Siamese) and MANN's
    sequence accuracy, which measure something else, are left out.
    """
    out = []
    for rec in records:
        curve = (rec.get("metrics") or {}).get("train_curve") or []
        rows = [c for c in curve if "acc" in c and "acc_2nd" not in c]
        if len(rows) < smooth or not is_classification(rec) or within_alphabet(rec):
            continue
        acc = [c["acc"] for c in rows]
        avg = [sum(acc[max(0, i - smooth + 1):i + 1]) / (i + 1 - max(0, i - smooth + 1)) for i in range(len(acc))]
        pub = reference.published(rec["method"], setting_of(rec))
        # the test score beside the paper's number is the one measured the paper's way, where it could be
        scores = (rec.get("metrics") or {}).get("protocols") or {}
        which = "paper" if "paper" in scores else "book"
        test = scores.get(which, {}).get("accuracy", rec["accuracy"])
        out.append({"record": rec["name"], "method": reference.display_name(rec["method"]),
                    "setting": setting_of(rec), "steps": [c["step"] for c in rows], "train_accuracy": avg,
                    "test_accuracy": test, "test_protocol": which, "paper_accuracy": pub.accuracy if pub else None})
    return out


def plot_training_curves(curves: list[dict], axes=None):
    """One panel per setting: training accuracy against meta-steps, the test score (dot: under the paper's protocol
    where the record has it) and the paper's number (dashed)."""
    import matplotlib.pyplot as plt

    settings = [s for s in GRID_SETTINGS if any(c["setting"] == s for c in curves)]
    if axes is None:
        _, axes = plt.subplots(1, len(settings), figsize=(3.6 * len(settings), 3.4), squeeze=False)
        axes = axes[0]
    methods = sorted({c["method"] for c in curves})
    colours = dict(zip(methods, plt.cm.tab10.colors * 3))
    for ax, setting in zip(axes, settings):
        for c in (c for c in curves if c["setting"] == setting):
            colour = colours[c["method"]]
            ax.plot(c["steps"], [100 * v for v in c["train_accuracy"]], "-", color=colour, lw=1.2, label=c["method"])
            ax.plot(c["steps"][-1], 100 * c["test_accuracy"], "o", color=colour, ms=5)
            if c["paper_accuracy"] is not None:
                ax.axhline(c["paper_accuracy"], color=colour, ls="--", lw=0.8)
        marks = [100 * c["test_accuracy"] for c in curves if c["setting"] == setting]
        marks += [c["paper_accuracy"] for c in curves if c["setting"] == setting and c["paper_accuracy"]]
        ax.set_ylim(min(marks) - 6, 100.5)  # the first steps' low accuracy would flatten the part that matters
        ax.set_title(setting, fontsize=9)
        ax.set_xlabel("meta-steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("accuracy (%)")
    return axes


def plot_learning_curves(curves: list[dict], ax=None):
    """Validation accuracy against meta-steps (log x), each with its paper's number and training length."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    colours = plt.cm.tab10.colors
    for c, colour in zip(curves, colours * 3):
        label = f"{c['method']} {c['setting']}"
        ax.plot(c["steps"], [100 * v for v in c["val_accuracy"]], "o-", color=colour, ms=3, label=label)
        if c["paper_accuracy"] is not None:
            ax.axhline(c["paper_accuracy"], color=colour, ls="--", lw=1)
        if c["paper_steps"]:
            ax.axvline(c["paper_steps"], color=colour, ls=":", lw=1)
            ax.text(c["paper_steps"], ax.get_ylim()[0], f" paper: {c['paper_steps']:,}", color=colour,
                    rotation=90, va="bottom", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("meta-steps (log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ax


__all__ = [
    "GRID_SETTINGS",
    "MISSING",
    "PAPER_STEPS",
    "PROTOCOL_NAMES",
    "classification_records",
    "comparison_grid",
    "cost_points",
    "fmt_paired",
    "holm",
    "holm_table",
    "html_table",
    "is_reference",
    "lake_rows",
    "learning_curves",
    "mean_difference_p",
    "paired",
    "paired_table",
    "pivot",
    "plot_cost_accuracy",
    "plot_learning_curves",
    "plot_paired_heatmaps",
    "plot_training_curves",
    "same_episodes",
    "sign_test_p",
    "steps_of",
    "training_curves",
    "transduction_rows",
    "under_protocol",
]
