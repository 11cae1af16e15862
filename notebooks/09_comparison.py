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
# (`mlcore.evaluate`) on the **same** fixed test {term}`episodes <episode>`: the ones `EVAL_SEED` draws from the Omniglot test
# characters of the Vinyals split {cite}`vinyals2016matching`. Same episodes means two methods can be compared
# *episode by episode*, which is far more sensitive than comparing two means with their own error bars.
#
# **Objectives.** After this chapter you can
#
# 1. read one table of every method × setting, generated from the records in `results/`, with our number
#    under the book's protocol and under the paper's, the paper's number and how it was measured, the training
#    budget actually used, the wall time and the hardware;
# 2. say what *transductive* batch norm and test-set model selection do to a published number, with our
#    measurement of each;
# 3. put our numbers on Lake's harder within-alphabet protocol beside Koch et al.'s 92.0 % and the human 95.5 %
#    {cite}`lake2015human,koch2015siamese`;
# 4. decide whether a gap between two methods is real with a **paired** comparison (per-episode differences, a
#    95 % CI, a sign test and a Wilcoxon signed-rank test), and correct the verdicts of a whole table of such
#    comparisons for their number (Holm–Bonferroni);
# 5. read a learning curve against the paper's number and training length, and weigh accuracy against cost.
#
# Nothing in this chapter trains a model for long: the tables are read from records, and the one live
# experiment (the paired comparison below) scores two untrained yardsticks on the shared episodes. A published
# setting with no record shows as **missing**; no cell is ever filled with a number from elsewhere.

# %% tags=["setup", "hide-cell"]
# Colab setup: installs mlcore from a clone of the book's repository and points it at the clone's results/
# (the reference records and checkpoints the chapter reads). It runs in Colab, or where MLCORE_SETUP=1;
# elsewhere it does nothing. MLCORE_REPO_URL, MLCORE_REPO_REF and MLCORE_REPO_DIR pick another source.
import os, subprocess, sys  # noqa: I001
if "google.colab" in sys.modules or os.environ.get("MLCORE_SETUP") == "1":
    url = os.environ.get("MLCORE_REPO_URL", "git+https://github.com/meta-learning-engineered/book.git")
    ref = os.environ.get("MLCORE_REPO_REF", "main")
    src = os.path.expanduser(os.environ.get("MLCORE_REPO_DIR", "~/mlcore-src"))
    book = os.path.join(src, "mlcore")  # pip clones the repository here
    if not os.path.isdir(os.path.join(book, "results")):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--exists-action", "i", "--src", src,
                        "-e", f"git+{url.removeprefix('git+')}@{ref}#egg=mlcore"], check=True)
    if book not in sys.path:
        sys.path.insert(0, book)
    os.environ["MLCORE_RESULTS"] = os.path.join(book, "results")

# %% tags=["hide-input"]
import inspect
import statistics

import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, display

import mlcore
from mlcore import budget as budget_mod
from mlcore import compare, reference, report
from mlcore.book.records import benchmark
from mlcore.compare import html_table
from mlcore.engine import EVAL_SEED, evaluate, test_sampler
from mlcore.report import load_records

BUDGET = budget_mod.current_budget()
if BUDGET == "smoke":
    torch.set_num_threads(1)  # tiny live cells; one thread avoids oversubscribing shared CI machines
mlcore.seed_everything(0)
ALL_RECORDS, _ = load_records()  # every record in results/ (the only source of the book's numbers)
RECORDS = compare.classification_records()
BOOK = compare.under_protocol(RECORDS, "book")  # every record as scored under the book's protocol
print("budget:", BUDGET, "| records in results/:", len(ALL_RECORDS),
      "| few-shot classification records:", len(RECORDS), "| scored under the book's protocol:", len(BOOK))

# %% [markdown]
# Tables are drawn as HTML by `mlcore.compare.html_table`:

