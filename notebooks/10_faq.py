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
# # FAQ: the source article's three closing questions
#
# The article this book grew from ends with three questions. They are answered here the way the rest of the book
# works: every claim points to a run, and the numbers below are printed by code from the records in `results/`.
# Where a claim does *not* hold, that is shown too.
#
# **Objectives.** After this chapter you can
#
# 1. name the traits usually claimed for {term}`meta-learning` — fast adaptation, generalisation to new
#    {term}`tasks <task>`, flexibility, data efficiency — and point to the measurement in this book that supports
#    or limits each one, including a {term}`domain-shift <domain shift>` test where generalisation breaks down;
# 2. list the design decisions of an RL² agent {cite}`duan2016rl2,wang2016learning` and the ablations that
#    justify them;
# 3. describe how to find the training task most similar to a new one and transfer from it, what that bought in
#    our runs, and where it fails.

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
import importlib.util

import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, display

import mlcore
from mlcore import budget as budget_mod
from mlcore import reference as papers
from mlcore.book import faq, plotting
from mlcore.book.faq import budget_line, pct
from mlcore.book.records import reference
from mlcore.compare import html_table
from mlcore.experiments.traits import METHOD_LABELS
from mlcore.results import RESULTS_DIR, load_record
from mlcore.runtime import hardware_label

BUDGET = budget_mod.current_budget()
if BUDGET == "smoke":
    torch.set_num_threads(1)  # tiny live cells; one thread avoids oversubscribing shared CI machines
DEVICE = mlcore.get_device()
mlcore.seed_everything(0)
print("budget:", BUDGET, "| device:", DEVICE.type)

# %% [markdown]
# ## What are the main traits of meta-learning?
#
# Meta-learning trains on a *distribution of tasks* so that a new task from the same distribution is solved from
# little data {cite}`schmidhuber1987evolutionary,thrun1998learning,hospedales2021survey`. Four traits are usually
# claimed. Each is a statement about a measurement, so each can be checked.
#
# ### Fast adaptation
#
# *Claim*: a meta-learned model becomes good at a new task after a handful of gradient steps ({term}`MAML`
# {cite}`finn2017maml`) or a single forward pass (ProtoNet {cite}`snell2017prototypical`). *Measurement*: the
# sinusoid-regression record of chapter 4: 5-shot test MSE after 0, 1, 5 and 10 gradient steps, for MAML and for a
# model pre-trained on all tasks jointly (the paper's baseline), on the same 600 test tasks.

# %%
sin = reference("maml_sinusoid")
if sin:
    mse = sin.metrics["mse"]
    display(HTML(html_table(faq.sinusoid_rows(mse, papers.SINUSOID_5SHOT_MSE), faq.SINUSOID_COLUMNS)))
    m1, p1 = mse["maml_k5"]["steps=1"], mse["pretrained_k5"]["steps=1"]
    print(budget_line(sin), f"(paper: {70_000:,} iterations)")
    claim = "holds" if m1[0] + m1[1] < p1[0] - p1[1] else "is not supported at this budget"
    print(f"after ONE step MAML's MSE is {m1[0]:.2f} vs the pretrained model's {p1[0]:.2f}: the claim {claim}.")

# %% [markdown]
# ### Data efficiency
#
# *Claim*: a meta-learner needs fewer labelled examples of the new task than learning from scratch or ordinary
# {term}`transfer <transfer learning>`. *Measurement*: chapter 2's traits record scores, on the same 5-way test
# {term}`episodes <episode>`, a Conv-4 trained from scratch on the {term}`support set`, transfer from a 4,800-way
# pre-trained classifier (linear probe and nearest centroids), and a meta-learned ProtoNet, as the shots grow from
# 1 to 10.

