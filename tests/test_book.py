"""The book's generated parts: the results table (from records, never typed) and the book's config."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlcore import reference, report

ROOT = Path(__file__).resolve().parent.parent


def _record(name, method, ways, shots, acc, ci, *, within=False, budget="full", train_wall_s=754.0, gpu=True):
    hw = {"platform": "Linux", "torch": "2.11", "cpu_threads": 16}
    if gpu:
        hw["gpu"] = "NVIDIA H200"
    return {"name": name, "method": method, "dataset": "omniglot",
            "split": "evaluation" if within else "vinyals/test", "ways": ways, "shots": shots,
            "accuracy": acc, "ci95": ci, "episodes": 1000, "seed": 0,
            "config": {"recipe": {"within_alphabet": within}}, "metrics": {}, "hardware": hw,
            "wall_s": train_wall_s + 20, "train_wall_s": train_wall_s, "git_commit": "abc", "budget": budget}


@pytest.fixture
def results_dir(tmp_path):
    recs = [
        _record("protonet_omniglot_20w5s", "protonet", 20, 5, 0.9871, 0.0012),
        _record("protonet_omniglot_5w1s", "protonet", 5, 1, 0.98612, 0.00234, train_wall_s=42.0, gpu=False),
        _record("siamese_lake", "siamese", 20, 1, 0.874, 0.0081, within=True),
        _record("maml_omniglot_5w1s_smoke", "maml", 5, 1, 0.61, 0.02, budget="smoke"),
        {"name": "rl2_bandit_n10_k5", "method": "rl2", "dataset": "bernoulli_bandit",
         "metrics": {"mean_total_reward": 6.71, "ci95": 0.14, "updates_done": 150, "history": [1, 2],
                     "paper": {"RL2": 6.7}}, "hardware": {},
         "train_wall_s": 5000.0},
        {"name": "baselines_bandit_n10_k5", "method": "baselines", "dataset": "bernoulli_bandit",
         "metrics": {"baselines": {"UCB1": {"mean_total_reward": 6.52, "ci95": 0.1, "wall_s": 0.2, "c": 0.05},
                                   "Random": {"mean_total_reward": 5.01}}}},
        {**_record("task_similarity_omniglot", "task_similarity", 5, 1, 0.912, 0.01), "split": "background"},
        _record("matching_fce_omniglot_5w1s", "matching_fce", 5, 1, 0.975, 0.003),
    ]
    for r in recs:
        (tmp_path / f"{r['name']}.json").write_text(json.dumps(r))
    (tmp_path / "bench_sampling.json").write_text(json.dumps({"ratio": 12.0}))  # not a record
    return tmp_path


def test_reference_numbers_match_targets():
    assert reference.published("protonet", "5w1s").accuracy == 98.8
    assert reference.published("maml", "20w1s").text() == "95.8 ± 0.3"
    assert reference.published("siamese", "20w1s-within").accuracy == 92.0
    assert reference.published("siamese", "5w1s").paper == "vinyals2016matching"
    assert reference.published("anil", "5w1s") is None  # the paper has no number there
    assert reference.canonical_method("Matching_Net") == "matching"
    assert reference.RL2_BANDITS[(100, 10)]["RL2"] == 83.5
    assert reference.RL2_MDPS[25]["PSRL"] == 408.8
    assert reference.SINUSOID_5SHOT_MSE["maml"][10] == 0.35


def test_reference_keys_are_in_the_bibliography():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    used = {p.paper for p in reference.OMNIGLOT.values()} | {k for _, k in reference.LAKE_WITHIN_ALPHABET.values()}
    assert used <= keys, f"missing BibTeX entries: {sorted(used - keys)}"


def test_classification_rows_come_from_records(results_dir):
    records, skipped = report.load_records(results_dir)
    assert skipped == ["bench_sampling.json"]
    rows = report.classification_rows(records)
    assert [r["record"] for r in rows] == ["protonet_omniglot_5w1s", "protonet_omniglot_20w5s",
                                           "maml_omniglot_5w1s_smoke", "matching_fce_omniglot_5w1s",
                                           "siamese_lake"]
    assert rows[3]["method"] == "Matching Networks (FCE)" and rows[3]["paper"].startswith("98.1 (Vinyals")
    proto = rows[0]
    assert proto["ours"] == "98.61 ± 0.23"
    assert proto["paper"] == "98.8 (Snell et al. 2017)"
    assert proto["train_time"] == "42 s" and proto["hardware"] == "CPU (16 threads)"
    assert rows[1]["train_time"] == "12.6 min" and rows[1]["hardware"] == "NVIDIA H200"
    assert rows[2]["setting"] == "5w1s (smoke budget)"
    assert rows[4]["setting"] == "20w1s-within" and rows[4]["paper"].startswith("92 (Koch")


def test_missing_rows_are_marked_not_filled(results_dir):
    records, _ = report.load_records(results_dir)
    rows = report.classification_rows(records, include_missing=True)
    maml = [r for r in rows if r["method"] == "MAML" and r["setting"] == "20w1s"]
    assert len(maml) == 1 and maml[0]["ours"] == report.MISSING and maml[0]["accuracy"] is None
    # every published setting once (a record or a gap), plus the smoke-budget MAML row, which does not
    # stand in for the reference run, so MAML 5w1s is also listed as a gap
    assert len(rows) == len(reference.OMNIGLOT) + 1
    assert any(r["method"] == "MAML" and r["setting"] == "5w1s" and r["ours"] == report.MISSING for r in rows)
    gaps = report.missing_settings(records)
    assert "5w1s" not in gaps["Prototypical Networks"] and "20w1s" in gaps["Prototypical Networks"]


def test_readme_section_is_rewritten_between_markers(results_dir, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{report.START}\nold table\n{report.END}\n\n## After\n")
    report.main(["--readme", str(readme), "--results", str(results_dir)])
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Title\n\nintro\n")
    assert text.rstrip().endswith("## After")
    body = text[text.index(report.START):text.index(report.END)]
    # a record not yet scored under the protocols says so; the paper's number and protocol stand beside it
    assert ("| Prototypical Networks | 5w1s | not yet scored | as the book's | 98.8 (Snell et al. 2017) | batch norm with "
            "training statistics, queries not stated, 1,000 episodes, checkpoint chosen on validation | – | 42 s |"
            in body)  # no recipe: no steps
    # meta-RL: ours and the paper's in separate, labelled columns; a baseline without a CI shows its mean
    assert "| bandit_n10_k5 | 6.71 ± 0.14 (150 updates, 83.3 min) | 6.7 | Gittins | – | 6.6 | 6.52 ± 0.10 |" in body
    assert "wall_s" not in body
    # an Omniglot analysis that is not scored on the shared test episodes is not in the comparison table
    assert "| task_similarity_omniglot |" in body and "accuracy = 91.20 ± 1.00 %" in body
    assert "| Task_similarity |" not in body
    assert "bench_sampling.json" in body
    # idempotent: a second run gives the same file
    report.main(["--readme", str(readme), "--results", str(results_dir)])
    assert readme.read_text() == text


def test_rows_show_both_protocols_and_like_for_like_paper_numbers(tmp_path):
    def scored(name, method, book, paper):
        rec = _record(name, method, 5, 1, paper, 0.005)
        rec["metrics"] = {"protocols": {
            "book": {"accuracy": book, "ci95": 0.01, "protocol": {"batch_norm": "support"}},
            "paper": {"accuracy": paper, "ci95": 0.005, "protocol": {"batch_norm": "batch"}}}}
        return rec

    for rec in (scored("maml_omniglot_5w1s", "maml", 0.90, 0.95), scored("reptile_omniglot_5w1s", "reptile", 0.93, 0.96)):
        (tmp_path / f"{rec['name']}.json").write_text(json.dumps(rec))
    body = report.results_markdown(tmp_path)
    assert "| MAML | 5w1s | 90.00 ± 1.00 | 95.00 ± 0.50 | 98.7 ± 0.4 (Finn et al. 2017) | batch norm with the test" in body
    # Reptile's paper also published non-transductive numbers: they stand beside ours under the book's protocol
    assert "| Reptile | 5w1s | 93.00 ± 1.00 (paper: 95.39 non-transductive) | 96.00 ± 0.50 | 97.68 (Nichol" in body


def test_readme_without_markers_is_an_error(tmp_path, results_dir):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="results:start"):
        report.update_readme(readme, results_dir)
    assert readme.read_text() == "# no markers\n"


def test_repository_readme_has_the_markers():
    text = (ROOT / "README.md").read_text()
    assert text.index(report.START) < text.index(report.END)


def _toc_files(node) -> list[str]:
    out = []
    if isinstance(node, dict):
        if "file" in node:
            out.append(node["file"])
        for v in node.values():
            out += _toc_files(v)
    elif isinstance(node, list):
        for v in node:
            out += _toc_files(v)
    return out


def test_toc_lists_existing_pages_and_every_notebook():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + _toc_files(toc)
    missing = [f for f in files if not any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb"))]
    assert missing == [], f"_toc.yml lists pages that do not exist: {missing}"
    notebooks = sorted(f"notebooks/{p.stem}" for p in (ROOT / "notebooks").glob("*.ipynb"))
    unlisted = [n for n in notebooks if n not in files]
    assert unlisted == [], f"notebooks not in _toc.yml (the book would silently skip them): {unlisted}"


def test_config_points_everything_at_one_repository():
    import yaml

    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["repository"]["url"] == "https://github.com/meta-learning-engineered/book"
    assert cfg["launch_buttons"]["colab_url"] and cfg["launch_buttons"]["binderhub_url"]
    assert "book/references.bib" in cfg["bibtex_bibfiles"]
    assert "notebooks/*.py" in cfg["exclude_patterns"]


def test_rl_and_sinusoid_tables_come_from_records():
    """Meta-RL rows pair RL² with its baselines record and the paper's columns; missing RL² says so."""
    base = {"name": "baselines_bandit_n10_k5", "method": "baselines", "dataset": "bernoulli_bandit",
            "metrics": {"baselines": {"random": {"mean_total_reward": 5.023, "ci95": 0.13},
                                      "Gittins": {"mean_total_reward": 6.564, "ci95": 0.14},
                                      "UCB1": {"mean_total_reward": 6.588, "ci95": 0.14}}}}
    agent = {"name": "rl2_bandit_n10_k5", "method": "rl2", "dataset": "bernoulli_bandit", "train_wall_s": 600,
             "hardware": {"cpu_threads": 1},
             "metrics": {"mean_total_reward": 6.6, "ci95": 0.14, "updates_done": 150}}
    mdp = {"name": "baselines_mdp_n10", "method": "baselines", "dataset": "tabular_mdp",
           "metrics": {"baselines": {"PSRL": {"mean_total_reward": 133.04, "ci95": 1.6}}}}
    rows = report.rl_rows([agent, base, mdp])
    assert [r["setting"] for r in rows] == ["bandit_n10_k5", "mdp_n10"]
    assert rows[0]["rl2"] == "6.60 ± 0.14 (150 updates, 10.0 min)" and rows[0]["rl2_paper"] == 6.7
    assert rows[0]["best_ours"] == "6.56 ± 0.14" and rows[0]["best_paper"] == 6.6
    assert rows[1]["rl2"] == "missing" and rows[1]["best"] == "PSRL" and rows[1]["best_ours"] == "133.0 ± 1.6"
    sin = {"name": "maml_sinusoid", "method": "maml_sinusoid", "dataset": "sinusoid", "config": {"steps": 70000},
           "metrics": {"mse": {"maml_k5": {f"steps={n}": [0.5, 0.05] for n in (0, 1, 5, 10)}}}}
    (row,) = report.sinusoid_rows([sin])
    assert row["ours"] == "0.50 ± 0.05 / 0.50 ± 0.05 / 0.50 ± 0.05" and row["paper"] == "0.67 / 0.38 / 0.35"
    bf16 = {**agent, "config": {"rl2": {"precision": "bfloat16"}}}  # a row says when its PPO passes ran in bfloat16
    assert report.rl_rows([bf16, base])[0]["rl2"] == "6.60 ± 0.14 (150 updates, 10.0 min, bfloat16 PPO passes)"
    # neither table's records are repeated under "Other records"
    assert report.other_rows([agent, base, mdp, sin]) == []


