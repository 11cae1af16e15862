# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Side by side: every method on the same episodes
#
# The family chapters each trained their methods and compared them with the paper they came from. This chapter
# puts them in one place. Every few-shot classifier in the book was scored by the same function
# (`mlcore.evaluate`) on the **same** fixed test episodes: the ones `EVAL_SEED` draws from the Omniglot test
# characters of the Vinyals split {cite}`vinyals2016matching`. Same episodes means two methods can be compared
# *episode by episode*, which is far more sensitive than comparing two means with their own error bars.
#
# **Objectives.** After this chapter you can
#
# 1. read one table of every method × setting, generated from the records in `results/`, with the paper's
#    number, the training budget actually used, the wall time and the hardware beside each of ours;
# 2. put our numbers on Lake's harder within-alphabet protocol beside Koch et al.'s 92.0 % and the human 95.5 %
#    {cite}`lake2015human,koch2015siamese`;
# 3. decide whether a gap between two methods is real with a **paired** comparison (per-episode differences, a
#    95 % CI, a sign test and a Wilcoxon signed-rank test);
# 4. weigh accuracy against training cost.
#
# Nothing in this chapter trains a model for long: the tables are read from records, and the one live
# experiment (the paired comparison below) scores two untrained yardsticks on the shared episodes. A record that has not been
# produced yet shows as **missing**; no cell is ever filled with a number from elsewhere.

# %% tags=["setup"]
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("mlcore") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+https://github.com/meta-learning-engineered/book.git"], check=True)

# %%
import inspect
import statistics

import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, display

import mlcore
from mlcore import budget as budget_mod
from mlcore import compare, reference
from mlcore.engine import EVAL_SEED, evaluate, test_sampler
from mlcore.compare import html_table
from mlcore.report import load_records

BUDGET = budget_mod.current_budget()
if BUDGET == "smoke":
    torch.set_num_threads(1)  # tiny live cells; one thread avoids oversubscribing shared CI machines
mlcore.seed_everything(0)
ALL_RECORDS, _ = load_records()  # every record in results/ (the only source of the book's numbers)
RECORDS = compare.classification_records()
print("budget:", BUDGET, "| records in results/:", len(ALL_RECORDS),
      "| few-shot classification records:", len(RECORDS))


def table(rows, columns):
    display(HTML(html_table(rows, columns)))


# %% [markdown]
# ## What "the same episodes" means
#
# A record stores, besides its mean accuracy, the accuracy on each of its test episodes (`metrics.per_episode`).
# Two records were scored on identical episodes exactly when the episode sampler was started from the same seed
# with the same ways, shots, queries per class, split and number of episodes; `compare.episode_protocol` reads
# those from a record, and `compare.paired` refuses to pair records whose protocols differ:

# %%
print(inspect.getsource(compare.episode_protocol))
print("EVAL_SEED =", EVAL_SEED)

# %% [markdown]
# ## The table
#
# One row per method and setting. *ours* is the mean accuracy over the record's test episodes with its 95 %
# confidence interval; *paper* is the published number ({mod}`mlcore.reference` holds them as data, each cited in
# the family chapter); *gap* is ours minus the paper's, in points. *steps* is the number of outer training steps
# the run really used (`config.recipe.steps` in the record); *paper steps* is the paper's own training length
# where it is stated. Methods with a published number but no record yet still get their rows, marked missing.

# %%
GRID = compare.comparison_grid(RECORDS)
for r in GRID:
    r["gap_txt"] = "–" if r["gap"] is None else f"{r['gap']:+.1f}"
    r["steps_txt"] = "–" if r["steps"] is None else f"{r['steps']:,}"
    r["paper_steps_txt"] = "–" if r["paper_steps"] is None else f"{r['paper_steps']:,}"
table(GRID, [("method", "method"), ("setting", "setting"), ("ours", "ours, %"), ("paper", "paper, %"),
             ("gap_txt", "gap"), ("steps_txt", "steps"), ("paper_steps_txt", "paper steps"),
             ("train_time", "train time"), ("hardware", "hardware")])

# %% [markdown]
# The same numbers as a compact method × setting grid (ours / paper):

# %%
table(compare.pivot(GRID), [("method", "method")] + [(s, s) for s in compare.GRID_SETTINGS])

# %% [markdown]
# ### How far below the papers' budgets are these runs?
#
# The papers trained for tens of thousands of steps on GPUs (MAML: 60,000 meta-iterations; wall-clock anchors in
# the literature are 12–16 h for MAML on Omniglot). The reference records of this edition were produced with the
# budgets printed below — read them before reading the accuracies. Where our runs used a small fraction of the
# paper's steps, a gap to the paper's number measures the budget at least as much as the method.