# %%
traits = reference("traits_accuracy_vs_shots")
if traits:
    shots, methods = traits.metrics["shots"], traits.metrics["methods"]
    label = {m: METHOD_LABELS.get(m, m) for m in methods}
    rows = [{"method": label[m], **{str(k): pct(v[str(k)]["accuracy"], v[str(k)]["ci95"]) for k in shots}}
            for m, v in methods.items()]
    display(HTML(html_table(rows, [("method", "method")] + [(str(k), f"{k}-shot") for k in shots])))
    plotting.accuracy_vs_shots(traits, label,
                               "data efficiency: accuracy vs shots (record traits_accuracy_vs_shots)", chance=False)
    plt.show()
    if "protonet" in methods and "scratch" in methods:
        k1 = str(shots[0])
        gap = methods["protonet"][k1]["accuracy"] - methods["scratch"][k1]["accuracy"]
        best = max(methods[m][k1]["accuracy"] for m in methods if m != "protonet")
        tied = [label[m] for m in methods
                if m != "protonet" and round(methods[m][k1]["accuracy"], 3) == round(best, 3)]
        print(f"at {k1}-shot, ProtoNet leads learning from scratch by {100 * gap:.1f} points; the best "
              f"non-meta-learned result is {pct(best)}, by {' and '.join(tied)}.")

# %% [markdown]
# Read the table with care: a strong *pre-trained* feature extractor is a serious competitor to meta-learning on
# Omniglot. Data efficiency is a trait of learning a good representation from many related tasks; episodic
# meta-training is one way to get it, not the only one.
#
# ### Generalisation to new tasks — and where it stops
#
# *Claim*: what is learned on the training tasks carries over to new tasks. On Omniglot the test characters are
# new, so every accuracy in chapter 9 is a generalisation measurement. But they are new tasks *from the same
# distribution*: more handwritten characters. The claim weakens when the distribution moves. To test that, we
# score a learner trained on Omniglot on handwritten **digits**: scikit-learn's {cite}`pedregosa2011scikit` bundled
# `load_digits` {cite}`alpaydin1998optdigits` (1,797 images of 8×8 pixels; it ships inside scikit-learn, nothing
# is downloaded), scaled to ink = 1, upsampled to 20×20 and padded to 28×28 so that size and margin match
# Omniglot's (`mlcore.data.digits`; the study is `mlcore.experiments.domain_shift`). A no-learning yardstick —
# nearest class-mean on raw pixels, `mlcore.baselines.pixels` — is scored on the same episodes in both domains.

# %%
from mlcore.data import load_split
from mlcore.data.digits import load_digits_28
from mlcore.experiments.domain_shift import score_domains

HAVE_DIGITS = importlib.util.find_spec("sklearn") is not None  # the digits ship inside scikit-learn
if not HAVE_DIGITS:
    print("scikit-learn is not installed (pip install scikit-learn): the domain-shift test is skipped")

if HAVE_DIGITS:
    digits, digit_labels = load_digits_28()
    omni_all = load_split("vinyals/test").images  # (characters, 20 drawings, 1, 28, 28)
    plotting.two_domains(omni_all[:8, 0, 0], digits[:88:11, 0], "Omniglot test characters (training domain)",
                         "scikit-learn digits, 8×8 → 20×20 + margin (new domain)")
    plt.show()
    print(f"mean ink per pixel: Omniglot test set {float(omni_all.mean()):.3f}, digits {float(digits.mean()):.3f}\n"
          "(thicker, blurrier strokes are part of the shift)")

# %% [markdown]
# The reference record `domain_shift_digits` scores the ProtoNet of record `protonet_omniglot_5w1s` and the pixel
# centroids on the same 5-way episodes of both domains, 1-shot and 5-shot:

# %%
shift = reference("domain_shift_digits") if HAVE_DIGITS else None
if shift:
    print(f"reference record domain_shift_digits: scores the learner of {shift.config['source_record']} "
          f"({shift.config['source_steps']:,} steps, {shift.train_wall_s:.0f} s of training in that record); "
          f"this record trained nothing, its scoring run took {shift.wall_s:.0f} s on "
          f"{hardware_label(shift.hardware)}")
    display(HTML(html_table(faq.domain_shift_rows(shift.metrics), faq.DOMAIN_SHIFT_COLUMNS)))
    print(faq.domain_shift_gains(shift.metrics))