def test_steps_column_and_one_line_summaries():
    """The README says how many meta-steps each row ran, and sweep/traits records read as sentences."""
    cut = {"config": {"recipe": {"steps": 1217}, "time_limited": {"planned_steps": 2000, "steps_run": 1217}}}
    assert report.fmt_steps(cut) == "1,217 of 2,000"
    assert report.fmt_steps({"config": {"recipe": {"steps": 2500}, "weights_from": "p5"}}) == "2,500 (shared)"
    assert report.fmt_steps({"config": {}}) == "–"
    cell = {"train_shots": 1, "test_ways": 5, "test_shots": 1, "accuracy": 0.9644, "steps": 997}
    sweep = {"name": "protonet_ways_sweep", "method": "protonet_ways_sweep", "dataset": "omniglot",
             "metrics": {"grid": [{**cell, "train_ways": 20}, {**cell, "train_ways": 5, "accuracy": 0.8645,
                                                                "steps": 584}]}}
    traits = {"name": "traits_accuracy_vs_shots", "method": "traits", "dataset": "omniglot",
              "metrics": {"shots": [1, 5], "methods": {"scratch": {"1": {"accuracy": 0.704}, "5": {"accuracy": 0.9285}},
                                                       "protonet": {"1": {"accuracy": 0.988}, "5": {"accuracy": 0.997}}}}}
    rows = {r["record"]: r["metrics"] for r in report.other_rows([sweep, traits])}
    assert rows["protonet_ways_sweep"] == ("test 5w1s: train 5-way 86.5 (584 ep.), train 20-way 96.4 (997 ep.)")
    assert rows["traits_accuracy_vs_shots"] == ("5-way accuracy at 1 / 5 shots: scratch 70.4 / 92.8; "
                                                 "protonet 98.8 / 99.7")


