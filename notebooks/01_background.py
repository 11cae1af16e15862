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
# # Background: the few-shot problem and what meta-learning is
#
# A child who has seen one giraffe recognises the next one. A person shown a single example of a new handwritten
# character can pick out other drawings of it, and even draw it {cite}`lake2015human`. A deep network trained the
# usual way needs hundreds of examples per class. *{term}`Meta-learning`*, or *learning to learn*, is the family of methods
# that close this gap by learning from many small {term}`tasks <task>` how to learn a new small task quickly
# {cite}`schmidhuber1987evolutionary,thrun1998learning,hospedales2021survey`.
#
# This chapter covers the source article's §1–2.1. It makes the few-shot problem concrete on real data and defines
# the vocabulary that every later chapter uses: *task*, *{term}`episode`*, *{term}`support set`*, *{term}`query set`*, *meta-training* and
# *meta-test* classes.
#
# **Objectives.** After this chapter you can
#
# 1. state the N-way K-shot classification problem and say what the support and query sets are;
# 2. load Omniglot with `mlcore`, explain why rotations count as new classes, and check from the data that the
#    meta-training and meta-test classes are disjoint;
# 3. draw seeded episodes (5-way 1-shot, 20-way 5-shot, and Lake's harder within-alphabet episodes) and read
#    their tensors;
# 4. explain the difference between learning a task and learning to learn, and why the test tasks must use classes
#    never seen in training.
#
# Every measured number in the text is printed by a code cell next to it.

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

import matplotlib.pyplot as plt
import numpy as np
import torch

import mlcore
from mlcore import budget as budget_mod
from mlcore.book.plotting import show_episode, show_images
from mlcore.data import EpisodeSampler, load_split
from mlcore.data.omniglot import load_raw
from mlcore.engine import EVAL_SEED, test_sampler

BUDGET = budget_mod.current_budget()
if BUDGET == "smoke":
    torch.set_num_threads(1)  # small tensor work; one thread avoids oversubscribing shared CI machines
mlcore.seed_everything(0)
print("budget:", BUDGET)

# %% [markdown]
# ## The few-shot problem, on real data
#
# Omniglot {cite}`lake2015human` is the standard test bed: 1,623 handwritten characters from 50 alphabets, each
# drawn once by 20 different people ("drawers"). It is the transpose of MNIST: few examples per class, many
# classes. `mlcore` finds the data (explicit path, then `MLCORE_DATA`, then `~/.cache/mlcore`; it downloads and
# checks the official archives if needed) and keeps every image at its original 105 × 105 resolution.

# %%
raw = load_raw()
n_images = len(raw.alphabet)
n_chars = len(np.unique(raw.class_names))
n_alphabets = len(np.unique(raw.alphabet))
print(f"{n_images:,} images of {n_chars:,} characters from {n_alphabets} alphabets")
print(f"images per character: {n_images // n_chars}; background (training) alphabets: "
      f"{len(np.unique(raw.alphabet[raw.background]))}, evaluation alphabets: "
      f"{len(np.unique(raw.alphabet[~raw.background]))}")

# %% [markdown]
# Here is one character from each of eight alphabets (first drawer), and then all 20 drawings of one character.
# The variation *within* a class is what a one-shot learner must survive.

# %%
alphabets = list(dict.fromkeys(raw.alphabet.tolist()))
picks = [alphabets[i] for i in np.linspace(0, len(alphabets) - 1, 8).astype(int)]
rows = [int(np.flatnonzero(raw.alphabet == a)[0]) for a in picks]
show_images([raw.unpack(np.array(rows))], titles=[[a.split("_(")[0].replace("_", " ")[:12] for a in picks]],
            size=1.3, suptitle="one character per alphabet (raw 105×105)")
plt.show()
first = int(np.flatnonzero(raw.alphabet == picks[3])[0])
show_images([raw.unpack(np.arange(first, first + 10)), raw.unpack(np.arange(first + 10, first + 20))],
            size=0.9, suptitle=f"the 20 drawers of {raw.class_names[first]}")
plt.show()

# %% [markdown]
# Models see 28 × 28 images. `mlcore.data.preprocess` does the resizing once (antialiased bilinear, ink = 1), and
# is public so that you can feed your own drawings to a trained model:

# %%
small = mlcore.preprocess(raw.unpack(np.arange(first, first + 4)))
print("preprocessed batch:", tuple(small.shape), small.dtype, f"pixel range [{small.min():.1f}, {small.max():.1f}]")
show_images([raw.unpack(np.arange(first, first + 4)), small], row_labels=["105×105", "28×28"], size=1.1)
plt.show()

# %% [markdown]
# ### Rotations are new classes, and the Vinyals split
#
# Following Vinyals et al. {cite}`vinyals2016matching`, the few-shot literature augments Omniglot by treating each
# character rotated by 0°, 90°, 180° and 270° as four *different* classes. The *Vinyals split* assigns 1,200
# characters (× 4 rotations) to meta-training (`trainval` = `train` + `val`) and the remaining 423 (× 4) to the
# meta-test set. `mlcore.data.load_split` returns a `ClassSet`: one tensor of images per character plus, for each
# class, which character and which rotation it is.

# %%
splits = {name: load_split(f"vinyals/{name}") for name in ("train", "val", "trainval", "test")}
print(f"{'split':<9} {'classes':>8} {'characters':>11} {'alphabets':>10} {'images':>8}")
for name, cs in splits.items():
    print(f"{name:<9} {cs.num_classes:>8,} {cs.images.shape[0]:>11,} {len(cs.alphabets):>10} "
          f"{cs.num_classes * cs.images.shape[1]:>8,}")
test = splits["test"]
print("image tensor of the test split:", tuple(test.images.shape), "(characters, drawers, C, H, W)")

# %%
c0 = int(torch.nonzero(test.class_rot == 0)[0])
same_char = torch.nonzero(test.class_char == test.class_char[c0]).flatten().tolist()
show_images([[test.class_images(c)[0] for c in same_char]],
            titles=[[f"{test.class_names[c].split('/')[-1]}" for c in same_char]], size=1.3,
            suptitle=f"{test.class_names[c0].rsplit('/', 1)[0]}: one character, four classes")
plt.show()

# %% [markdown]
# The whole point of the benchmark is that meta-test tasks use classes that were **never** seen in meta-training.
# That is a property of the data, so we check it in code rather than trust it: no character (and hence no rotation
# of one) is shared between `trainval` and `test`, and `train` and `val` are disjoint too.

# %%
def characters(cs):
    return {name.rsplit("/", 1)[0] for name in cs.class_names}


tv, te = characters(splits["trainval"]), characters(splits["test"])
assert not tv & te, "meta-train and meta-test share characters"
assert not characters(splits["train"]) & characters(splits["val"])
assert characters(splits["train"]) | characters(splits["val"]) == tv
print(f"trainval characters: {len(tv)}, test characters: {len(te)}, shared: {len(tv & te)}")
print("total:", len(tv | te), "= all", n_chars, "characters of Omniglot:", len(tv | te) == n_chars)
shared_alphabets = sorted(set(splits["trainval"].alphabets) & set(test.alphabets))
print(f"alphabets with characters on both sides: {len(shared_alphabets)} (the split is by character, not alphabet)")

# %% [markdown]
# ## What meta-learning is
#
# In ordinary supervised learning there is **one task**: a fixed set of classes, a training set with many examples
# of each, and a learning algorithm, fixed by hand, that fits parameters $\theta$ to that data. Meta-learning moves up
# one level. There is a **distribution of tasks** $p(\mathcal{T})$, here "tell apart these N characters from K
# drawings each", and what is learned is the learning algorithm itself (or part of it: an embedding, an
# initialisation, an update rule), so that a *new* task from $p(\mathcal{T})$ is learned well from its few examples
# {cite}`schmidhuber1987evolutionary,thrun1998learning`.
#
# Each task $\mathcal{T}_i$ comes with a **support set** $S_i$ (the $N \times K$ labelled examples to learn from:
# N ways, K shots) and a **query set** $Q_i$ (new examples of the same N classes to be labelled). A few-shot learner
# is a function $h_\theta(S, \hat x)$ that adapts to $S$ and predicts the label of a query $\hat x$ (the letter $f_\theta$
# is kept for the embedding network that most learners contain). Meta-training chooses $\theta$ to do well on the
# queries of training tasks:
#
# $$\min_\theta \; \mathbb{E}_{\mathcal{T}_i \sim p(\mathcal{T})} \Big[ \sum_{(\hat x, y) \in Q_i}
#   \mathcal{L}\big(h_\theta(S_i, \hat x),\, y\big) \Big].$$
#
# Vinyals et al. {cite}`vinyals2016matching` made the training procedure mirror the test procedure: every training
# step is an *episode*, a small task sampled from the meta-training classes, so the model practises exactly what it
# will be asked to do. Meta-test tasks are sampled the same way from the held-out classes. The survey by Hospedales
# et al. {cite}`hospedales2021survey` calls these the *meta-training* and *meta-testing* stages and organises methods
# by what $\theta$ represents; this book follows the source article's grouping (metric, optimisation, memory, RL).