# %% tags=["remove-cell"]
# Without the domain-shift record, score a learner live on fewer episodes: the ProtoNet of record
# protonet_omniglot_5w1s, or, without it, a ProtoNet trained here at the notebook's budget.
if HAVE_DIGITS and not shift:
    n_ep = budget_mod.pick(BUDGET, smoke=100, full=1000)
    src = RESULTS_DIR / "protonet_omniglot_5w1s.json"
    if src.exists():
        learner, label = mlcore.load(src, DEVICE), f"live, {n_ep} episodes, learner from record protonet_omniglot_5w1s"
    else:
        import tempfile
        path = mlcore.train_and_record("protonet", 5, 1, budget=BUDGET, out_dir=tempfile.mkdtemp(), progress=False,
                                       name="protonet_live", test_episodes=20)
        learner = mlcore.load(path, DEVICE)
        label = f"live, {n_ep} episodes, ProtoNet trained here at the {BUDGET} budget (a tiny run)"
    m = {"1shot": score_domains(learner, 1, episodes=n_ep, device=DEVICE)}
    print(label)
    display(HTML(html_table(faq.domain_shift_rows(m), faq.DOMAIN_SHIFT_COLUMNS)))
    print(faq.domain_shift_gains(m))

# %% [markdown]
# Two numbers matter in this table. The learner's accuracy on digits, and how much it adds over raw pixels in each
# domain. Digits are only ten classes and 5-way digit tasks are easy for pixels too, so raw accuracy is not the
# point: the *gain over pixels* is the part that meta-training bought. Compare its sign and size in the two
# domains (printed under the table): an embedding meta-learned on characters can be *worse* than raw pixels on
# digits, whose strokes, thickness and class structure differ from everything seen in training. The
# generalisation trait is real, but it is a statement about the task distribution, not about "new tasks" in
# general.
#
# ### Flexibility
#
# *Claim*: one meta-trained model serves tasks of different shapes. A ProtoNet has no output layer tied to N or K:
# {term}`prototypes <prototype>` are computed from whatever support set arrives. The book's ProtoNet records follow
# the paper's recipe and train on 60-way episodes, one model per shot: the model of record `protonet_omniglot_5w1s`
# was trained on 60-way 1-shot episodes, and record `protonet_omniglot_20w5s` scores the weights of the 5w5s record
# (60-way 5-shot) on 20-way 5-shot episodes. So every ProtoNet record is already tested at a number of ways it was
# not trained on. Below, the 1-shot model is re-scored on 20-way 5-shot episodes, beside the 5-shot model on the
# same setting: the comparison is about shots (chapter 5 measures the full ways × shots grid in its sweep record).

# %%
p51 = reference("protonet_omniglot_5w1s")
p205 = reference("protonet_omniglot_20w5s")


def trained_on(rec):
    rcp, src = rec.config["recipe"], rec.config.get("weights_from")
    return f"trained on {rcp['ways']}-way {rcp['shots']}-shot episodes" + (f" (the weights of {src})" if src else "")


if p51:
    n_ep = budget_mod.pick(BUDGET, smoke=50, full=1000)
    r = mlcore.reevaluate(RESULTS_DIR / "protonet_omniglot_5w1s.json", ways=20, shots=5, episodes=n_ep, seed=123)
    print(f"{p51.name}, {trained_on(p51)}; tested 20-way 5-shot ({n_ep} fresh episodes): "
          f"{pct(r['accuracy'], r['ci95'])}")
    if p205:
        print(f"{p205.name}, {trained_on(p205)}; its own 20-way 5-shot score: {pct(p205.accuracy, p205.ci95)}")

# %% [markdown]
# ## How do we design a meta-RL agent?
#
# RL² {cite}`duan2016rl2` (and, independently, {cite}`wang2016learning`) turns a recurrent policy into a learning
# algorithm. Chapter 6 builds it; the decisions, each with its reason, are:
#
# 1. **Train on a distribution of tasks** (random bandits or random MDPs) and maximise the total reward of a whole
#    *trial* of $n$ episodes on one task, so exploration early in the trial is paid for by reward later.
# 2. **Feed back the previous action, reward and done flag** as inputs: the reward is the only signal from
#    which the agent can tell good actions from bad ones *within* a task.
# 3. **Keep the hidden state across the episodes of a trial** and reset it only between trials: the hidden state
#    is where the agent's "learning" is stored.
# 4. A recurrent network (GRU) and a policy-gradient {term}`outer loop` (TRPO in the paper, PPO
#    here {cite}`schulman2017ppo,schulman2016gae`).
#
# Decisions 2 and 3 are testable by taking them away (`mlcore.experiments.rl_ablations`). The cheapest test needs
# no training: take a trained RL² agent and score it on the same 1,000 evaluation trials three times — intact, with
# the reward input zeroed, and with its hidden state wiped at every episode boundary. Same trials and same noise,
# so the differences are paired per trial. Below, the agent is chapter 6's reference record on 5-armed, 10-pull
# Bernoulli bandits (without the record, the cell trains a tiny agent at this notebook's budget instead).