# %%
have = [r for r in GRID if r["record"] is not None]
missing = [r for r in GRID if r["record"] is None]
print(f"{len(have)} of {len(GRID)} method×setting cells have a record; {len(missing)} are missing.")
if have:
    hw = sorted({r["hardware"] for r in have})
    print("hardware of the records:", ", ".join(hw))
    steps = [r["steps"] for r in have if r["steps"]]
    if steps:
        print(f"outer steps used: median {statistics.median(steps):,.0f}, range {min(steps):,}–{max(steps):,}")
    for r in have:
        if r["paper_steps"] and r["steps"]:
            print(f"  {r['method']} {r['setting']}: {r['steps']:,} steps = {100 * r['steps'] / r['paper_steps']:.1f} % "
                  f"of the paper's {r['paper_steps']:,}")
    non_ref = [r for r in have if r["budget"] not in (None, "full")]
    if non_ref:
        print("cells filled by a non-reference (e.g. smoke) record, labelled in the table:",
              ", ".join(r["record"] for r in non_ref))
else:
    print("No classification records yet: every cell above says 'missing' "
          "(reference records not yet produced).")

# %% [markdown]
# ## Lake's within-alphabet protocol
#
# Koch et al. did not evaluate on random characters but on Lake's 20-way one-shot trials {cite}`lake2015human`:
# all 20 candidates come from **one** alphabet of the evaluation set, so they look alike, and training sees only
# the 30 background alphabets. This is markedly harder than the Vinyals-split 20-way task. Records that follow
# this protocol (split `evaluation`, `within_alphabet`) are listed first, then the published reference points.

# %%
LAKE = compare.lake_rows(RECORDS)
if not any(r["record"] for r in LAKE):
    print("Lake-protocol record: reference record not yet produced")
table(LAKE, [("who", "who"), ("accuracy", "20-way 1-shot within-alphabet, %"), ("steps", "steps"),
             ("train_time", "train time"), ("source", "source")])

# %% [markdown]
# ## Paired comparisons: is a gap real?
#
# Episodes differ in difficulty: some draw five characters that look alike, others five that are easy to tell
# apart. That variation is shared by every method scored on the episode. The unpaired way to compare method A
# with method B puts each mean in its own CI and asks whether the intervals overlap; both intervals carry the
# episode-difficulty variance. The paired way looks at $d_e = \mathrm{acc}_A(e) - \mathrm{acc}_B(e)$ on each
# episode $e$; difficulty cancels, and the CI of $\bar d$ is what is left:
#
# $$\bar d \pm 1.96\, \frac{s_d}{\sqrt{n}}, \qquad s_d^2 = \frac{1}{n-1}\sum_e (d_e-\bar d)^2 .$$
#
# A gap is real (at the 95 % level) when this interval excludes 0. Two distribution-free checks go beside it:
# the exact **sign test** (how often A beats B, ties dropped, against a fair coin) and the **Wilcoxon
# signed-rank test** {cite}`wilcoxon1945individual` (scipy).
#
# First a live demonstration that needs no trained model: two *untrained* yardsticks on the first shared 5-way
# 1-shot test episodes — nearest class-mean on raw pixels, and the same rule on the features of a randomly
# initialised Conv-4 (a ProtoNet that has not been trained).

# %%
from mlcore.domain_shift import PixelCentroids  # noqa: E402
from mlcore.memory.protonet import ProtoNet  # noqa: E402

n_live = budget_mod.pick(BUDGET, smoke=200, full=1000)
sampler = test_sampler(5, 1, 15, device="cpu")
untrained = ProtoNet.from_config({"hidden": 64}).eval()
live = {name: evaluate(model, sampler, n_live, seed=EVAL_SEED)
        for name, model in (("pixels", PixelCentroids()), ("random_conv4", untrained))}


def as_record(name, res):
    # a record-shaped dict, so the live result goes through exactly the code the reference records do
    return {"name": name, "method": name, "dataset": "omniglot", "split": "vinyals/test", "ways": 5, "shots": 1,
            "accuracy": res["accuracy"], "ci95": res["ci95"], "episodes": res["episodes"],
            "config": {"eval_seed": EVAL_SEED, "recipe": {"test_queries": 15}},
            "metrics": {"per_episode": res["per_episode"]}}


a, b = as_record("random_conv4", live["random_conv4"]), as_record("pixels", live["pixels"])
for rec in (a, b):
    print(f"{rec['name']:>13}: {100 * rec['accuracy']:.2f} ± {100 * rec['ci95']:.2f} % on {rec['episodes']} "
          "shared 5-way 1-shot episodes (live, untrained)")
demo = compare.paired(a, b)
table([compare.fmt_paired(demo)], [("pair", "pair"), ("difference", "paired difference, points"),
                                   ("unpaired", "unpaired CI"), ("W/T/L", "wins/ties/losses"),
                                   ("sign p", "sign p"), ("Wilcoxon p", "Wilcoxon p"), ("verdict", "verdict")])