# ------------------------------------------------------------------ the reproduction notes appendix
def _notes_records(tmp_path):
    recs = [
        {**_record("maml_omniglot_5w1s", "maml", 5, 1, 0.948, 0.003, train_wall_s=265.0),
         "config": {"recipe": {"steps": 1217},
                    "time_limited": {"planned_steps": 2000, "steps_run": 1217, "reason": "time limit reached"}},
         "git_commit": "dd404a12982aeccc01852654059d48836c2e38ed-dirty", "created": "2026-11-26T15:34:26Z"},
        {**_record("protonet_omniglot_5w1s", "protonet", 5, 1, 0.987, 0.0015, train_wall_s=2009.0, gpu=False),
         "config": {"recipe": {"steps": 5000}}, "git_commit": "763b5475f19e4bd42efcfc438a8dc7eb4f06533e",
         "created": "2026-11-26T10:48:34Z"},
        {**_record("protonet_omniglot_20w1s", "protonet", 20, 1, 0.954, 0.0016, train_wall_s=2009.0, gpu=False),
         "config": {"recipe": {"steps": 5000}, "weights_from": "protonet_omniglot_5w1s"}, "budget": None},
        {"name": "rl2_mdp_n25", "method": "rl2", "dataset": "tabular_mdp", "train_wall_s": 296.5, "wall_s": 297.0,
         "config": {"rl2": {"updates": 150, "time_limit_s": 283.9}}, "metrics": {"updates_done": 43},
         "hardware": {"cpu_threads": 1, "torch": "2.11.0+cu130", "gpu": "NVIDIA H100 80GB HBM3"},
         "git_commit": "unknown", "created": "2026-11-26T15:34:37Z"},
        {"name": "baselines_mdp_n25", "method": "baselines", "dataset": "tabular_mdp", "wall_s": 2.3},
    ]
    for r in recs:
        (tmp_path / f"{r['name']}.json").write_text(json.dumps(r))
    (tmp_path / "bench_sampling.json").write_text(json.dumps({"ratio": 12.0}))  # not a record
    return tmp_path