# %% [markdown]
# ### Episodes in code
#
# `EpisodeSampler` draws N-way K-shot Q-query episodes straight from the image tensor: random classes and drawers
# are drawn on the CPU with a seeded generator, and the images are gathered with one indexing operation on whatever
# device holds them. Labels inside an episode are $0, \dots, N-1$ in class-major order.

# %%
print(inspect.getsource(EpisodeSampler.episode_from_indices))

# %%
sampler = EpisodeSampler(test, ways=5, shots=1, queries=3, batch_size=1, seed=0)
ep = sampler.sample()
print("support_x", tuple(ep.support_x.shape), "support_y", ep.support_y[0].tolist())
print("query_x  ", tuple(ep.query_x.shape), "query_y  ", ep.query_y[0].tolist())
print("classes of this task:", [test.class_names[c] for c in ep.classes[0].tolist()])
show_episode(ep, "a 5-way 1-shot episode: learn from the top row, label the rows below")
plt.show()

# %% [markdown]
# The 20-way 5-shot setting gives more classes to tell apart and more examples of each:

# %%
ep20 = EpisodeSampler(test, ways=20, shots=5, queries=2, batch_size=1, seed=1).sample()
print("support_x", tuple(ep20.support_x.shape), "query_x", tuple(ep20.query_x.shape))
show_episode(ep20, "a 20-way 5-shot episode (5 support rows, then 2 query rows)", max_queries=2)
plt.show()

# %% [markdown]
# Two properties of episodes matter for everything that follows.
#
# * **Labels carry no identity across tasks.** Label 0 means "the first class drawn for *this* episode". A model
#   cannot memorise classes; it has to learn something that transfers to any set of classes.
# * **Evaluation uses fixed episodes.** `mlcore.engine.test_sampler(...).fixed_set(n, seed)` yields the same episodes
#   every time for a given seed (`EVAL_SEED`), so every method in the book is scored on the very same test tasks.

# %%
a = sampler.sample()
b = sampler.sample()
shared = set(a.classes[0].tolist()) & set(b.classes[0].tolist())
print("two episodes, both labelled 0..4:", a.support_y[0].tolist(), b.support_y[0].tolist(),
      "| classes in common:", len(shared))

ts = test_sampler(5, 1, queries=15)
first_run = next(ts.fixed_set(3, seed=EVAL_SEED))
second_run = next(ts.fixed_set(3, seed=EVAL_SEED))
print("fixed test episodes identical on a second draw:",
      torch.equal(first_run.classes, second_run.classes) and torch.equal(first_run.query_x, second_run.query_x))
print("EVAL_SEED =", EVAL_SEED, "| first test episode's classes:", first_run.classes[0].tolist())

# %% [markdown]
# ### How hard is one shot? A learner with nothing learned
#
# The simplest few-shot learner compares pixels: label each query with the class of the nearest support image in
# Euclidean distance. It has no parameters at all, so it shows how much of the problem is left for learning.
# We score it on the fixed test episodes.