# %%
d = torch.tensor(a["metrics"]["per_episode"]) - torch.tensor(b["metrics"]["per_episode"])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].scatter(b["metrics"]["per_episode"], a["metrics"]["per_episode"], s=8, alpha=0.5)
axes[0].plot([0, 1], [0, 1], "k--", lw=1)
axes[0].set_xlabel("pixels: accuracy per episode")
axes[0].set_ylabel("random Conv-4: accuracy per episode")
axes[0].set_title("the same episodes, two methods")
axes[1].hist(100 * d.numpy(), bins=21, color="tab:blue", alpha=0.8)
axes[1].axvline(100 * demo["mean_difference"], color="k", lw=2, label="mean difference")
axes[1].axvspan(100 * (demo["mean_difference"] - demo["ci95"]), 100 * (demo["mean_difference"] + demo["ci95"]),
                color="k", alpha=0.2, label="95 % CI")
axes[1].set_xlabel("per-episode difference (points)")
axes[1].set_ylabel("episodes")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The scatter shows why pairing helps: the points lie along the diagonal — an episode that is hard for one
# yardstick is hard for the other — so the per-episode differences are much less spread than the accuracies
# themselves, and the paired CI is narrower than the unpaired one printed beside it.
#
# Now the same test for every pair of methods that the records allow, one setting at a time (best method first,
# so a positive difference means the first method of the pair is ahead). Pairs whose records were not scored
# on identical episodes are listed with the reason and not compared.

# %%
PAIRS = compare.paired_table(RECORDS)
if PAIRS:
    table([compare.fmt_paired(r) for r in PAIRS],
          [("setting", "setting"), ("pair", "pair"), ("difference", "difference, points"), ("unpaired", "unpaired CI"),
           ("W/T/L", "W/T/L"), ("sign p", "sign p"), ("Wilcoxon p", "Wilcoxon p"), ("verdict", "verdict")])
    real = [r for r in PAIRS if "skipped" not in r and r["verdict"] != "no detectable difference"]
    tied = [r for r in PAIRS if "skipped" not in r and r["verdict"] == "no detectable difference"]
    print(f"{len(real)} pairs differ at the 95 % level; {len(tied)} do not.")
else:
    print("No two records share a setting yet: reference records not yet produced.")

# %% [markdown]
# ## Cost against accuracy
#
# A method that is one point better but needs ten times the training is not always the better choice. Each
# record carries its training wall time and hardware; the plot puts them side by side (log-scale time). Compare
# times only between records of the same hardware: the table at the top says which machine each came from.
# The H100 records of this edition were trained while 30 (later 12) runs shared one card for a few minutes each,
# and the CPU records while 4–6 runs shared two cores. Their times are what those runs took, not what a dedicated
# machine would take.

# %%
POINTS = compare.cost_points(RECORDS)
if POINTS:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    compare.plot_cost_accuracy(POINTS, ax=ax)
    hws = sorted({p["hardware"] for p in POINTS})
    ax.set_title("training cost vs accuracy (" + "; ".join(hws) + ")", fontsize=9)
    fig.tight_layout()
    plt.show()
    table(POINTS, [("method", "method"), ("setting", "setting"), ("train_time", "train time"), ("steps", "steps"),
                   ("meta_batch", "tasks/step"), ("hardware", "hardware"), ("budget", "budget")])
else:
    print("No record with a training time yet: reference records not yet produced.")

# %% [markdown]
# ## Summary
#
# * Every few-shot classifier in the book is scored on the same fixed episodes (`EVAL_SEED`), and every record
#   keeps its per-episode accuracies. The comparison table above is generated from `results/` by
#   `mlcore.compare`; missing records say *missing*.
# * Beside each of our numbers stand the paper's number and the budget we actually used. Read the steps column
#   first: this edition's reference runs used budgets far below the papers' where the table says so, and a gap to
#   the paper is then a statement about budget as much as about method.
# * Compare methods **paired**, on the per-episode differences: the CI of the mean difference is narrower than
#   two overlapping CIs suggest, and the sign and Wilcoxon tests agree with it without assuming normality.
# * Accuracy has a price in training time; the cost plot makes it visible.
#
# ## Exercises
#
# 1. Re-score one record on fresh episodes (`python -m mlcore eval results/<name>.json --seed 123`). Is the new
#    accuracy inside the record's CI? Why can you not pair the fresh result with another record?
# 2. Using `compare.paired`, find the smallest number of episodes (take the first *n* per-episode values of two
#    records) at which the difference between your two closest methods becomes detectable.
# 3. The sign test ignores the size of each difference; the Wilcoxon test uses ranks. Construct two synthetic
#    per-episode lists where they disagree.
# 4. Add FLOPs per training step to the cost plot (count the Conv-4 multiply-adds per image) and redraw it with
#    FLOPs instead of seconds. Which ranking changes?