# %%
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
# ## Two protocols
#
# A published accuracy is a measurement, and papers measured differently. The difference that matters most on
# Omniglot is **batch norm at test**. A net that normalises its test queries with the statistics of the query
# batch itself is *transductive*: each prediction depends on the other queries of the episode. {term}`MAML`'s, Reptile's
# and {term}`Relation Networks <relation network>`' published numbers were measured that way (their authors' code normalises with the
# current batch at test); Prototypical Networks' were not. Then come the queries per class (under batch
# statistics, the batch size matters), the number of test episodes, and which checkpoint is scored.
#
# So every record is scored twice ({mod}`mlcore.protocols`, {mod}`mlcore.experiments.protocol_scores`):
#
# * under **the book's protocol**: the shared 1,000 episodes, 15 queries per class, the last checkpoint, and no
#   query sees another — batch norm with its training statistics, or, for the MAML family (whose batch norm has
#   no training statistics), each query normalised together with the {term}`support set` only (Nichol et al.'s
#   definition of non-transductive {cite}`nichol2018reptile`). Methods compare fairly under it;
# * under **the paper's protocol**, where the paper says how it measured: the same weights, re-scored with the
#   paper's batch norm, queries per class and number of episodes. How the paper chose its checkpoint and what it
#   trained on cannot be redone, and are stated instead.
#
# Each published number in {mod}`mlcore.reference` carries its protocol as data:

# %%
for method in ("protonet", "maml", "reptile", "relation"):
    pub = reference.published(method, "5w1s")
    print(f"{reference.display_name(method):>22} 5w1s {pub.text():>10}: {pub.protocol.words(shots=1)}")

# %% [markdown]
# ## The table
#
# One row per record: our accuracy under the book's protocol and under the paper's, the paper's number and its
# protocol in words, the training steps the run really used ("N of M" when a time limit stopped a recipe of M
# steps), its wall time and hardware. Reptile's paper also published non-transductive numbers; they stand beside
# ours in the book's column.

# %%
ROWS = [r for r in report.classification_rows(ALL_RECORDS)]
for r in ROWS:
    if r.get("paper_book_protocol"):
        r["ours_book"] += f" (paper: {r['paper_book_protocol']})"
table(ROWS, [(k, h) for k, h in report.CLASSIFICATION_COLUMNS if k != "record"])

# %% [markdown]
# ### What transduction is worth
#
# The records scored both ways measure it directly: same weights and same characters. What changes is everything
# the paper's protocol does differently, listed in the last column: the normalisation of the test queries above
# all, and with it the queries per class, for MAML the number of episodes (600), and for Relation Networks one
# random 90° rotation per episode.

# %%
TRANS = compare.transduction_rows(RECORDS)
for r in TRANS:
    r["gain_txt"] = f"{r['gain']:+.2f}"
table(TRANS, [("method", "method"), ("setting", "setting"), ("book", "book's protocol, %"),
              ("paper", "paper's protocol, %"), ("gain_txt", "difference, points"), ("paper_words", "paper's protocol")])

# %% [markdown]
# The effect depends on the method. For the MAML family and Reptile, whose networks were trained with batch
# statistics and keep no running ones, the paper's protocol is worth from under half a point (5-shot MAML, where
# the support set alone gives usable statistics) to almost four points (one-shot first-order MAML). For Relation
# Networks, whose batch norm keeps running statistics from training, it is worth half a point or less in three
# settings (+0.1 at 5w5s and 20w5s, +0.4 at 20w1s), about one CI, and 1.2 points at 5w1s (1.0 against
# re-estimated running statistics, below). A one-shot support set of five
# images is a poor sample of a batch's statistics, and a query batch of 75 images is a good one, so a learner
# that normalises with whatever batch it is shown gains most where its support set is smallest.

# %% [markdown]
# ### Running statistics are an estimate too
#
# Under the book's protocol a network with running statistics normalises every test image with the averages
# that training left behind. PyTorch keeps them as an exponential average with momentum 0.1, so the last twenty
# batches carry nearly 90 % of their weight, and a score depends on those batches as well as on the weights. Two Relation Networks trained 5-way 1-shot for 40,000 episodes from the same seed show how much
# (chapter 3: one holds its learning rate, the other halves it every 10,000 episodes). Under the paper's
# protocol, which normalises with the test batch's own statistics, they score alike. Under the book's, the
# second loses 0.76 ± 0.22 points on the same 1,000 episodes, a difference a paired test would call real.
# `mlcore.protocols.recompute_batch_norm` re-estimates the statistics of a trained network without touching a
# weight, either as the plain average over 500 training episodes ("precise" batch norm
# {cite}`wu2021rethinking`) or as the exponential average continued over 50 more training episodes, three
# times with different draws. The last column rebuilds the statistics each run ended with: its own last 60
# training episodes, drawn again from its seed, run through its final weights (`benchmarks/batch_norm_stats.py`):