def test_reproduction_notes_list_how_each_record_was_made(tmp_path):
    """Per record: hardware, budget, steps and what ended training, wall times, commit and date."""
    text = report.reproduction_notes_markdown(_notes_records(tmp_path))
    lines = text.splitlines()
    assert lines[0] == "# Reproduction notes"
    assert ("| record | hardware | budget | steps | ended by | training | run | code | date |") in lines
    assert ("| `maml_omniglot_5w1s` | NVIDIA H200, torch 2.11 | full | 1,217 steps | time limit (1,217 of 2,000 "
            "steps) | 4.4 min | 4.8 min | `dd404a1298` + local changes | 2026-11-26 15:34 UTC |") in lines
    assert ("| `protonet_omniglot_5w1s` | CPU (16 threads), torch 2.11 | full | 5,000 steps | all planned steps "
            "| 33.5 min | 33.8 min | `763b5475f1` | 2026-11-26 10:48 UTC |") in lines
    # scores another record's weights: names it, no steps of its own; no budget recorded
    assert any(line.startswith("| `protonet_omniglot_20w1s` | CPU (16 threads), torch 2.11 | – | weights of "
                               "`protonet_omniglot_5w1s` | – | 33.5 min |") for line in lines)
    # RL²: policy updates, cut by the run's time limit (no config.time_limited in older records)
    assert ("| `rl2_mdp_n25` | NVIDIA H100 80GB HBM3, torch 2.11.0+cu130 | – | 43 updates | time limit (43 of 150 "
            "updates) | 4.9 min | 5.0 min | unknown | 2026-11-26 15:34 UTC |") in lines
    assert "| `baselines_mdp_n25` | – | – | – | – | – | 2 s | unknown | – |" in lines
    assert ("5 records: 2 on CPU (16 threads), 1 on NVIDIA H100 80GB HBM3, 1 on NVIDIA H200, 1 on unknown "
            "hardware; 2 ended by a time limit.") in lines
    assert "JSON files in `results/` that are not records: bench_sampling.json." in lines
    # rows sorted by record name; the chapters' history (leases, shared machines) is not in the notes
    names = [line.split("`")[1] for line in lines if line.startswith("| `")]
    assert names == sorted(names)
    # the book's own page for the recipes' declared deviations (chapters link it; the README is not in the book)
    assert "## Where a recipe departs from its paper" in lines
    assert any(line.startswith("| MANN | `optimizer` | Adam, not the paper's RMSprop") for line in lines)


