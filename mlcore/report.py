"""Results tables built from ``results/*.json`` by code, never typed by hand.

``python -m mlcore.report`` prints the tables as Markdown; ``python -m mlcore.report --readme``
rewrites the part of ``README.md`` between ``<!-- results:start -->`` and
``<!-- results:end -->``. The book's comparison chapter calls :func:`classification_rows`
and :func:`markdown_table` directly.

Every row comes from one record: our accuracy with its 95 % CI over the record's test
episodes, the training wall time and hardware the record carries, and, beside it, the
published number from :mod:`mlcore.reference` (or "–" where the paper has none).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from . import reference
from .results import RESULTS_DIR, Record, atomic_write_text
from .runtime import hardware_label

START, END = "<!-- results:start -->", "<!-- results:end -->"
README = RESULTS_DIR.parent / "README.md"
MISSING = "not yet produced"


def load_records(directory: str | os.PathLike | None = None) -> tuple[list[dict], list[str]]:
    """All records (as dicts) in ``directory`` and the names of JSON files that are not records."""
    d = Path(directory) if directory is not None else RESULTS_DIR
    records, skipped = [], []
    for path in sorted(d.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            Record.from_dict(data)  # validates the required fields
        except (ValueError, TypeError):
            skipped.append(path.name)
            continue
        records.append(data)
    return records, skipped


def is_classification(rec: dict) -> bool:
    """A few-shot classification record scored on the shared test episodes.

    Omniglot, with ways, shots and an accuracy, on the Vinyals test split or Lake's
    within-alphabet protocol (other Omniglot analyses, e.g. task retrieval, are listed
    with the other records).
    """
    return (rec.get("dataset") == "omniglot" and rec.get("accuracy") is not None
            and rec.get("ways") is not None and rec.get("shots") is not None
            and (rec.get("split") in (None, "vinyals/test") or within_alphabet(rec)))


def within_alphabet(rec: dict) -> bool:
    """True for Lake's protocol (episodes drawn inside one ``images_evaluation`` alphabet)."""
    recipe = (rec.get("config") or {}).get("recipe") or {}
    return bool(recipe.get("within_alphabet")) or rec.get("split") == "evaluation"


def setting_of(rec: dict) -> str:
    return reference.setting_name(int(rec["ways"]), int(rec["shots"]), within_alphabet(rec))