# %%
bn_stats = benchmark("batch_norm_stats", "python benchmarks/batch_norm_stats.py RECORD.json RECORD.json")
if bn_stats:
    rows = [{"record": r["record"], "stored": f"{100 * r['stored']['accuracy']:.2f}",
             "precise": f"{100 * r['precise']['accuracy']:.2f}",
             "continued": " / ".join(f"{100 * c['accuracy']:.2f}" for c in r["continued"]),
             "replayed": f"{100 * r['replayed']['accuracy']:.2f}" if "replayed" in r else "",
             "paper": f"{100 * r['paper_protocol']['accuracy']:.2f}"} for r in bn_stats["records"]]
    for key, d in bn_stats["differences"].items():
        rows.append({"record": key, "stored": f"{100 * d['stored']['mean']:+.2f} ± {100 * d['stored']['ci95']:.2f}",
                     "precise": f"{100 * d['precise']['mean']:+.2f} ± {100 * d['precise']['ci95']:.2f}",
                     "continued": " / ".join(f"{100 * c['mean']:+.2f}" for c in d["continued"]),
                     "replayed": (f"{100 * d['replayed']['mean']:+.2f} ± {100 * d['replayed']['ci95']:.2f}"
                                  if "replayed" in d else ""), "paper": ""})
    table(rows, [("record", "record (last row: the paired difference)"),
                 ("stored", "statistics stored at the last step, %"), ("precise", "averaged over 500 episodes, %"),
                 ("continued", "continued over 50 episodes, three draws, %"),
                 ("replayed", "the run's own last 60 episodes, %"),
                 ("paper", "paper's protocol (test-batch statistics), %")])

# %% [markdown]
# Re-estimated either way, the two networks sit within 0.15 points of each other, as they do under the paper's
# protocol: the 0.76 points were statistics, not weights. The statistics stored at the last step scored below
# every re-estimate, 0.25 points under the averaged ones for one network and 1.07 for the other, while the
# re-estimates of each network agree with one another to a few tenths. The replay says why both fell: the two
# runs share a seed, so they ended on the same training episodes, and those episodes, run through either
# network's final weights, rebuild its low score (97.90 and 97.03 against the stored 97.81 and 97.05). A few
# dozen episodes decide the statistics, and an unlucky few dozen can cost a point. Two things follow for reading
# this chapter. A paired test between two running-statistics records tests their statistics as well as their
# weights, and its interval leaves that out. And a record's score under the book's protocol can sit a point
# below what its weights can do. The records keep the statistics their runs ended with, because a record is what
# its run produced; `recompute_batch_norm` is the step a user adds after training.

# %% [markdown]
# How often does that happen? The same re-estimate, the plain average over 500 training episodes, for every
# record in the book whose batch norm keeps running statistics (`benchmarks/batch_norm_stats.py --survey`); the
# first column is the record's own score, under the statistics its run ended with:

# %%
survey = benchmark("batch_norm_stats_survey", "python benchmarks/batch_norm_stats.py --survey --redraws 0 "
                                              "RECORD.json ...")
if survey:
    rows, gains = [], []
    by_name = {rec["name"]: rec for rec in ALL_RECORDS}
    for r in survey["records"]:
        rec = by_name.get(r["record"], {})
        book = rec.get("metrics", {}).get("protocols", {}).get("book") or {}
        regenerated = r["stored"].get("checkpoint_differs_from_record", False)
        current = regenerated or book.get("accuracy") == r["stored"]["accuracy"]  # else retrained since
        if current:
            gains.append(100 * r["gain"])
        note = (" (weights regenerated by the record's command, scored again)" if regenerated
                else "" if current else " (record retrained since: not counted)")
        rows.append({"record": r["record"] + note,
                     "stored": f"{100 * r['stored']['accuracy']:.2f} ± {100 * r['stored']['ci95']:.2f}",
                     "precise": f"{100 * r['precise']['accuracy']:.2f} ± {100 * r['precise']['ci95']:.2f}",
                     "gain": f"{100 * r['gain']:+.2f}"})
    table(rows, [("record", "record"), ("stored", "statistics stored at the last step, %"),
                 ("precise", "averaged over 500 training episodes, %"), ("gain", "difference, points")])
    print(f"{len(gains)} records: the re-estimate moves the score by {min(gains):+.2f} to {max(gains):+.2f} "
          f"points (median {statistics.median(gains):+.2f}); {sum(abs(g) <= 0.2 for g in gains)} of them by 0.2 "
          "points or less")