def test_reproduction_notes_page_is_generated_from_the_records():
    """book/reproduction-notes.md is exactly what the records give (regenerate: python tools/reproduction_notes.py)."""
    page = ROOT / "book" / "reproduction-notes.md"
    assert page.read_text(encoding="utf-8") == report.reproduction_notes_markdown(ROOT / "results"), (
        "book/reproduction-notes.md is stale: run `python tools/reproduction_notes.py` (make notes)")


def test_task_similarity_summary_names_each_start_per_recipe():
    from mlcore import report

    def cell(a, c):
        return {"accuracy": a, "ci95": c, "n": 175}
    rec = {"name": "task_similarity_omniglot", "method": "task_similarity", "accuracy": 0.9265, "ci95": 0.0099,
           "metrics": {"transfer_tables": {"all": {
               "one network on every source's characters (pooled)": cell(0.9486, 0.0085),
               "random source (expected)": cell(0.7812, 0.0148),
               "best source in hindsight (oracle, sees the queries)": cell(0.9285, 0.0094),
               "retrieved by learned metric, y = transfer gain": cell(0.8764, 0.0132)}},
               "fine_tuning": {"tables": {"all": {"pooled network": cell(0.9562, 0.0072),
                                                  "random source (one per target)": cell(0.907, 0.0111),
                                                  "retrieved by learned metric, y = transfer gain":
                                                      cell(0.9265, 0.0099)}}}}}
    text = report.SUMMARIES["task_similarity"](rec)
    assert text.startswith("fine-tuned: retrieved (f_θ on gains) 92.65 ± 0.99, random source 90.70 ± 1.11, "
                           "pooled 95.62 ± 0.72; frozen features: retrieved (f_θ on gains) 87.64 ± 1.32")
    assert "best in hindsight 92.85 ± 0.94" in text and text.endswith("(% on 175 new 5-way 5-shot tasks)")


def test_reproduction_notes_tell_a_requested_stop_from_a_time_limit(tmp_path):
    rec = {**_record("fomaml_omniglot_5w1s", "fomaml", 5, 1, 0.97, 0.003),
           "config": {"recipe": {"steps": 5000},
                      "time_limited": {"planned_steps": 60000, "steps_run": 5000,
                                       "reason": "stop requested after 5000 of 60000 steps"}}}
    (tmp_path / "fomaml_omniglot_5w1s.json").write_text(json.dumps(rec))
    text = report.reproduction_notes_markdown(tmp_path)
    assert "| 5,000 steps | stop requested (5,000 of 60,000 steps) |" in text