def fmt_seconds(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "–"
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def fmt_accuracy(acc: float, ci95: float | None) -> str:
    """Fractions (as records store them) shown in percent: ``98.62 ± 0.21``."""
    if ci95 is None or (isinstance(ci95, float) and math.isnan(ci95)):
        return f"{100 * acc:.2f}"
    return f"{100 * acc:.2f} ± {100 * ci95:.2f}"


def _order(method: str, setting: str) -> tuple:
    canon = reference.canonical_method(method)
    m = list(reference.METHODS).index(canon) if canon in reference.METHODS else len(reference.METHODS)
    s = reference.SETTINGS.index(setting.split(" ")[0]) if setting.split(" ")[0] in reference.SETTINGS else 99
    return (m, method, s, setting)


def fmt_steps(rec: dict) -> str:
    """Meta-steps the record's training ran, "N of M" when a time limit stopped it before its recipe's M."""
    cfg = rec.get("config") or {}
    steps = (cfg.get("recipe") or {}).get("steps")
    if not isinstance(steps, (int, float)):
        return "–"
    stopped = cfg.get("time_limited") or {}
    planned = stopped.get("planned_steps")
    text = f"{int(steps):,}" + (f" of {int(planned):,}" if planned else "")
    return text + (" (shared)" if cfg.get("weights_from") else "")


def protocol_score(rec: dict, which: str) -> dict | None:
    """The record's score under the book's (``"book"``) or the paper's (``"paper"``) protocol, if measured.

    Written into the record by :mod:`mlcore.experiments.protocol_scores`; None where it was not measured.
    """
    return ((rec.get("metrics") or {}).get("protocols") or {}).get(which)


def _official_trials(records: list[dict]) -> dict[str, dict]:
    """Records scored on Lake's 400 official trials, keyed by the record whose weights they score."""
    return {(r.get("config") or {}).get("weights_from"): r for r in records
            if r.get("split") == "lake_official" and r.get("accuracy") is not None}


def classification_rows(records: list[dict], include_missing: bool = False) -> list[dict]:
    """One row per few-shot classification record, sorted by method then setting.

    Each row has our accuracy under the book's protocol (no query sees another; 15 queries per class,
    1,000 episodes, the last checkpoint) and, where the paper measured differently and said how, under
    the paper's protocol, beside the paper's number and its protocol in words. With
    ``include_missing`` every published (method, setting) that has no record gets a row whose ``ours``
    says "not yet produced": gaps are shown, never filled from elsewhere.
    """
    rows, seen = [], set()
    official = _official_trials(records)
    for rec in filter(is_classification, records):
        setting = setting_of(rec)
        book, paper_score = protocol_score(rec, "book"), protocol_score(rec, "paper")
        pub = reference.published(rec["method"], setting)
        # a paper that also published numbers under the book's protocol is compared with those in that column
        pub_book = reference.published(rec["method"], setting, batch_norm=(book or {}).get("protocol", {})
                                       .get("batch_norm"))
        nt_score = protocol_score(rec, "paper_non_transductive")
        if setting.endswith("-within") and rec["name"] in official:
            off = official[rec["name"]]
            paper_score = {"accuracy": off["accuracy"], "ci95": off["ci95"], "episodes": off["episodes"],
                           "record": off["name"]}
        budget = rec.get("budget")
        if budget in (None, "full", "cpu"):  # a smoke run does not stand in for the reference run
            seen.add((reference.canonical_method(rec["method"]), setting))
        paper_words = pub.protocol.words(int(rec["shots"])) if pub else "–"
        rows.append({
            "record": rec["name"],
            "method_id": rec["method"],
            "method": reference.display_name(rec["method"]),
            "setting": setting + (f" ({budget} budget)" if budget not in (None, "full") else ""),
            "ours": fmt_accuracy(rec["accuracy"], rec.get("ci95")),
            "accuracy": rec["accuracy"],
            "ci95": rec.get("ci95"),
            "ours_book": fmt_accuracy(book["accuracy"], book.get("ci95")) if book else "not yet scored",
            "book_accuracy": book["accuracy"] if book else None,
            "ours_paper": (fmt_accuracy(paper_score["accuracy"], paper_score.get("ci95")) if paper_score else
                           # under training statistics the query count changes nothing but the CI
                           "as the book's" if pub and pub.protocol.batch_norm == "running" else
                           "protocol not published" if pub and not pub.protocol.scorable else "–"),
            "paper_protocol_accuracy": paper_score["accuracy"] if paper_score else None,
            "episodes": rec.get("episodes"),
            "train_time": fmt_seconds(rec.get("train_wall_s", rec.get("wall_s"))),
            "steps": fmt_steps(rec),
            "hardware": hardware_label(rec.get("hardware") or {}) if rec.get("hardware") else "–",
            "paper": f"{pub.text()} ({pub.cite})" if pub else "–",
            "paper_book_protocol": (f"{pub_book.text()} {pub_book.note}"
                                    + (f"; ours that way {fmt_accuracy(nt_score['accuracy'], nt_score.get('ci95'))}"
                                       if nt_score else "")
                                    if pub_book is not None and pub_book is not pub else None),
            "paper_accuracy": pub.accuracy if pub else None,
            "paper_protocol": paper_words,
        })
    if include_missing:
        for (m, s), pub in reference.OMNIGLOT.items():
            if (m, s) not in seen:
                rows.append({"record": None, "method_id": m, "method": reference.display_name(m), "setting": s,
                             "ours": MISSING, "ours_book": MISSING, "ours_paper": MISSING,
                             "accuracy": None, "ci95": None, "episodes": None, "train_time": "–",
                             "hardware": "–", "paper": f"{pub.text()} ({pub.cite})",
                             "paper_accuracy": pub.accuracy, "paper_protocol": pub.protocol.words()})
    rows.sort(key=lambda r: _order(r["method_id"], r["setting"]))
    return rows


#: Columns of the table of declared deviations (README and reproduction notes).
DEVIATION_COLUMNS = [("method", "method"), ("field", "field"), ("why", "why")]


def deviation_rows() -> list[dict]:
    """Where each method's full recipe departs from its paper on purpose (``Recipe.deviations``), one row each."""
    from .registry import learner_class, learners

    rows = []
    for name in learners():
        if name in ("scratch", "pretrained"):
            continue
        recipe = learner_class(name).recipe(5, 1, "full")
        for field, why in recipe.deviations.items():
            rows.append({"method": reference.display_name(name), "field": f"`{field}`", "why": why})
    return rows


def missing_settings(records: list[dict]) -> dict[str, list[str]]:
    """Published (method, setting) pairs that no record covers yet: display name -> settings."""
    have = {(reference.canonical_method(r["method"]), setting_of(r)) for r in records
            if is_classification(r) and r.get("budget") in (None, "full", "cpu")}
    out: dict[str, list[str]] = {}
    for (m, s) in reference.OMNIGLOT:
        if (m, s) not in have:
            out.setdefault(reference.display_name(m), []).append(s)
    return out


MAX_METRICS = 8
# Keys that are not our headline numbers: curves, per-episode lists, and the papers' numbers
# (those are quoted in the chapters beside ours, never listed as ours).
_SKIP_METRICS = ("paper", "history", "learning_curve", "per_episode", "final_train", "config", "device")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _flatten(d: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Numeric leaves of nested metric dicts (up to three levels) as ("a.b", "text") pairs.

    A dict that carries a ``ci95`` is one measurement: it is shown as its first other
    number with the CI (``"random.mean_total_reward", "4.965 ± 0.2563"``); timings and
    settings beside it are left out.
    """
    if _is_number(d.get("ci95")):
        for k, v in d.items():
            if k != "ci95" and _is_number(v) and not str(k).endswith("_s"):
                return [(f"{prefix}{k}", f"{v:.4g} ± {d['ci95']:.2g}")]
    out: list[tuple[str, str]] = []
    for k, v in d.items():
        if str(k) in _SKIP_METRICS:
            continue
        key = f"{prefix}{k}"
        if _is_number(v):
            out.append((key, f"{v:.4g}"))
        elif isinstance(v, dict) and depth < 2:
            out += _flatten(v, key + ".", depth + 1)
    return out


def _rl_key(rec: dict) -> str | None:
    """'bandit_n10_k5' for the records ``rl2_bandit_n10_k5`` / ``baselines_bandit_n10_k5``, else None."""
    for prefix in ("rl2_", "baselines_"):
        if rec["name"].startswith(prefix) and rec.get("method") in ("rl2", "baselines"):
            return rec["name"][len(prefix):]
    return None


def _reward(d: dict | None) -> str:
    """'6.54 ± 0.14' (two decimals for short bandit trials, where the methods differ by tenths), '78.7 ± 1.0'."""
    if not d or not _is_number(d.get("mean_total_reward")):
        return "–"
    digits = 2 if abs(d["mean_total_reward"]) < 20 else 1
    ci = f" ± {d['ci95']:.{digits}f}" if _is_number(d.get("ci95")) else ""
    return f"{d['mean_total_reward']:.{digits}f}{ci}"


def rl_rows(records: list[dict]) -> list[dict]:
    """One row per meta-RL setting: RL² and the paper's comparison columns, ours beside the paper's."""
    by_key: dict[str, dict] = {}
    for rec in records:
        key = _rl_key(rec)
        if key is not None:
            by_key.setdefault(key, {})[rec["method"]] = rec
    rows = []
    for key in [k for k in reference.RL2_PAPER if k in by_key]:
        paper, recs = reference.RL2_PAPER[key], by_key[key]
        agent, base = recs.get("rl2"), (recs.get("baselines") or {}).get("metrics", {}).get("baselines", {})
        best = "Gittins" if key.startswith("bandit") else "PSRL"
        rl2 = "missing"
        if agent is not None:
            m = agent["metrics"]
            bf16 = ((agent.get("config") or {}).get("rl2") or {}).get("precision") == "bfloat16"
            rl2 = (f"{_reward(m)} ({m.get('updates_done', '?')} updates, {fmt_seconds(agent.get('train_wall_s'))}"
                   + (", bfloat16 PPO passes" if bf16 else "") + ")")
        rows.append({"setting": key, "rl2": rl2, "rl2_paper": paper.get("RL2"), "best": best,
                     "best_ours": _reward(base.get(best)), "best_paper": paper.get(best),
                     "ucb_ours": _reward(base.get("UCB1")), "ucb_paper": paper.get("UCB1"),
                     "random_ours": _reward(base.get("random")), "random_paper": paper.get("random"),
                     "hardware": hardware_label(agent["hardware"]) if agent and agent.get("hardware") else "–"})
    return rows


RL_COLUMNS = [("setting", "setting"), ("rl2", "RL², ours"), ("rl2_paper", "RL², paper"), ("best", "yardstick"),
              ("best_ours", "yardstick, ours"), ("best_paper", "yardstick, paper"), ("ucb_ours", "UCB1, ours"),
              ("ucb_paper", "UCB1, paper"), ("random_ours", "random, ours"), ("random_paper", "random, paper"),
              ("hardware", "RL² hardware")]


def sinusoid_rows(records: list[dict]) -> list[dict]:
    """5-shot sinusoid MSE after 1 / 5 / 10 steps for MAML and the pretrained baseline, beside the paper's."""
    rows = []
    for rec in records:
        if rec.get("dataset") != "sinusoid" or "mse" not in (rec.get("metrics") or {}):
            continue
        for who in ("maml", "pretrained"):
            mse = rec["metrics"]["mse"].get(f"{who}_k5")
            if mse is None:
                continue
            paper = reference.SINUSOID_5SHOT_MSE.get(who, {})
            rows.append({"record": rec["name"], "model": who,
                         "ours": " / ".join(f"{mse[f'steps={n}'][0]:.2f} ± {mse[f'steps={n}'][1]:.2f}"
                                            for n in (1, 5, 10)),
                         "paper": " / ".join(f"{paper[n]:g}" for n in (1, 5, 10)) if paper else "–",
                         "steps": (rec.get("config") or {}).get("steps"),
                         "train_time": fmt_seconds(rec.get("train_wall_s")),
                         "hardware": hardware_label(rec["hardware"]) if rec.get("hardware") else "–"})
    return rows


SINUSOID_COLUMNS = [("model", "model"), ("ours", "ours: MSE after 1 / 5 / 10 steps (95 % CI)"),
                    ("paper", "paper"), ("steps", "meta-iterations"), ("train_time", "train time"),
                    ("hardware", "hardware"), ("record", "record")]


def other_rows(records: list[dict]) -> list[dict]:
    """Records that have no table of their own (domain shift, ablations, task similarity, ...)."""
    rows = []
    for rec in records:
        if is_classification(rec) or _rl_key(rec) is not None or rec.get("dataset") == "sinusoid":
            continue
        summary = SUMMARIES.get(rec.get("method"))
        if summary is not None:
            rows.append({"record": rec["name"], "method": reference.display_name(rec["method"]),
                         "dataset": rec.get("dataset", "–"), "metrics": summary(rec),
                         "train_time": fmt_seconds(rec.get("train_wall_s", rec.get("wall_s"))),
                         "hardware": hardware_label(rec.get("hardware") or {}) if rec.get("hardware") else "–"})
            continue
        scalars = []
        if rec.get("accuracy") is not None:
            scalars.append(f"accuracy = {fmt_accuracy(rec['accuracy'], rec.get('ci95'))} %")
        scalars += [f"{k} = {v}" for k, v in _flatten(rec.get("metrics") or {})]
        if len(scalars) > MAX_METRICS:
            scalars = scalars[:MAX_METRICS] + ["…"]
        rows.append({"record": rec["name"], "method": reference.display_name(rec["method"]),
                     "dataset": rec.get("dataset", "–"), "metrics": "; ".join(scalars) or "–",
                     "train_time": fmt_seconds(rec.get("train_wall_s", rec.get("wall_s"))),
                     "hardware": hardware_label(rec.get("hardware") or {}) if rec.get("hardware") else "–"})
    return sorted(rows, key=lambda r: r["record"])


def _ways_sweep_summary(rec: dict) -> str:
    """Each test setting: accuracy by training ways (per training shot), with the steps each model ran."""
    grid = (rec.get("metrics") or {}).get("grid") or []
    parts = []
    for tw, ts in sorted({(c["test_ways"], c["test_shots"]) for c in grid}):
        cells = sorted((c for c in grid if (c["test_ways"], c["test_shots"]) == (tw, ts) and c["train_shots"] == ts),
                       key=lambda c: c["train_ways"])
        if cells:
            parts.append(f"test {tw}w{ts}s: " + ", ".join(
                f"train {c['train_ways']}-way {100 * c['accuracy']:.1f}"
                + (f" ({c['steps']:,} ep.)" if c.get("steps") else "") for c in cells))
    return "; ".join(parts) or "–"


def _traits_summary(rec: dict) -> str:
    """Accuracy (%) at each shot for each method: the data-efficiency trait of chapter 2."""
    methods = (rec.get("metrics") or {}).get("methods") or {}
    shots = (rec.get("metrics") or {}).get("shots") or []
    parts = [f"{name} " + " / ".join(f"{100 * by[str(k)]['accuracy']:.1f}" for k in shots if str(k) in by)
             for name, by in methods.items()]
    return (f"5-way accuracy at {' / '.join(map(str, shots))} shots: " + "; ".join(parts)) if parts else "–"


# records whose metrics read better as one sentence than as flattened keys
def _task_similarity_summary(rec: dict) -> str:
    """Transfer to new tasks from the retrieved source, beside random, pooled and the oracle, per recipe."""
    m = rec.get("metrics") or {}
    frozen = (m.get("transfer_tables") or {}).get("all") or {}
    tuned = ((m.get("fine_tuning") or {}).get("tables") or {}).get("all") or {}
    if not frozen:  # an older record: only its headline
        return f"accuracy = {fmt_accuracy(rec['accuracy'], rec.get('ci95'))} %" if rec.get("accuracy") else "–"

    def pick(table: dict, start: str, label: str) -> str | None:
        row = next((v for k, v in table.items() if k.startswith(start)), None)
        return None if row is None else f"{label} {fmt_accuracy(row['accuracy'], row['ci95'])}"

    parts = []
    for name, table in (("fine-tuned", tuned), ("frozen features", frozen)):
        cells = [pick(table, "retrieved by learned metric, y = transfer gain", "retrieved (f_θ on gains)"),
                 pick(table, "random source", "random source"), pick(table, "one network", "pooled")
                 or pick(table, "pooled", "pooled"), pick(table, "best source", "best in hindsight")]
        if any(cells):
            parts.append(f"{name}: " + ", ".join(c for c in cells if c))
    groups = next(iter(frozen.values())).get("n")
    return "; ".join(parts) + (f" (% on {groups} new 5-way 5-shot tasks)" if groups else "")


SUMMARIES = {"protonet_ways_sweep": _ways_sweep_summary, "traits": _traits_summary,
             "task_similarity": _task_similarity_summary}


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """``columns`` is a list of (row key, header)."""
    def cell(v) -> str:
        return "–" if v is None else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)


CLASSIFICATION_COLUMNS = [("method", "method"), ("setting", "setting"),
                          ("ours_book", "ours, book's protocol, % (95 % CI)"),
                          ("ours_paper", "ours, paper's protocol"), ("paper", "paper, %"),
                          ("paper_protocol", "the paper's protocol"), ("steps", "meta-steps"),
                          ("train_time", "train time"), ("hardware", "hardware"), ("record", "record")]
OTHER_COLUMNS = [("record", "record"), ("method", "method"), ("dataset", "task"), ("metrics", "metrics"),
                 ("train_time", "train time"), ("hardware", "hardware")]


def results_markdown(directory: str | os.PathLike | None = None) -> str:
    """The whole results section: classification table, gaps, other records."""
    records, skipped = load_records(directory)
    intro = ("Omniglot few-shot classification, Vinyals split (\"-within\": Lake's 20-way within-alphabet "
             "protocol). **Book's protocol**: the shared fixed test episodes (1,000, 15 queries per class, the "
             "last checkpoint) with no query seeing another: batch norm with training statistics, or, for the "
             "MAML family (whose batch norm keeps none), the support set's statistics. **Paper's protocol**: the "
             "same weights re-scored the way the paper measured (batch norm, queries per class, episodes; "
             "checkpoint selection and training cannot be redone and are only stated). Generated by `python -m "
             "mlcore.report --readme` from `results/*.json`; the paper's number is quoted beside ours, never "
             "used as ours.")
    parts = [intro, ""]
    rows = classification_rows(records)
    for r in rows:
        if r.get("paper_book_protocol"):
            r["ours_book"] = f"{r['ours_book']} (paper: {r['paper_book_protocol']})"
    parts.append(markdown_table(rows, CLASSIFICATION_COLUMNS) if rows else "_No classification records yet._")
    gaps = missing_settings(records)
    if gaps:
        parts += ["", "Published settings with no record yet: "
                  + "; ".join(f"{m} ({', '.join(s)})" for m, s in gaps.items()) + "."]
    deviations = deviation_rows()
    if deviations:
        parts += ["", ("Where a full recipe departs from its paper on purpose (`Recipe.deviations`; "
                       "`tests/test_recipes.py` checks every other field against the paper's):"), "",
                  markdown_table(deviations, DEVIATION_COLUMNS)]
    rl = rl_rows(records)
    if rl:
        parts += ["", ("Meta-RL (Duan et al. 2016): mean total reward per trial over 1,000 seeded evaluation trials "
                       "(± 95 % CI); the yardstick is Gittins for bandits and PSRL for MDPs."), "",
                  markdown_table(rl, RL_COLUMNS)]
    sin = sinusoid_rows(records)
    if sin:
        parts += ["", "Sinusoid regression (Finn et al. 2017), 5-shot, 600 test tasks:", "",
                  markdown_table(sin, SINUSOID_COLUMNS)]
    others = other_rows(records)
    if others:
        parts += ["", "Other records:", "", markdown_table(others, OTHER_COLUMNS)]
    if skipped:
        parts += ["", "JSON files in `results/` that are not records: " + ", ".join(skipped) + "."]
    return "\n".join(parts)


def reproduction_notes_markdown(directory: str | os.PathLike | None = None) -> str:
    """The book's appendix "Reproduction notes": how each record in ``directory`` (default ``results/``) was made.

    One row per record, sorted by name: the hardware and PyTorch version it ran on, its budget, the training steps
    and what ended training (the recipe's planned steps, or the time limit that ``config.time_limited`` records),
    the training and whole-run wall times, the git commit of the code (``+ local changes`` for a ``-dirty`` one)
    and the date. ``tools/reproduction_notes.py`` writes it to ``book/reproduction-notes.md``.
    """
    records, skipped = load_records(directory)

    def training(rec: dict) -> tuple[str, str]:
        """(steps, what ended training) of one record."""
        cfg = rec.get("config") or {}
        stopped = cfg.get("time_limited") or {}
        source = cfg.get("weights_from") or cfg.get("source_record")
        if source:
            return f"weights of `{source}`", "–"
        planned, unit = None, "steps"
        steps = (cfg.get("recipe") or {}).get("steps")
        if isinstance(cfg.get("rl2"), dict) and _is_number((rec.get("metrics") or {}).get("updates_done")):
            steps, planned, unit = rec["metrics"]["updates_done"], cfg["rl2"].get("updates"), "updates"
        elif not _is_number(steps):
            steps = cfg.get("steps")
        if not _is_number(steps):
            return "–", "–"
        if stopped:
            planned = stopped.get("planned_steps", planned)
        if stopped or (_is_number(planned) and steps < planned):
            total = f" of {int(planned):,}" if _is_number(planned) else ""
            if str(stopped.get("reason", "")).startswith("stop requested"):
                why = "stop requested"
            else:
                why = "time limit" if stopped or (cfg.get("rl2") or {}).get("time_limit_s") else "stopped early"
            return f"{int(steps):,} {unit}", f"{why} ({int(steps):,}{total} {unit})"
        return f"{int(steps):,} {unit}", f"all planned {unit}"

    def hardware(rec: dict) -> str:
        hw = rec.get("hardware") or {}
        if not hw:
            return "–"
        return hardware_label(hw) + (f", torch {hw['torch']}" if hw.get("torch") else "")

    def commit(rec: dict) -> str:
        sha = str(rec.get("git_commit") or "unknown")
        dirty = sha.endswith("-dirty")
        sha = sha.removesuffix("-dirty")
        return (f"`{sha[:10]}`" if sha != "unknown" else "unknown") + (" + local changes" if dirty else "")

    def date(rec: dict) -> str:
        created = str(rec.get("created") or "")
        return created[:16].replace("T", " ") + " UTC" if len(created) >= 16 else (created or "–")

    rows = []
    for rec in sorted(records, key=lambda r: r["name"]):
        steps, ended = training(rec)
        rows.append({"record": f"`{rec['name']}`", "hardware": hardware(rec), "budget": rec.get("budget") or "–",
                     "steps": steps, "ended": ended, "train": fmt_seconds(rec.get("train_wall_s")),
                     "run": fmt_seconds(rec.get("wall_s")), "commit": commit(rec), "date": date(rec)})
    by_hw: dict[str, int] = {}
    for rec in records:
        label = hardware_label(rec["hardware"]) if rec.get("hardware") else "unknown hardware"
        by_hw[label] = by_hw.get(label, 0) + 1
    limited = sum(r["ended"].startswith("time limit") for r in rows)
    intro = (
        "Every reference number in this book is read from a record: one JSON file per run in the repository's "
        "`results/` folder, written by the run itself. This appendix lists how each record was produced, so that "
        "you can judge a number and run it again (`python -m mlcore reproduce --only NAME`, or `make reproduce`).\n"
        "\n"
        "- **Hardware**: the GPU, or the CPU and the number of threads the run used, and the PyTorch version. "
        "Compare wall times only between records made on the same hardware.\n"
        "- **Budget**: `full` is the budget of the reference records (the chapters' live cells run a much smaller "
        "one); – means the record does not say.\n"
        "- **Steps** and **ended by**: the training steps (meta-batches, or policy updates for RL²) and what "
        "ended training: *all planned steps* when the recipe ran to its end, *time limit* when the run's "
        "wall-clock allowance ran out first. Such a record is scored with the weights reached by then, so it can "
        "understate what the whole recipe reaches. A record that scores another record's trained weights names "
        "that record.\n"
        "- **Training** is the wall time of the training that produced the record's weights (records that score one "
        "trained model in several settings show the same time); **run** is the wall time of the record's own run, "
        "evaluation included, shorter than training when it reused weights trained before.\n"
        "- **Code**: the git commit the run started from; *+ local changes* means the working tree also held "
        "uncommitted edits.")
    summary = (f"{len(rows)} records: "
               + ", ".join(f"{n} on {hw}" for hw, n in sorted(by_hw.items(), key=lambda x: (-x[1], x[0])))
               + f"; {limited} ended by a time limit.")
    columns = [("record", "record"), ("hardware", "hardware"), ("budget", "budget"), ("steps", "steps"),
               ("ended", "ended by"), ("train", "training"), ("run", "run"), ("commit", "code"), ("date", "date")]
    parts = ["# Reproduction notes", "", intro, "", summary, "",
             markdown_table(rows, columns) if rows else "_No records yet._"]
    if skipped:
        parts += ["", "JSON files in `results/` that are not records: " + ", ".join(skipped) + "."]
    deviations = deviation_rows()
    if deviations:
        parts += ["", "(recipe-deviations)=", "## Where a recipe departs from its paper", "",
                  ("Each method's `full` recipe is its paper's, field by field (`tests/test_recipes.py` checks them), "
                   "except where the book chooses otherwise on purpose. Each such field declares why "
                   "(`Recipe.deviations`):"), "",
                  markdown_table(deviations, DEVIATION_COLUMNS)]
    parts += ["", ("This page is generated from the records by `python tools/reproduction_notes.py`; "
                   "do not edit it by hand.")]
    return "\n".join(parts) + "\n"


def replace_section(text: str, body: str) -> str:
    """Put ``body`` between the results markers of ``text`` (markers kept)."""
    i, j = text.find(START), text.find(END)
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"README needs the markers {START} and {END} (in that order) around the results section")
    return text[: i + len(START)] + "\n" + body.strip() + "\n" + text[j:]


def update_readme(readme: str | os.PathLike = README, directory: str | os.PathLike | None = None) -> Path:
    readme = Path(readme)
    atomic_write_text(readme, replace_section(readme.read_text(), results_markdown(directory)))
    return readme


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlcore.report", description="results tables from results/*.json")
    p.add_argument("--results", default=None, help="folder of records (default: the repository's results/)")
    p.add_argument("--readme", nargs="?", const=str(README), default=None,
                   help="rewrite the results section of README.md (or of the file given)")
    args = p.parse_args(argv)
    if args.readme:
        path = update_readme(args.readme, args.results)
        print(f"updated the results section of {path.name}")
    else:
        print(results_markdown(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