# %% [markdown]
# Across the book the stored statistics are rarely what a score depends on: for 17 of the 21 records the
# re-estimate moves the score by 0.05 points or less, far inside the record's CI, in both directions. The Siamese
# network loses 0.03 to 0.17 points at its four settings, each inside its CI: its statistics stored at the last
# step suit the test episodes at least as well as an average over many training batches. The exception is the
# 5-way 1-shot Relation Network, which gains a quarter of a point (and its twin above, which is not a record, a
# full point). It is also the network whose training normalises the smallest batches in the book: it
# embeds the support set and the queries in two passes through the same batch norm layers, so every other update
# of its running averages comes from five images. The book therefore keeps the statistics its runs ended with:
# re-estimating them would lift one row by a quarter of a point and lower four by less than a fifth. The Siamese
# rows are measured on a network that the records' command regenerated, because the records' own weights are too
# large to keep in the repository, and their first column is that network's score.

# %% [markdown]
# ### What choosing the checkpoint on the test set is worth
#
# Relation Networks' code scores the test episodes during training and keeps the best checkpoint; the number it
# reports is that best score. Any evaluation noise then counts in its favour. A learning curve measures how much:
# our long runs score a fixed set of validation episodes at regular intervals, and the best point of such a
# curve is what "keep the best checkpoint" would have reported, against the last checkpoint the book reports.

# %%
CURVES = compare.learning_curves(ALL_RECORDS)
for c in CURVES:
    best = max(c["val_accuracy"])
    at = c["steps"][c["val_accuracy"].index(best)]
    print(f"{c['method']} {c['setting']} ({len(c['steps'])} checkpoints): best {100 * best:.2f} % at step {at:,}, "
          f"last {100 * c['val_accuracy'][-1]:.2f} % at step {c['steps'][-1]:,}: choosing on the scored episodes adds "
          f"{100 * (best - c['val_accuracy'][-1]):+.2f} points")
if not CURVES:
    print("no record with a learning curve yet: reference records not yet produced")

# %% [markdown]
# The 5-way 1-shot Relation Network curve had levelled off over its last checkpoints, and there selection does
# add something: its best checkpoint, at step 38,000, scores 0.14 points above the last. The 5-way 5-shot curve levelled
# off from about 18,000 episodes, at 99.45 to 99.65 %, and selection adds less there (its best check, at 30,000,
# is 0.05 points above the last): a curve this close to 100 % has little noise left to choose from. The 20-way
# 5-shot curve, within 98.7 to 98.9 % from 16,000 episodes, gains 0.09 from its best check (at 32,000), and the
# 20-way 1-shot curve, within 96.7 to 97.0 % from 26,000, gains 0.20 (at 38,000). That is what happens on a
# plateau, where consecutive checkpoints differ only by noise: a validation
# check scores 200 episodes, whose 95 % interval is √5 ≈ 2.2 times that of the 1,000-episode scores in the
# table above (about ±0.4 points instead of ±0.18), and keeping the best of many such scores reports the top of
# that noise. The book reports the last checkpoint.

# %% [markdown]
# The book's-protocol numbers as a compact method × setting grid (ours / paper):

# %%
GRID = compare.comparison_grid(BOOK)
table(compare.pivot(GRID), [("method", "method")] + [(s, s) for s in compare.GRID_SETTINGS])

# %% [markdown]
# ### How far below the papers' budgets are these runs?
#
# The papers trained for tens of thousands of steps on GPUs (MAML: 60,000 meta-iterations). Users of other
# implementations report what that costs: the maintainer of `pytorch-maml` reports 60,000 iterations in about
# 12–16 h for Omniglot and miniImageNet with the paper's hyperparameters
# ([tristandeleu/pytorch-maml#9](https://github.com/tristandeleu/pytorch-maml/issues/9)), and a user of
# `HowToTrainYourMAMLPytorch` reports about 15 h for its Omniglot experiment on one V100
# ([AntreasAntoniou/HowToTrainYourMAMLPytorch#10](https://github.com/AntreasAntoniou/HowToTrainYourMAMLPytorch/issues/10)).
# These are reported figures, not measurements of ours. The reference records were produced with the budgets
# printed below — read them before reading the accuracies. Where our runs used a small fraction of the paper's
# steps, a gap to the paper's number measures the budget at least as much as the method.

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
        print("cells filled by a record of another budget, labelled in the table:",
              ", ".join(f"{r['record']} ({r['budget']})" for r in non_ref))