# %%
import tempfile

from mlcore.experiments.rl2_records import reproduce_rl2
from mlcore.experiments.rl_ablations import test_time_ablation

BANDIT = {"env": "bandit", "arms": 5, "pulls": 10}
agent_path = RESULTS_DIR / "rl2_bandit_n10_k5.json"
if agent_path.exists():
    agent_label = "reference record rl2_bandit_n10_k5"
else:
    print("rl2_bandit_n10_k5: reference record not yet produced; training a tiny agent live instead")
    agent_path = reproduce_rl2(budget=BUDGET, out_dir=tempfile.mkdtemp(), spec=BANDIT, progress=False)[0]
    agent_label = f"live RL² agent trained here at the {BUDGET} budget"
cfg = load_record(agent_path).config["rl2"]
print(f"agent: {agent_label}: {cfg['updates']} PPO updates x {cfg['trials_per_update']:,} trials, "
      f"GRU {cfg['hidden']} units")

# %% [markdown]
# The three scores, paired per trial, with chapter 6's classic baselines on the same setting (record
# `baselines_bandit_n10_k5`) for scale:

# %%
abl = test_time_ablation(agent_path, trials=1000)
base = reference("baselines_bandit_n10_k5")
baselines = base.metrics["baselines"] if base else None
display(HTML(html_table(faq.ablation_rows(abl["variants"], baselines), faq.ABLATION_COLUMNS)))
for k, x in abl["variants"].items():
    if "paired_vs_full" in x:
        print(f"{k}: {faq.verdict(x['paired_vs_full'])} at the 95 % level")

# %%
plotting.ablation_bars(abl["variants"], "mean total reward per trial (10 pulls, 5 arms)",
                       "one trained RL² agent, ablated at test time (same 1,000 trials)",
                       random_reward=baselines["random"]["mean_total_reward"] if baselines else None)
plt.show()

# %% [markdown]
# A test-time ablation says what the *learned* algorithm relies on. A retrained ablation (the agent trained from
# scratch without the reward input, or with its memory wiped, at the same budget) says whether the design decision
# is needed at all: `python -m mlcore reproduce --only rl2_ablations_bandit_n10_k5` trains the full agent and
# each ablation with chapter 6's RL² settings (GRU 256, 2,000 trials per update) for the same 60 PPO updates
# and scores them on the same 1,000 trials. The record's three trainings took 2,542 s in all on one CPU thread
# (the cell prints each). A retrained ablation says something only if the full agent learns at that budget:
# compare its row with random play before reading the differences.

# %%
retrained = reference("rl2_ablations_bandit_n10_k5")
if retrained:
    cfg_r = retrained.config["rl2"]
    print(f"each variant: {cfg_r['updates']} PPO updates x {cfg_r['trials_per_update']} trials; "
          f"{retrained.episodes} evaluation trials")
    for k, v in retrained.metrics["variants"].items():
        print(f"  {k:28s} {v['mean_total_reward']:.2f} ± {v['ci95']:.2f}  (trained in {v['train_wall_s']:.0f} s)")
    for k, d in retrained.metrics["paired_vs_full"].items():
        print(f"retrained as '{k}': {d['mean_difference']:+.2f} ± {d['ci95']:.2f} vs the full agent -> "
              f"{faq.verdict(d)}")

# %% [markdown]
# Why the two decisions matter. Without the reward input the network receives the same inputs whatever the arms
# pay, so the best it can do is a fixed distribution over arms; since every arm is equally good on average over
# tasks, that is worth what random play is worth. With the hidden state wiped after every episode (for a bandit,
# after every pull) the agent cannot remember which arm paid, and the same happens. So both ablations should fall
# towards the random baseline, and the tables above say by how much they fell for this agent. The size of the
# fall is bounded by how much the intact agent learned in the first place: the paper's RL², UCB1 and Gittins reach
# about 6.7 on this setting, random play about 5.0. Other decisions we did not ablate: the GRU width, the discount
# and GAE λ (the paper's 0.99 and 0.3), and the trial length, which sets the exploration horizon the agent learns
# for.
#
# ## How do we find the most similar training task and transfer its knowledge?
#
# The article's §4.1 proposes learning a {term}`similarity <task similarity>` $f_\theta(T_i, T_j)$ between tasks with a squared loss,
# $\sum (f_\theta(T_i,T_j)-y_{ij})^2$, then, for a new task, transferring from the training task the metric ranks
# highest. Chapter 3 measures this on Omniglot. There are 30 training tasks, one per `background` alphabet, each a
# Conv-4 trained on that alphabet's characters. The 175 new 5-way 5-shot tasks come in two kinds: new characters
# of those alphabets, and the 20 `evaluation` alphabets. Every new task is transferred to from every source, so
# the record knows which source helped most. The study compares five retrievers: $f_\theta$ trained on
# *measured* transfer gains, $f_\theta$ trained on "same alphabet", Task2Vec {cite}`achille2019task2vec`, a
# mean-embedding cosine, and each source's leave-one-out score on the new task's support set. A control ignores
# the new task and always picks the source that helped most on the label tasks.