# %%
def pixel_nearest_neighbour_accuracy(sampler, episodes):
    accs = []
    for ep in sampler.fixed_set(episodes, seed=EVAL_SEED, chunk=50):
        d = torch.cdist(ep.query_x.flatten(2), ep.support_x.flatten(2))  # (B, N*Q, N*K)
        pred = ep.support_y.gather(1, d.argmin(-1))
        accs += (pred == ep.query_y).float().mean(-1).tolist()
    return mlcore.mean_ci95(accs)


n_eps = budget_mod.pick(BUDGET, smoke=200, full=1000)
for ways, shots in [(5, 1), (5, 5), (20, 1), (20, 5)]:
    acc, ci = pixel_nearest_neighbour_accuracy(test_sampler(ways, shots, queries=15), n_eps)
    print(f"pixel 1-NN, {ways:>2}-way {shots}-shot: {100 * acc:5.1f} % ± {100 * ci:.1f}  "
          f"(chance {100 / ways:.0f} %, {n_eps} episodes)")

# %% [markdown]
# Far above chance, far below what people do (and, later in the book, what meta-learned models do): pixel distance
# is not a good notion of "same character".
#
# ### Lake's within-alphabet episodes
#
# Lake et al. {cite}`lake2015human` evaluate one-shot learning more strictly than the Vinyals protocol: all N
# candidates of a trial come from **one alphabet** of the 20 evaluation alphabets (characters of one alphabet look
# alike), and training may only use the 30 background alphabets. `EpisodeSampler(..., within_alphabet=True)` draws
# such episodes from the `evaluation` split.

# %%
evaluation = load_split("evaluation")
print(f"evaluation split: {evaluation.num_classes} classes (no rotations) from {len(evaluation.alphabets)} alphabets")
lake = EpisodeSampler(evaluation, ways=20, shots=1, queries=1, batch_size=1, seed=3, within_alphabet=True)
ep_lake = lake.sample()
alph = {evaluation.alphabets[int(evaluation.class_alphabet[c])] for c in ep_lake.classes[0].tolist()}
print("alphabets in this episode:", alph)
sx = ep_lake.support_x[0]
show_images([list(sx[:10]), list(sx[10:])], size=0.75,
            suptitle=f"Lake's 20-way one-shot trial: 20 candidates, all from {next(iter(alph))}")
plt.show()

# %%
within = test_sampler(20, 1, queries=1, split="evaluation", within_alphabet=True)
across = test_sampler(20, 1, queries=1, split="evaluation")
for label, smp in [("within one alphabet", within), ("any alphabets", across)]:
    acc, ci = pixel_nearest_neighbour_accuracy(smp, n_eps)
    print(f"pixel 1-NN, 20-way 1-shot, {label:<19}: {100 * acc:5.1f} % ± {100 * ci:.1f}")

# %% [markdown]
# ## Summary
#
# * Few-shot classification asks for a classifier of N new classes from K examples each (the **support set**),
#   judged on new examples of those classes (the **query set**). One such problem is a **task**; a sampled task is
#   an **episode**.
# * Meta-learning learns, across many training tasks, what makes learning a new task fast. Meta-training and
#   meta-test classes must be disjoint; for the Vinyals split of Omniglot we checked it in code (no shared
#   characters; rotations of a character count as different classes but never cross the split).
# * `mlcore` draws seeded episodes from device-resident tensors; `test_sampler(...).fixed_set(n, EVAL_SEED)` gives
#   every method the same test tasks.
# * A learner with nothing learned (pixel nearest neighbour) is well above chance but far from solved, and it drops
#   further on Lake's within-alphabet trials.
#
# The next chapter measures what learning to learn buys over training from scratch and over plain transfer.
#
# ## Exercises
#
# 1. Draw a 5-way 5-shot episode from `vinyals/train` and one from `vinyals/test`. Could you tell which is which
#    from the images alone? What does that suggest about how different the meta-test classes are?
# 2. Change the pixel nearest-neighbour learner to use the mean support image of each class (a "pixel prototype").
#    Does it help at 5 shots? At 1 shot?
# 3. Count, from `splits["trainval"].class_alphabet`, how many classes each alphabet contributes. Which alphabets
#    dominate meta-training?
# 4. Why would treating rotations as new classes be a problem if the rotated copies of a test character were
#    allowed into meta-training? Check that `class_char` makes that impossible here.