else:
    print("No classification records yet: every cell above says 'missing' "
          "(reference records not yet produced).")

# %% [markdown]
# ## Lake's within-alphabet protocol
#
# Koch et al. did not evaluate on random characters but on Lake's 20-way one-shot trials {cite}`lake2015human`:
# all 20 candidates come from **one** alphabet of the evaluation set, so they look alike, and training sees only
# the 30 background alphabets. This is markedly harder than the Vinyals-split 20-way {term}`task`. Records that follow
# this protocol (split `evaluation`, `within_alphabet`) are listed first, then the same weights on Lake's 400
# official trials (the trials Koch et al. and Lake et al. scored), then the published reference points.

# %%
LAKE = compare.lake_rows(ALL_RECORDS)
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
# For one comparison, a gap is real (at the 95 % level) when this interval excludes 0; equivalently, the
# two-sided p-value of $\bar d$ under the same normal approximation, $p = 2\,(1-\Phi(|\bar d|\,\sqrt n/s_d))$, is
# below 0.05 (`compare.mean_difference_p`). Two distribution-free checks go beside it: the exact **sign test**
# (how often A beats B, ties dropped, against a fair coin) and the **Wilcoxon signed-rank test**
# {cite}`wilcoxon1945individual` (scipy). They do not test the same thing: the sign test asks whether A wins
# *more often* than it loses, whatever the sizes; the paired CI asks whether A is ahead *on average*.
#
# First a live demonstration that needs no trained model: two *untrained* yardsticks on the first shared 5-way
# 1-shot test episodes — nearest class-mean on raw pixels, and the same rule on the features of a randomly
# initialised Conv-4 (a ProtoNet that has not been trained).

# %%
from mlcore.baselines.pixels import PixelCentroids
from mlcore.memory.protonet import ProtoNet

n_live = budget_mod.pick(BUDGET, smoke=200, full=1000)
sampler = test_sampler(5, 1, 15, device="cpu")
untrained = ProtoNet.from_config({"hidden": 64}).eval()
live = {name: evaluate(model, sampler, n_live, seed=EVAL_SEED)
        for name, model in (("pixels", PixelCentroids()), ("random_conv4", untrained))}

# %% [markdown]
# Each live result is wrapped in a record-shaped dict, so that it goes through exactly the code the reference
# records do, and the two are compared episode by episode:

# %%
def as_record(name, res):
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
# so a positive difference means the first method of the pair is ahead), **under the book's protocol**: every
# record scored on the same episodes with no query seeing another. Under the papers' protocols the episodes
# differ from method to method (as many queries per class as shots for MAML and Relation Networks, one per class
# for Reptile and first-order MAML), so records cannot be paired across them.
#
# **Many tests at once.** The table runs one test per pair, 160 in all. At 5 % each, a handful of
# "real" gaps would be expected among pairs that do not differ at all. The Holm–Bonferroni correction
# (`compare.holm`) keeps the chance of *any* false verdict in the whole table at 5 %: sort the $m$ p-values,
# multiply the smallest by $m$, the next by $m-1$, and so on, keep the adjusted values non-decreasing, and call a
# gap real only when its adjusted value ("Holm p") is below 0.05. The verdicts say "at these budgets": they
# compare these records, each trained once with the budget printed above, not the methods in general.

# %%
PAIRS = compare.holm_table(compare.paired_table(BOOK))
tested = [r for r in PAIRS if "skipped" not in r]
if tested:
    real = [r for r in tested if r["holm_p"] < 0.05]
    print(f"book's protocol: {len(tested)} paired tests; {len(real)} gaps are real after the Holm correction "
          f"(family-wise 5 %), {len(tested) - len(real)} are not; {sum(r['p'] < 0.05 for r in tested)} had p < 0.05 "
          "before it.")
    fig = compare.plot_paired_heatmaps(PAIRS, title="book's protocol: row minus column, points "
                                                     "(* real after Holm, at these budgets)")
    plt.show()
else:
    print("No two records share a setting under the book's protocol yet: reference records not yet produced.")

