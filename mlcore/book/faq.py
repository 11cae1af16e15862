"""The tables of chapter 10 (the FAQ): each answer prints a record's numbers, and these helpers format them.

Every function takes plain values or a record's ``metrics`` (a live run's dict has the same shape), so the
chapter shows a reference record and its own smoke run the same way::

    from mlcore.book import faq
    from mlcore.compare import html_table

    display(HTML(html_table(faq.domain_shift_rows(rec.metrics), faq.DOMAIN_SHIFT_COLUMNS)))
"""
from __future__ import annotations

from collections.abc import Mapping

from ..results import Record
from ..runtime import hardware_label

#: columns of :func:`sinusoid_rows`
SINUSOID_COLUMNS = [("model", "model"), ("s0", "0 steps"), ("s1", "1 step"), ("s5", "5 steps"),
                    ("s10", "10 steps"), ("paper", "paper (1 / 5 / 10 steps)")]
#: columns of :func:`domain_shift_rows`
DOMAIN_SHIFT_COLUMNS = [("setting", "setting"), ("domain", "test domain"), ("learner", "meta-learned ProtoNet"),
                        ("pixels", "pixel centroids"), ("gain", "gain, points")]
#: columns of :func:`ablation_rows`
ABLATION_COLUMNS = [("agent", "agent"), ("total", "mean total reward, 10 pulls"),
                    ("diff", "paired difference vs intact")]
#: the classic bandit baselines the ablation table lists under the agents, in this order
BANDIT_BASELINES = ("random", "greedy", "UCB1", "Gittins")


def pct(acc: float, ci: float | None = None) -> str:
    """An accuracy in [0, 1] as ``"97.9 %"``, with `` ± ci`` in points when a 95 % CI is given."""
    return f"{100 * acc:.1f} %" + ("" if ci is None else f" ± {100 * ci:.1f}")


def budget_line(rec: Record | Mapping) -> str:
    """What a record cost, in brackets: ``[name: 70,000 steps, 635 s training, CPU (1 thread)]``.

    Steps come from the record's recipe (or its config), training time from ``train_wall_s``; a part the record
    does not have is left out. A record's dict is accepted as well as a :class:`~mlcore.results.Record`.
    """
    if isinstance(rec, Mapping):
        rec = Record.from_dict(dict(rec))
    config = rec.config or {}
    steps = (config.get("recipe") or {}).get("steps") or config.get("steps")
    t = rec.train_wall_s
    return (f"[{rec.name}: {'' if steps is None else f'{steps:,} steps, '}"
            f"{'' if t is None else f'{t:.0f} s training, '}{hardware_label(rec.hardware or {})}]")


def sinusoid_rows(mse: Mapping, paper: Mapping, models=("maml", "pretrained"), shots: int = 5) -> list[dict]:
    """Test MSE ± CI after 0, 1, 5 and 10 gradient steps, one row per model, beside the paper's 1/5/10-step MSE.

    ``mse`` is a ``maml_sinusoid`` record's ``metrics["mse"]`` (``"<model>_k<shots>"`` -> ``"steps=<n>"`` ->
    ``[mean, ci95]``), ``paper`` maps a model to ``{steps: mse}`` (``mlcore.reference.SINUSOID_5SHOT_MSE``);
    a model the paper does not report gets "–".
    """
    rows = []
    for who in models:
        row = {"model": who}
        for n in (0, 1, 5, 10):
            m, ci = mse[f"{who}_k{shots}"][f"steps={n}"]
            row[f"s{n}"] = f"{m:.2f} ± {ci:.2f}"
        p = paper.get(who, {})
        row["paper"] = " / ".join(f"{p[n]:g}" for n in (1, 5, 10)) if p else "–"
        rows.append(row)
    return rows


def domain_shift_rows(metrics: Mapping) -> list[dict]:
    """One row per setting (``"<K>shot"`` keys of a domain-shift record's metrics) and test domain: the
    meta-learned learner's and raw pixel centroids' accuracy ± CI, and the learner's gain over pixels in points."""
    rows = []
    for key, res in metrics.items():
        if not key.endswith("shot"):
            continue
        for dom in ("omniglot", "digits"):
            r = res[dom]
            rows.append({"setting": f"5-way {key[:-4]}-shot", "domain": dom,
                         "learner": pct(r["learner"]["accuracy"], r["learner"]["ci95"]),
                         "pixels": pct(r["pixels"]["accuracy"], r["pixels"]["ci95"]),
                         "gain": f"{100 * r['gain_over_pixels']:+.1f}"})
    return rows


def domain_shift_gains(metrics: Mapping, key: str = "1shot") -> str:
    """The two numbers the domain-shift table is read for: the learner's gain over pixels in each domain."""
    g_o, g_d = metrics[key]["omniglot"]["gain_over_pixels"], metrics[key]["digits"]["gain_over_pixels"]
    k = key[:-4]
    return (f"{k}-shot: the meta-learned embedding adds {100 * g_o:+.1f} points over pixels on Omniglot\n"
            f"{' ' * (len(k) + 7)}and {100 * g_d:+.1f} on digits.")


def ablation_rows(variants: Mapping, baselines: Mapping | None = None) -> list[dict]:
    """The test-time ablation table: each variant's mean total reward ± CI and its paired difference to the
    intact agent ("–" for the intact agent itself), then the classic baselines of :data:`BANDIT_BASELINES`
    found in ``baselines`` (a ``baselines_*`` record's ``metrics["baselines"]``)."""
    rows = []
    for k, x in variants.items():
        d = x.get("paired_vs_full")
        rows.append({"agent": k, "total": f"{x['mean_total_reward']:.2f} ± {x['ci95']:.2f}",
                     "diff": "–" if d is None else f"{d['mean_difference']:+.2f} ± {d['ci95']:.2f}"})
    for who in BANDIT_BASELINES:
        b = (baselines or {}).get(who)
        if b:
            rows.append({"agent": f"{who} (classic baseline)",
                         "total": f"{b['mean_total_reward']:.2f} ± {b['ci95']:.2f}", "diff": "–"})
    return rows


def verdict(d: Mapping) -> str:
    """What a paired difference (``mean_difference`` ± ``ci95``) says at the 95 % level."""
    if abs(d["mean_difference"]) <= d["ci95"]:
        return "no detectable difference"
    return "a real loss" if d["mean_difference"] < 0 else "a real gain"