# %%
from mlcore.book import task_retrieval as tr

ts = reference("task_similarity_omniglot")
if ts:
    m = ts.metrics
    keep = ["one network on every source's characters (pooled)", "random source (expected)",
            "best source in hindsight (oracle, sees the queries)", f"retrieved by {tr.HEADLINE}",
            f"retrieved by {tr.RETRIEVERS[1]}", f"retrieved by {tr.RETRIEVERS[4]}", f"retrieved by {tr.RETRIEVERS[5]}"]
    rows = [r for r in tr.transfer_rows(m, "all") if r["start"] in keep]
    display(HTML(html_table(rows, tr.COLUMNS["transfer"])))
    print(f"frozen-feature transfer, {budget_line(ts)}")

# %% [markdown]
# When every weight is fine-tuned on the new task's support set (the recipe the label tasks preferred), the
# starts compare like this:

# %%
if ts:
    display(tr.table(m, "fine-tuning", "all"))
    for what, value in tr.headline_measures(m, "fine-tune").items():
        print(f"{what:70s} {value}")

# %% [markdown]
# **The answer, with its evidence.** Learn the similarity from what you want it to predict. Trained on
# measured transfer gains, $f_\theta$ retrieves sources that help: its pick beats a random source by several
# points on frozen features, and by about two when every weight is fine-tuned. Its pick depends on the new task:
# the control, which names the generally most helpful source, falls short of it. Trained on "same alphabet", it
# learns to recognise alphabets, which is not the same as picking the source that helps. Two cheaper answers
# stand beside it. Scoring each source on the new task's own support set (leave-one-out) retrieves as well or
# better, with no training (on frozen features significantly better: the paired tests in chapter 3). And when
# the sources' data are at hand, one network trained on all of them beats any single
# source. Retrieval is the tool for when only the trained models remain.
#
# **Limits.** Sources are small and trained briefly. The gain labels come from frozen-feature transfer. Fine-tuning
# was measured from a handful of starts, not from every source. Chapter 3 lists the rest.
#
# ## Summary
#
# * Each trait of meta-learning is a measurable claim: fast adaptation (sinusoid MSE after one step), data
#   efficiency (accuracy vs shots against scratch and transfer), generalisation (new Omniglot characters), and
#   flexibility (one ProtoNet for other ways and shots). The domain-shift test shows where generalisation stops:
#   the gain over pixels earned on characters is not guaranteed on digits.
# * An RL² agent needs the reward as an input and a hidden state carried across the episodes of a trial; the
#   ablations measure what removing either costs.
# * A learned task metric retrieves the training task that helps when it is trained on measured transfer gains.
#   A source's own leave-one-out score on the support set does as well or better without training, and pooling
#   every source into one network beats picking one.
#
# ## Exercises
#
# 1. Re-run the domain-shift test with the MAML record instead of ProtoNet (`mlcore.experiments.domain_shift.reproduce(source=
#    "maml_omniglot_5w1s")`). Does fine-tuning at test time recover more of the shift than ProtoNet's fixed
#    embedding?
# 2. Thin the digits' strokes (e.g. threshold at 0.7 before upsampling) and measure again. How much of the shift
#    was stroke width?
# 3. Add a fourth RL² ablation: no previous-action input. Predict the result for bandits before you run it.
# 4. Retrieve with $f_\theta$ from only 10 of the 30 sources (`retrieval_vs_sources` in the record shows the
#    average). For which new tasks does a smaller library of sources hurt most?