# %% [markdown]
# Each panel is one setting; a cell is the paired mean difference, row method minus column method, in points,
# starred when it survives the Holm correction. The full table, with the CIs and the three tests, is below.

# %% tags=["hide-output"]
if tested:
    table([compare.fmt_paired(r) for r in PAIRS],
          [("setting", "setting"), ("pair", "pair"), ("difference", "difference, points"), ("unpaired", "unpaired CI"),
           ("W/T/L", "W/T/L"), ("sign p", "sign p"), ("Wilcoxon p", "Wilcoxon p"), ("p", "p"),
           ("Holm p", "Holm p"), ("verdict", "verdict")])

# %% [markdown]
# Do the three tests agree? The cell lists every pair on which the sign test or the Wilcoxon test, at 5 %,
# reaches a different answer from the paired CI (all three uncorrected, so they are compared like for like).

# %%
def significant(p):
    return p is not None and p < 0.05


tested = [r for r in PAIRS if "skipped" not in r]
split = [r for r in tested if len({significant(r["p"]), significant(r["sign_test_p"]),
                                   significant(r["wilcoxon_p"])}) > 1]
print(f"{len(split)} of {len(tested)} pairs get different answers from the three tests:")
for r in split:
    print(f"  {r['setting']} {r['a']} − {r['b']}: {100 * r['mean_difference']:+.2f} ± {100 * r['ci95']:.2f} points, "
          f"W/T/L {r['wins']}/{r['ties']}/{r['losses']}, p {r['p']:.2g}, sign p {r['sign_test_p']:.2g}, "
          f"Wilcoxon p {r['wilcoxon_p']:.2g}")

# %% [markdown]
# Where they disagree, they answer different questions. The sign test counts wins and losses; the mean
# difference weighs their sizes. A method can win more episodes than it loses and still not be ahead on average
# by more than the noise, when its losses are larger than its wins or the sizes of both vary widely; then the
# sign test (and, less so, the Wilcoxon test, which weighs ranks) finds a gap that the mean difference does not.
# The first pair printed above is such a case: Matching Networks with FCE win 320 episodes against the pretrained
# classifier and lose 268 (sign test p 0.035), yet the mean difference, +0.15 points, is inside its CI. The
# other is the reverse: at 5-way 5-shot, plain Matching Networks win only a few more episodes against the
# Siamese network than they lose (262 to 232), a split the sign test cannot tell from a coin (p 0.19), yet they
# are ahead on average by 0.25 ± 0.13 points (p 0.0002), because their wins are the larger ones. This chapter's verdicts rest on the mean
# difference, corrected with Holm; the other two columns say how robust a verdict is to that choice.

# %% [markdown]
# ## Do the records hold on fresh episodes?
#
# A record's number is a mean over one fixed set of episodes, and its CI says how far another set of the same size
# would typically move it. `benchmarks/fresh_episodes.py` scores the records of the long runs once more, on as many episodes (or bandit trials) drawn with another seed, exactly as
# `python -m mlcore eval results/<name>.json --seed 123` does. Two independent estimates of one accuracy differ
# by less than $\sqrt{\mathrm{CI}_1^2+\mathrm{CI}_2^2}$ in 19 cases of 20. Where a record falls outside, the script
# scores twelve more sets (when that is cheap) to tell which of the two sets was the unusual one.

# %%
fresh = benchmark("fresh_episodes", "python benchmarks/fresh_episodes.py")
if fresh is not None:
    for r in fresh["rows"]:
        scale, unit = (100, " %") if r["metric"] == "accuracy" else (1, " reward")
        print(f"{r['record']:27s} record {scale * r['reference']:6.2f} ± {scale * r['reference_ci95']:.2f}, fresh "
              f"{scale * r['fresh']:6.2f} ± {scale * r['fresh_ci95']:.2f}{unit}: difference "
              f"{scale * r['difference']:+.2f} ± {scale * r['difference_ci95']:.2f} "
              f"({'within' if r['within'] else 'outside'})")
        if "spread" in r:
            sp = r["spread"]
            print(f"{'':27s} {len(sp['set_means'])} more sets: mean {scale * sp['mean']:.2f}, their spread (sd) "
                  f"{scale * sp['sd_of_set_means']:.2f}, where the CI implies {scale * r['reference_ci95'] / 1.96:.2f}")

# %% [markdown]
# Each record is re-scored the way it was first scored, which for the MAML family and Reptile is their own
# transductive scoring (15 queries per class normalised together), not the book's protocol of the table above; the
# point here is only whether the same measurement repeats. Eleven of the fifteen land within the interval. The four
# others do not, and their twelve further sets show why. For MAML and first-order MAML 5-way 1-shot the further
# sets centre on the records' own numbers (98.14 against 98.13, 96.73 against 96.66): the first fresh set, the same
# episodes for both, happened to be an easy one for them. For the two RL² agents on 10-armed bandits (10 and 100
# pulls) the further sets centre between the record's set and the first fresh one: both of those were unusual
# draws, in opposite directions, and the agent's mean over all fourteen sets is the better estimate of how it
# plays (the 100-pull agent missed by a hair: +1.45 against an interval of ±1.45). The further sets also test the
# intervals themselves: their means spread about as the CIs predict (for MAML a little more, 0.12 points against
# 0.09, from twelve sets). Fifteen independent checks at 95 % would fail about 0.75 times, but these are not
# independent: the four failures are two pairs. MAML and first-order MAML share one episode set, and the two
# 10-armed RL² agents play the very same arm means (one seed, one number of arms) on the record's trials and again
# on the fresh ones, whose best arms pay a little more on average (0.911 against 0.905). That is the point: one set
# of episodes is one draw, for every record scored on it. For a failed check, a second look at more sets, not a
# retraining, is the answer.

# %% [markdown]
# ## Learning curves: on the way to the paper's number?
#
# A row below its paper is either on its way there (its curve still rising when the budget ran out) or has
# flattened short of it — and then the gap is a finding, not a budget. Records of the longer trainings keep their
# validation accuracy against meta-steps; each curve is drawn with its paper's number (dashed) and the paper's
# training length (dotted). Validation episodes come from the validation characters, never from the test set.
# A run at a paper's full budget trains, as the paper did, on the training and validation characters together, and
# so has no curve: Reptile 5w1s ran the paper's 100,000 outer steps that way.

# %%
if CURVES:
    fig, ax = plt.subplots(figsize=(8, 4.4))
    compare.plot_learning_curves(CURVES, ax=ax)
    fig.tight_layout()
    plt.show()
else:
    print("no record with a learning curve yet: reference records not yet produced")

# %% [markdown]
# A run at a paper's full budget has no validation curve, but it kept its accuracy on its own training episodes
# (`metrics.train_curve`, a moving average over five logged rows here). Each panel draws those curves with the
# record's test score at the end (a dot, measured the paper's way where the paper says how) and the paper's number
# (dashed). A curve still rising was stopped by its budget. A flat curve far above its dot has fitted its training
# characters and lacks transfer to new ones: more of the same steps will not close that gap.

# %%
TRAINING = compare.training_curves(ALL_RECORDS)
if TRAINING:
    compare.plot_training_curves(TRAINING)
    plt.tight_layout()
    plt.show()
    for c in TRAINING:
        last = c["steps"][-1]
        third = [a for s, a in zip(c["steps"], c["train_accuracy"]) if 0.5 * last < s <= 0.75 * last]
        fourth = [a for s, a in zip(c["steps"], c["train_accuracy"]) if s > 0.75 * last]
        print(f"{c['method']:19s} {c['setting']:5s} training {100 * statistics.mean(third):.1f} -> "
              f"{100 * statistics.mean(fourth):.1f} % (third -> last quarter of {last:,} steps); test "
              f"{100 * c['test_accuracy']:.2f} ({c['test_protocol']}'s protocol), paper {c['paper_accuracy']}")
else:
    print("no record kept a training curve yet: reference records not yet produced")

# %% [markdown]
# MAML and first-order MAML reach their papers' numbers, measured the papers' way, on curves that have nearly
# stopped rising (0.1 to 0.2 points between the third and the last quarter). Meta-SGD's curve is as flat and runs
# above MAML's at equal steps; its dot sits lower because Li et al. do not say how they measured, so it is scored
# the book's way, without the transductive batch norm that lifts MAML's dot. The 20-way 1-shot panel holds two
# runs that a time limit stopped early, at 2.7 % (MAML, 1,610 steps) and 5.9 % (Meta-SGD, 3,552 steps) of the
# paper's 60,000: Meta-SGD's curve was still rising (0.9 points from the third to the last quarter), while MAML's
# had stayed at 88 to 90 % since step 750, 6 points above its dot (which sits 12.5 under the paper's). So short a
# level stretch in so long a budget does not yet say where the curve ends; the rest of the run would. The three
# plain Matching Networks
# curves levelled off at 97.7 to 99.2 %, 2.0 to 6.4 points above their test scores: those gaps are transfer to new
# characters, not budget (chapter 5 shows that full-context embeddings close them at one shot, and that neither
# 60-way training episodes nor transductive batch norm does). The four
# Relation Network curves (validation, above) levelled off within 40,000 of the paper's million episodes, at the
# learning rate the paper halves for the first time at episode 100,000; a 1-shot run that halves it every 10,000
# episodes instead ends where the record does (chapter 3).

# %% [markdown]
# ## Cost against accuracy
#
# A method that is one point better but needs ten times the training is not always the better choice. Each
# record carries its training wall time and hardware; the plot puts them side by side (log-scale time). Compare
# times only between records of the same hardware: the table at the top says which machine each came from.
# The H100 records are short runs, each with a time limit of a few minutes, trained several to one card: their
# times are what such runs took, not what a run with the card to itself would take. A CPU record states the
# threads it used, not what else the machine was running.

# %%
POINTS = compare.cost_points(BOOK)
KINDS = {"CPU": [p for p in POINTS if p["hardware"].startswith("CPU")],
         "GPU": [p for p in POINTS if not p["hardware"].startswith("CPU")]}
KINDS = {k: v for k, v in KINDS.items() if v}
if POINTS:
    # one panel per kind of machine: CPU and GPU seconds are not on one axis
    fig, axes = plt.subplots(1, len(KINDS), figsize=(6.5 * len(KINDS), 4.6), squeeze=False)
    for ax, (kind, pts) in zip(axes[0], KINDS.items()):
        compare.plot_cost_accuracy(pts, ax=ax)
        ax.set_title(f"trained on a {kind}: " + "; ".join(sorted({p['hardware'] for p in pts})), fontsize=8)
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
# * A published number is a measurement under a protocol. Every record is scored under the book's protocol (no
#   query sees another) and, where the paper says how it measured, under the paper's; the table puts each beside
#   the paper's number and its protocol in words. Transductive batch norm is worth up to four points for the
#   MAML family and Reptile, most at one shot, and 0.1 to 1.2 points for Relation Networks (the transduction
#   table, per record); keeping the checkpoint that scores best on the reported episodes adds the evaluation
#   noise in its favour.
# * Running statistics are an estimate too. Re-estimating them (`recompute_batch_norm`) raised two 5-way 1-shot
#   Relation Networks' book's-protocol scores by 0.25 and 1.07 points without changing a weight, and a paired
#   test between two running-statistics records compares their statistics as well as their weights. Every other
#   running-statistics record in the book moved by 0.17 points or less, most by a few hundredths.
# * Beside each of our numbers stand the paper's number and the budget we actually used. Read the steps column
#   and the learning curves first: where a run used a small part of the paper's budget and its curve was still
#   rising, a gap to the paper measures the budget at least as much as the method.
# * Compare methods **paired**, on the per-episode differences, under one protocol: the CI of the mean
#   difference is narrower than two overlapping CIs suggest. A table of 160 such tests needs a
#   multiple-comparison correction; with Holm's, the verdicts hold for the whole table at 5 %, and they are
#   verdicts about these records at these budgets.
# * The sign and Wilcoxon tests do not always agree with the mean difference: the cell after the table lists
#   the pairs where they part ways.
# * A record's CI is a promise about other episode sets: re-scored on one fresh set, eleven of the fifteen long-run
#   records landed within it. For the other four, twelve more sets each showed that one set of episodes had been
#   an unusual draw (the fresh one for MAML and first-order MAML, both the record's and the fresh one for two RL²
#   agents), with about the spread the CI predicts.
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
# 5. The survey above lifts one record by more than a tenth of a point: the 5-way 1-shot Relation Network, whose
#    support pass normalises five images at a time. Re-estimate its statistics with `recompute_batch_norm` from
#    500 training episodes three ways: from both passes, from the support passes only, and from the query passes
#    only (for the last two, run the encoder yourself on one pass's images, in training mode under `no_grad`).
#    Which pass do the lost points come from?
