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
# # The math of the four objectives, checked numerically
#
# The source article's §4 writes one formula per family: a squared loss for a task-similarity metric (§4.1), the
# {term}`MAML` meta-loss (§4.2), a loss through a memory module (§4.3) and a meta-reward (§4.4). Each is written there in
# one line, with some symbols left undefined. This chapter makes each one precise, derives its gradient, points at
# the `mlcore` line that computes every term, and then *checks* the derivation with numbers: autograd against the
# formula and against finite differences in float64, the MAML Hessian term computed explicitly, a policy gradient
# estimated from real rollouts against the exact one. Every check here is also a unit test
# (`tests/test_math.py`), and the check functions live in `mlcore.book.mathcheck`.
#
# **Objectives.** After this chapter you can
#
# 1. state each of the four objectives with its sums, symbols and the choices the article leaves open;
# 2. derive its gradient (the chain rule through a similarity head, MAML's $(I-\alpha\nabla^2 L)$ factor, the
#    gradient through a memory read and write, the score-function gradient of an expected reward);
# 3. verify a gradient numerically: `torch.autograd.gradcheck`, directional finite differences, explicit Hessians;
# 4. say what dropping MAML's second-order term costs on a real {term}`task`.
#
# Live cells run small float64 models and short trainings (budget `MLCORE_BUDGET`, *smoke* by default).

# %% tags=["setup", "hide-cell"]
# Colab setup: installs mlcore from a clone of the book's repository and points it at the clone's results/
# (the reference records and checkpoints the chapter reads). It runs in Colab, or where MLCORE_SETUP=1;
# elsewhere it does nothing. MLCORE_REPO_URL, MLCORE_REPO_REF and MLCORE_REPO_DIR pick another source.
import os, subprocess, sys
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
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import mlcore
from mlcore import budget as budget_mod
from mlcore.book import mathcheck as M
from mlcore.results import RESULTS_DIR

BUDGET = budget_mod.current_budget()
torch.set_num_threads(1)  # small models: one thread beats two fighting over a shared CPU
mlcore.seed_everything(0)
print("budget:", BUDGET)


def show(fn):
    print(inspect.getsource(fn))


def report(checks, what):
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in checks)
    print(f"{what}: " + ", ".join(f"{a:+.8e} vs {b:+.8e}" for a, b in checks) + f"  (max rel. diff {worst:.1e})")

# %% [markdown]
# ## The task-similarity loss (§4.1)
#
# The article: learn $f_\theta(T_i, T_j)$ by minimising $\sum (f_\theta(T_i,T_j) - y_{ij})^2$. Made precise
# (`mlcore.metric.task_similarity`, Chapter 3):
#
# $$\mathcal{L}(\theta) = \sum_{p=1}^{P} \big(f_\theta(T_{i_p}, T_{j_p}) - y_{i_p j_p}\big)^2,\qquad
#   f_\theta(T_i,T_j) = \sigma\!\big(g_\theta(|e_i - e_j|,\; e_i \odot e_j)\big),\quad e_i = \rho\Big(\tfrac{1}{|S_i|}\sum_{x\in S_i}\phi(x)\Big).$$
#
# * **What is summed over.** The article's sum has no range. All pairs of a finite task set would be $O(n^2)$ and
#   dominated by dissimilar pairs; the book draws $P$ pairs per step, half with $y=1$, as a stochastic estimate.
# * **$y_{ij}$.** Undefined in the article. The book uses a label that can be checked: $y_{ij}=1$ if the two tasks
#   come from the same alphabet, else 0, with *disjoint* characters so that the metric must learn an alphabet's style.
#   (A graded alternative is measured transfer gain; Chapter 3 compares the retrieval it gives.)
# * **$T_i$.** A task enters only through its support set $S_i$, embedded by a permutation-invariant encoder
#   ($\phi$ a Conv-4, mean over the set, $\rho$ an MLP); $f$ is symmetric by construction.
#
# **Gradient.** With $f_p = f_\theta(T_{i_p},T_{j_p})$, $\nabla_\theta \mathcal{L} = \sum_p 2\,(f_p - y_p)\,\nabla_\theta f_p$:
# each pair pushes $f$ towards its label with a weight equal to its residual, and the encoder receives the gradient
# through both $e_i$ and $e_j$. The code:

# %%
from mlcore.metric import task_similarity as ts

show(ts.similarity_loss)
show(ts.TaskSimilarity.forward)

# %% [markdown]
# **Check 1: autograd equals the chain-rule formula.** `mathcheck.similarity_gradient_by_formula` computes the
# per-pair Jacobian $\nabla_\theta f_p$ with `torch.func.jacrev` and contracts it with $2(f_p-y_p)$:

# %%
torch.manual_seed(0)
sim = ts.TaskSimilarity(dim=4, hidden=6).double()
e_i, e_j = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
y = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
auto, formula = M.similarity_gradient_by_formula(sim, e_i, e_j, y)
print("max |autograd - formula| over the head's parameters:",
      f"{max(float((auto[k] - formula[k]).abs().max()) for k in auto):.1e}")
print("gradcheck w.r.t. both task embeddings:",
      gradcheck(lambda a, b: ts.similarity_loss(sim(a, b), y), (e_i.clone().requires_grad_(), e_j.clone().requires_grad_())))

# %% [markdown]
# **Check 2: the whole network against finite differences.** `gradcheck` perturbs one coordinate at a time; for a
# Conv-4 encoder that is thousands of evaluations, so `mathcheck.directional_check` compares the directional
# derivative $\nabla\mathcal{L}\cdot v$ with $(\mathcal{L}(\theta+\epsilon v)-\mathcal{L}(\theta-\epsilon v))/2\epsilon$ along
# random unit directions $v$ of *all* parameters (encoder and head), in float64:

# %%
torch.manual_seed(0)
enc, head = ts.SetTaskEncoder(hidden=3, dim=4).double().eval(), ts.TaskSimilarity(dim=4, hidden=5).double()
xi, xj = torch.rand(3, 4, 1, 28, 28, dtype=torch.float64), torch.rand(3, 4, 1, 28, 28, dtype=torch.float64)
yy = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
report(M.directional_check(lambda: ts.similarity_loss(head(enc(xi), enc(xj)), yy),
                           [*enc.parameters(), *head.parameters()]), "autograd vs central difference")

# %% [markdown]
# **The figure: a learned similarity surface.** A short live training of the set encoder and head with this loss on
# the background alphabets (smoke budget: a few dozen steps), then $f_\theta$ between 12 new tasks, three from each of
# four alphabets (characters not seen together in training pairs). A block-diagonal pattern means the metric has
# learned "same alphabet".

# %%
from mlcore.data import load_split

bg = load_split("background")
split = ts.alphabet_split(bg, target_ways=5)
steps = budget_mod.pick(BUDGET, smoke=40, full=400)
enc_t, sim_t, hist = ts.train_set_similarity(bg, split, steps=steps, pairs=8, ways=4, shots=5, hidden=16, dim=16,
                                             seed=0)
g = torch.Generator().manual_seed(1)
alphs = [0, 5, 10, 20]
tasks = [ts.make_task(bg, ts.random_subset(split[a][0], 4, g), a, 5, 0, g) for a in alphs for _ in range(3)]
with torch.no_grad():
    emb = enc_t(torch.stack([t.support_x for t in tasks]))
    S = sim_t(emb[:, None].expand(-1, len(tasks), -1), emb[None].expand(len(tasks), -1, -1))

# %% [markdown]
# How far apart the two kinds of pairs are, then the matrix itself:

# %%
same = torch.tensor([[t.alphabet == u.alphabet for u in tasks] for t in tasks])
off = ~torch.eye(len(tasks), dtype=torch.bool)
print(f"after {steps} steps: training loss per pair {sum(hist[:5]) / 5:.3f} (first 5) -> {sum(hist[-5:]) / 5:.3f} "
      f"(last 5); mean f on same-alphabet pairs {float(S[same & off].mean()):.3f}, on different-alphabet pairs "
      f"{float(S[~same].mean()):.3f}")
fig, ax = plt.subplots(figsize=(4.5, 4))
im = ax.imshow(S, vmin=0, vmax=1, cmap="viridis")
ticks = [bg.alphabets[a][:12] for a in alphs]
ax.set_xticks([1, 4, 7, 10], ticks, rotation=45, ha="right")
ax.set_yticks([1, 4, 7, 10], ticks)
ax.set_title(f"f_θ(T_i, T_j), live ({BUDGET} budget)")
plt.colorbar(im, ax=ax)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The MAML meta-loss (§4.2)
#
# The article writes $\mathcal{L}_{\text{meta}}(\theta_0) = \sum_i \mathcal{L}_i(\theta_0 - \alpha\nabla\mathcal{L}_i(\theta_0))$
# {cite}`finn2017maml`. Made precise (`mlcore.optimization.maml`):
#
# $$\mathcal{L}_{\text{meta}}(\theta_0) = \frac{1}{B}\sum_{i=1}^{B} \mathcal{L}^{\text{val}}_i(\theta_i'),\qquad
#   \theta_i' = \theta_0 - \alpha \nabla_\theta \mathcal{L}^{\text{tr}}_i(\theta_0).$$
#
# * **Two losses, not one.** The article uses the same $\mathcal{L}_i$ inside and outside. In MAML the inner step uses
#   the task's *support* set ($\mathcal{L}^{\text{tr}}_i$) and the outer loss its *query* set ($\mathcal{L}^{\text{val}}_i$);
#   using the same data for both rewards memorising the {term}`support set`.
# * **Which tasks.** $i$ runs over a meta-batch of $B$ tasks sampled per step (a stochastic estimate of an expectation over
#   the task distribution); `mlcore` takes the *mean*, which only rescales the gradient by $1/B$.
# * **One step, fixed α.** The formula shows one inner step; the library runs $J$ steps
#   ($\theta^{(s+1)} = \theta^{(s)} - \alpha_s\nabla\mathcal{L}^{\text{tr}}(\theta^{(s)})$) and can learn $\alpha$ (Meta-SGD).
#
# **Gradient.** By the chain rule, with $\partial\theta'/\partial\theta_0 = I - \alpha\nabla^2\mathcal{L}^{\text{tr}}_i(\theta_0)$
# (symmetric),
#
# $$\nabla_{\theta_0}\mathcal{L}^{\text{val}}_i(\theta_i') = \big(I - \alpha\,\nabla^2\mathcal{L}^{\text{tr}}_i(\theta_0)\big)\,
#   \nabla\mathcal{L}^{\text{val}}_i(\theta_i') = \underbrace{\nabla\mathcal{L}^{\text{val}}_i(\theta_i')}_{\text{first order}}
#   \;\underbrace{-\,\alpha\, H_i\,\nabla\mathcal{L}^{\text{val}}_i(\theta_i')}_{\text{Hessian-vector term}}.$$
#
# First-order MAML keeps only the first term. In code, the inner step is one line of `inner_loop`; autograd through
# `torch.func.grad` produces the Hessian-vector product without ever forming $H$:

# %%
from mlcore.optimization import maml as maml_mod

show(maml_mod.inner_loop)

# %% [markdown]
# **Check 1: the library's meta-gradient equals the formula with an explicit Hessian.** On a sinusoid task
# {cite}`finn2017maml` and the paper's 1-40-40-1 regressor in float64 (1,761 parameters; the full Hessian of the
# support loss is built with `torch.func.hessian`):

# %%
from mlcore.data import SinusoidSampler
from mlcore.experiments import sinusoid as sin

t = SinusoidSampler(shots=10, queries=10, batch_size=1, seed=0).sample()
d64 = lambda z: z[0].double()  # noqa: E731
torch.manual_seed(0)
reg = sin.make_regressor().double()
r = M.maml_hessian_term(reg, (d64(t.support_x), d64(t.support_y)), (d64(t.query_x), d64(t.query_y)), alpha=0.01)
cos = float(r["first"] @ r["second"] / (r["first"].norm() * r["second"].norm()))
print(f"Hessian {tuple(r['hessian'].shape)}; |second-order (autograd) - (g - αHg) explicit| = "
      f"{float((r['second'] - r['explicit']).abs().max()):.1e}")
print(f"|Hessian term| / |first-order term| = {float(r['hvp_term'].norm() / r['first'].norm()):.3f}; "
      f"cosine(first-order, exact) = {cos:.4f}")

# %% [markdown]
# **Check 2: gradcheck of the meta-loss itself** (two inner steps, a smaller net so that one evaluation per
# coordinate is affordable):

# %%
from mlcore.nets import MLP

torch.manual_seed(0)
tiny = MLP(1, [4, 4], 1).double()
names = [k for k, _ in tiny.named_parameters()]
ts3 = SinusoidSampler(shots=3, queries=3, batch_size=1, seed=0).sample()
sup, qry = (d64(ts3.support_x), d64(ts3.support_y)), (d64(ts3.query_x), d64(ts3.query_y))
print("gradcheck of L_meta(θ0), 2 inner steps:", gradcheck(
    lambda *v: maml_mod.adapted_query_loss(tiny, dict(zip(names, v)), *sup, *qry, F.mse_loss, [0.05, 0.05])[0],
    tuple(v.detach().clone().requires_grad_(True) for _, v in tiny.named_parameters())))

# %% [markdown]
# **What dropping the Hessian term costs on a real task.** Meta-train the sinusoid regressor with exact MAML and with
# first-order MAML, same seed, same tasks, same number of steps, then score both on the same fixed test tasks: MSE on
# the true curve after adapting with 1 and 10 gradient steps on $K=10$ points (live, this budget), and the reference
# record if it exists.

# %%
sin_steps = budget_mod.pick(BUDGET, smoke=400, full=5000)
mse = {}
models = {}
for name, fo in (("MAML", False), ("first-order MAML", True)):
    models[name], _ = sin.train_maml(sin_steps, first_order=fo, seed=0, device="cpu")
    mse[name] = sin.score(models[name], shots=10, n_tasks=200, device="cpu")
for name, s in mse.items():
    print(f"{name:>17} ({sin_steps} meta-steps): " + ", ".join(f"{k} {v[0]:.3f}±{v[1]:.3f}" for k, v in s.items()
                                                              if k in ("steps=1", "steps=10")))
ref = RESULTS_DIR / "maml_sinusoid.json"
if ref.exists():
    rec = mlcore.load_record(ref)
    m = rec.metrics["mse"]["maml_k10"]
    print(f"reference record maml_sinusoid (full budget, {rec.config['steps']} steps, exact MAML): "
          + ", ".join(f"{k} {m[k][0]:.3f}±{m[k][1]:.3f}" for k in ("steps=1", "steps=10")))
else:
    print("maml_sinusoid: reference record not yet produced")

# %% [markdown]
# Compare the two rows: same seed, same tasks, same number of meta-steps, only the Hessian term differs; the ±
# columns (95 % CIs over the 200 test tasks) say how much of the gap is noise at this budget. Check 1 printed how
# large that term is at a single point (relative to the first-order term, and the angle it turns the gradient by);
# it grows with $\alpha$, with more inner steps and with the curvature of the loss. Finn et al. report first-order MAML
# close to MAML on their image benchmarks; Chapter 4 compares the two on Omniglot.
#
# **The figure: the meta-loss landscape.** Along two random directions $d_1, d_2$ around the meta-trained $\theta_0$,
# the mean query loss over 25 tasks *before* adaptation, $\frac1B\sum_i\mathcal{L}^{\text{val}}_i(\theta)$, and *after*
# one inner step, $\frac1B\sum_i\mathcal{L}^{\text{val}}_i(\theta-\alpha\nabla\mathcal{L}^{\text{tr}}_i(\theta))$, which is
# exactly $\mathcal{L}_{\text{meta}}$:

# %%
from torch.func import functional_call, vmap

model = models["MAML"]
tasks25 = SinusoidSampler(shots=10, queries=10, batch_size=25, seed=5).sample()
theta = {k: v.detach() for k, v in model.named_parameters()}
gdir = torch.Generator().manual_seed(0)
dirs = []
for _ in range(2):  # filter-normalised random directions: each tensor scaled to the norm of its weights
    d = {k: torch.randn(v.shape, generator=gdir) for k, v in theta.items()}
    dirs.append({k: d[k] * theta[k].norm() / (d[k].norm() + 1e-12) for k in theta})
span = torch.linspace(-1, 1, 21)

# %% [markdown]
# At each point of a 21 × 21 grid in the plane of $d_1, d_2$, the mean query loss over the 25 tasks before and after
# one inner step, with the tasks run in parallel by `vmap`:

# %%
def mean_losses(params):
    def one(sx, sy, qx, qy):
        pre = F.mse_loss(functional_call(model, params, (qx,)), qy)
        phi = maml_mod.inner_loop(model, params, sx, sy, F.mse_loss, [0.01], first_order=True)
        return pre, F.mse_loss(functional_call(model, phi, (qx,)), qy)
    pre, post = vmap(one)(tasks25.support_x, tasks25.support_y, tasks25.query_x, tasks25.query_y)
    return float(pre.mean()), float(post.mean())


grid = torch.tensor([[mean_losses({k: theta[k] + a * dirs[0][k] + b * dirs[1][k] for k in theta})
                      for a in span] for b in span])

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, k, title in ((axes[0], 0, "before adaptation: mean L_val(θ)"),
                     (axes[1], 1, "after one inner step: L_meta(θ)")):
    levels = torch.quantile(grid[..., k].flatten(), torch.linspace(0.0, 0.9, 12)).tolist()  # per panel
    cs = ax.contourf(span, span, grid[..., k], levels=sorted(set(levels)), cmap="viridis", extend="max")
    ax.plot(0, 0, "r*", ms=12)
    ax.set(title=title, xlabel="d1", ylabel="d2")
    plt.colorbar(cs, ax=ax)
plt.tight_layout()
plt.show()
print(f"at the meta-trained θ0 (red star): before {grid[10, 10, 0]:.3f}, after one step {grid[10, 10, 1]:.3f}")

# %% [markdown]
# MAML does not look for a point where the loss is low *before* adaptation (the left surface is high and fairly flat at
# $\theta_0$, since one function cannot fit sinusoids of every phase); it looks for a point where one gradient step
# lands low (right).
#
# ## The loss through a memory module (§4.3)
#
# The article: $\sum_i \mathcal{L}_i(f_\theta(x, M_i))$. Made precise:
#
# $$\mathcal{L}(\theta) = \frac1B\sum_{i=1}^B \frac{1}{|Q_i|}\sum_{(x,y)\in Q_i} -\log p_\theta\big(y \mid x, M_i\big),
#   \qquad M_i = \mathrm{write}_\theta(S_i),\quad p_\theta(\cdot\mid x, M) = \mathrm{read}_\theta(x, M).$$
#
# * **What $M_i$ is.** The article does not say. In the book it is the memory *written from task $i$'s own data* and
#   emptied between tasks: ProtoNet's {term}`prototypes <prototype>` (write = class mean of embeddings; read = softmax over negative squared
#   distances) {cite}`snell2017prototypical`, Matching Networks' support embeddings and labels (read = attention)
#   {cite}`vinyals2016matching`, or {term}`MANN`'s LRUA slots written one step at a time {cite}`santoro2016mann`.
# * **What $x$ is.** A query of the same task, never part of $S_i$ (for MANN: each element of the sequence is a query of
#   the memory written from the elements before it).
# * **Is $M_i$ differentiable?** Yes in all three: the write is a function of $\theta$, so the gradient flows through the
#   read *and* the write. (Memory that is written without gradient is a different, cheaper objective.)
#
# **Gradient of the read (ProtoNet).** With logits $\ell_k = -\lVert q - p_k\rVert^2$ and read weights
# $\pi = \mathrm{softmax}(\ell)$, the query's loss $-\log \pi_y$ has
#
# $$\frac{\partial \mathcal{L}}{\partial q} = \sum_k (\pi_k - \delta_{ky})\,\frac{\partial \ell_k}{\partial q}
#   = -2\sum_k (\pi_k - \delta_{ky})\,(q - p_k),$$
#
# which pulls $q$ towards its own prototype and pushes it away from the others in proportion to the read weight they
# steal; through $p_k = \frac{1}{K}\sum_{j: y_j = k} z_j$ the same signal reaches the support embeddings (the write).
# The code:

# %%
from mlcore.memory import mann as mann_mod
from mlcore.memory import protonet as pn

show(pn.prototypes)
show(pn.prototype_logits)

# %% [markdown]
# **Checks:** the read gradient against the formula, then `gradcheck` of write + read together w.r.t. the support and
# query embeddings, then `gradcheck` of one LRUA write-then-read step (w.r.t. the key, the write gate and the memory),
# and finally the whole MANN meta-loss against finite differences:

# %%
g = torch.Generator().manual_seed(0)
protos = torch.randn(4, 6, generator=g, dtype=torch.float64)
q = torch.randn(6, generator=g, dtype=torch.float64)
auto, formula = M.protonet_query_gradient(q, protos, label=2)
print(f"read gradient: max |autograd - formula| = {float((auto - formula).abs().max()):.1e}")
zs = torch.randn(8, 6, generator=g, dtype=torch.float64, requires_grad=True)
zq = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
ys, yq = torch.arange(4).repeat_interleave(2), torch.tensor([0, 1, 2, 3, 0])
print("gradcheck, prototype write + read:",
      gradcheck(lambda s, qq: F.cross_entropy(pn.prototype_logits(qq, pn.prototypes(s, ys, 4)), yq), (zs, zq)))

# %% [markdown]
# The MANN's memory: one LRUA write-then-read step, then the whole meta-loss of a tiny MANN:

# %%
st = mann_mod.init_memory(1, 5, 3, 1, dtype=torch.float64)
st.memory = torch.rand(1, 5, 3, generator=g, dtype=torch.float64)
st.read_w = torch.softmax(torch.randn(1, 1, 5, generator=g, dtype=torch.float64), -1)


def lrua_read(k, a, m):
    return mann_mod.lrua_step(mann_mod.MemoryState(m, st.usage, st.read_w, st.lu, st.reads), k, a, 0.95)[0].reads


print("gradcheck, one LRUA write-then-read step:", gradcheck(lrua_read, (
    torch.randn(1, 1, 3, generator=g, dtype=torch.float64, requires_grad=True),
    torch.randn(1, 1, generator=g, dtype=torch.float64, requires_grad=True),
    st.memory.clone().requires_grad_(True))))
torch.manual_seed(0)
tiny_mann = mann_mod.MANN(ways=3, image_size=4, controller=6, slots=5, slot_width=3, heads=1).double()
seq = mann_mod.SequenceBatch(torch.rand(2, 6, 1, 28, 28, generator=g, dtype=torch.float64),
                             torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 0, 1, 0]]), 3)
report(M.directional_check(lambda: tiny_mann.meta_loss(seq)[0], list(tiny_mann.parameters())),
       "MANN meta-loss, autograd vs central difference")

# %% [markdown]
# **The figure: memory read weights.** MANN's read weights $w^r_t$ over the 128 slots along one 5-way sequence with 10
# drawings per class, from the reference record if it exists, else from a short live training (a smoke-trained MANN
# has barely started to bind images to slots; the pattern to look for is that a class's later presentations read the
# slot written at its earlier ones).

# %%
from mlcore.data import EpisodeSampler

ref = RESULTS_DIR / "mann_omniglot_5w1s.json"
if ref.exists():
    mann_model, source = mlcore.load(ref, "cpu"), "reference record mann_omniglot_5w1s (full budget)"
else:
    print("mann_omniglot_5w1s: reference record not yet produced; training live")
    recipe = mann_mod.MANN.recipe(5, 1, BUDGET)
    mlcore.seed_everything(0)
    mann_model = mann_mod.MANN(**recipe.model)
    mlcore.fit(mann_model, mann_model.make_train_sampler(recipe, "cpu", 0), recipe.steps, lr=recipe.lr,
               grad_clip=recipe.grad_clip, progress=False)
    source = f"MANN trained live for {recipe.steps} steps ({BUDGET} budget)"

# %% [markdown]
# One held-out sequence through the model, keeping the read weights of every step:

# %%
sampler = mann_mod.SequenceSampler(load_split("vinyals/test"), 5, 10, 1, "cpu", seed=3)
batch = sampler.sample()
trace = {}
with torch.no_grad():
    logits = mann_model.forward_sequence(batch.x, batch.y, trace)
W = torch.stack(trace["read_w"], 1)[0, :, 0]  # (T, slots), head 0
used = W.sum(0).argsort(descending=True)[:24].sort().values
fig, ax = plt.subplots(figsize=(10, 3.2))
ax.imshow(W[:, used].T, aspect="auto", cmap="magma")
for t_, c in enumerate(batch.y[0].tolist()):
    ax.text(t_, -1.2, str(c), ha="center", fontsize=7)
ax.set(xlabel="time step (class label above)", ylabel="slot (24 most read)")
ax.set_title(f"read weights, head 0 - {source}", pad=14)
plt.tight_layout()
plt.show()
acc = (logits.argmax(-1) == batch.y).float()[0]
inst = mann_mod.instance_numbers(batch.y)[0]
print("accuracy on this sequence, 1st presentations:", f"{float(acc[inst == 1].mean()):.2f};",
      "2nd and later:", f"{float(acc[inst > 1].mean()):.2f}")

# %% [markdown]
# ## The meta-reward (§4.4)
#
# The article: $R_{\text{meta}}(\theta) = \sum_i\sum_t r_i(s_t, a_t)$. Made precise for RL² {cite}`duan2016rl2`
# (`mlcore.rl.rl2`):
#
# $$R_{\text{meta}}(\theta) = \mathbb{E}_{\mathcal{M}\sim p(\mathcal{M})}\;\mathbb{E}_{\tau\sim \pi_\theta,\mathcal{M}}
#   \Big[\sum_{i=1}^{n}\sum_{t=1}^{H} r_i(s_t, a_t)\Big],\qquad a_t \sim \pi_\theta(\cdot\mid h_t),$$
#
# * **What $i$ is.** In RL² one *trial* is $n$ {term}`episodes <episode>` on one sampled task $\mathcal{M}$ (a bandit, an MDP) and $i$
#   indexes the episodes of the trial; the policy's hidden state $h_t$ is kept across them and reset between trials.
#   That is what makes exploration in episode 1 pay off in episode 5. (Reading $i$ as "tasks" instead gives the same
#   outer expectation, but loses the point that the sum over episodes is *inside* one trial.)
# * **The expectations.** The article's sum is a random variable; the objective is its expectation over tasks and
#   over the policy's and environment's randomness. No discount: the agent is scored on the total.
# * **$r_i(s_t,a_t)$** is a sampled reward, not its mean.
#
# **Gradient.** The environment's probabilities do not depend on $\theta$, so with $P_\theta(\tau)$ the probability
# of a trajectory, $\nabla P_\theta = P_\theta \nabla \log P_\theta$ gives the score-function (REINFORCE) form
#
# $$\nabla_\theta R_{\text{meta}} = \mathbb{E}\Big[\big(R(\tau) - b\big)\sum_{t}\nabla_\theta\log\pi_\theta(a_t\mid h_t)\Big],$$
#
# where any baseline $b$ independent of the actions leaves it unbiased. `mlcore` maximises it with PPO and GAE
# advantages {cite}`schulman2017ppo,schulman2016gae` (lower-variance, clipped versions of the same estimator, computed
# over whole trials). The objective per trial and the PPO loss:

# %%
from mlcore.rl import rl2

print(inspect.getsource(rl2.Rollout.total.fget))
src = inspect.getsource(rl2.ppo_update)
print(src[src.index("    rewards = "):src.index("            vl = ")])

# %% [markdown]
# **Checks**, on a 2-armed Bernoulli bandit with arm means (0.2, 0.7), 3 pulls per trial and a small RL² GRU policy
# (float64): the exact $R_{\text{meta}}$ by enumerating all $4^3 = 64$ trajectories (actions and rewards) and summing
# $P_\theta(\tau)R(\tau)$; `gradcheck` of it; the exact score-function sum against autograd of the exact expectation;
# and the Monte-Carlo REINFORCE estimate from 20,000 trials played by `mlcore.rl.rl2.rollout` against the exact
# gradient.

# %%
import copy

from mlcore.rl.rl2 import RL2Policy

torch.manual_seed(0)
p32 = RL2Policy(num_states=1, num_actions=2, hidden=4)
with torch.no_grad():
    p32.pi.weight.mul_(100)  # away from the near-uniform initial policy, so the gradient has structure
p64 = copy.deepcopy(p32).double()
means = torch.tensor([0.2, 0.7], dtype=torch.float64)
R_meta = M.bandit_meta_reward(p64, means, 3)
print(f"exact R_meta = {float(R_meta.detach()):.6f} (a uniform policy would get 3 x 0.45 = 1.35; always arm 2: 2.1)")
fixed = {k: v.detach() for k, v in p64.named_parameters()}
print("gradcheck of R_meta w.r.t. the policy head:", gradcheck(
    lambda w, b: M.bandit_meta_reward(p64, means, 3, params={**fixed, "pi.weight": w, "pi.bias": b}),
    (fixed["pi.weight"].clone().requires_grad_(True), fixed["pi.bias"].clone().requires_grad_(True))))

# %% [markdown]
# Then the gradient three ways: autograd of the exact expectation, the exact score-function sum, and REINFORCE
# estimates from rollouts:

# %%
exact = torch.autograd.grad(R_meta, M.policy_parameters(p64))
score = M.reinforce_exact(p64, means, 3)
print("score-function sum vs autograd: max diff",
      f"{max(float((a - s).abs().max()) for a, s in zip(exact, score)):.1e}")
flat_exact = torch.cat([e.flatten() for e in exact]).float()
for trials in (500, 20000):
    est, R = M.reinforce_monte_carlo(p32, means, 3, trials=trials, seed=0)
    est = torch.cat([e.flatten() for e in est])
    print(f"REINFORCE from {trials:>5} rollouts: cosine to exact {float(est @ flat_exact / (est.norm() * flat_exact.norm())):.3f}, "
          f"norm ratio {float(est.norm() / flat_exact.norm()):.3f}, mean return {float(R.mean()):.3f}")

# %% [markdown]
# The estimator converges to the exact gradient as the number of trials grows (compare the two rows). A 2-armed
# bandit with 3 pulls is an easy case; with 100 pulls or an MDP the returns are far noisier, which is why RL² draws
# thousands of trials per update and reduces variance further with a learned baseline and GAE.
#
# **The figure: reward accumulated over a trial.** Expected reward collected up to pull $t$ on 5-armed bandits with
# 100 pulls, averaged over 500 trials: the classic strategies of Chapter 6, the best arm in hindsight, and RL² from
# its reference record if it exists.

# %%
from mlcore.book.plotting import colour
from mlcore.rl.baselines import bandit_baselines, run_policy
from mlcore.rl.envs import BernoulliBandits

pulls, arms = 100, 5
pols = bandit_baselines(pulls)
curves = {}  # policy -> expected reward collected up to each pull, mean over the 500 trials
for name in ("random", "epsilon-greedy", "UCB1", "Thompson", "Gittins"):
    env = BernoulliBandits(arms, pulls, trials=500, seed=11)
    out = run_policy(pols[name], env, keep_actions=True)
    curves[name] = env.means.gather(1, out["actions"]).cumsum(1).mean(0)
env = BernoulliBandits(arms, pulls, trials=500, seed=11)
best = env.means.max(1).values.mean() * torch.arange(1, pulls + 1)
ref = RESULTS_DIR / "rl2_bandit_n100_k5.json"
if ref.exists():
    from mlcore.experiments.rl2_records import load_rl2

    pol, _ = load_rl2(ref, "cpu")
    ro = rl2.rollout(pol, env, torch.Generator().manual_seed(0))
    curves["RL²"] = env.means.gather(1, ro.actions).cumsum(1).mean(0)
else:
    print("rl2_bandit_n100_k5: reference record not yet produced")

# %% [markdown]
# The reward collected so far (left) and its gap to always pulling the best arm, the regret (right):

# %%
fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(11, 4))
t = range(1, pulls + 1)
for name, cum in curves.items():
    if name != "RL²":
        ax.plot(t, cum, label=f"{name} ({float(cum[-1]):.1f})", color=colour(name))
        ax_r.plot(t, best - cum, label=name, color=colour(name))
ax.plot(t, best, "k--", label=f"best arm known ({float(best[-1]):.1f})")
if "RL²" in curves:
    cum = curves["RL²"]
    ax.plot(t, cum, lw=2.5, label=f"RL² (reference record, {float(cum[-1]):.1f})", color=colour("rl2"))
    ax_r.plot(t, best - cum, lw=2.5, label="RL²", color=colour("rl2"))
ax.set(xlabel="pull t", ylabel="expected reward collected so far", title="5-armed bandits, 100 pulls, 500 trials")
ax.legend(fontsize=8)
ax_r.set(xlabel="pull t", ylabel="regret so far", title="the gap to the best arm")
plt.tight_layout()
plt.show()

# %% [markdown]
# The meta-reward is the right end of each curve; the gap to the dashed line is the regret. A meta-learned agent is
# good when its curve bends towards the dashed slope early: it has learned *how to explore* from the task distribution.
#
# ## Summary
#
# | objective | made precise | gradient | checked by |
# |---|---|---|---|
# | §4.1 $\sum(f_\theta(T_i,T_j)-y_{ij})^2$ | $P$ sampled pairs, $y$ = same alphabet, set encoder | $\sum_p 2(f_p-y_p)\nabla f_p$ | chain rule = autograd, gradcheck, directional FD |
# | §4.2 $\sum_i L_i(\theta_0-\alpha\nabla L_i(\theta_0))$ | support loss inside, query loss outside, mean over $B$ | $(I-\alpha H_i)\nabla L^{val}_i(\theta')$ | explicit Hessian, gradcheck, MAML vs FOMAML |
# | §4.3 $\sum_i L_i(f_\theta(x,M_i))$ | $M_i$ written from task $i$, differentiable write and read | through read and write | read formula, gradcheck (prototypes, LRUA), FD on MANN |
# | §4.4 $\sum_i\sum_t r_i(s_t,a_t)$ | expectation over tasks and trajectories, $i$ = episodes of a trial | $\mathbb{E}[(R-b)\sum_t\nabla\log\pi]$ | exact enumeration, gradcheck, REINFORCE from rollouts |
#
# ## Exercises
#
# 1. Repeat the MAML Hessian check with $\alpha = 0.1$ and 5 inner steps. How does the ratio of the Hessian term to
#    the first-order term change? Predict it from the largest eigenvalue of $H$ first.
# 2. Replace the squared loss of §4.1 by binary cross-entropy. Derive the new gradient and check it with
#    `mathcheck.similarity_gradient_by_formula`'s approach.
# 3. Remove the baseline from the REINFORCE estimate (`baseline=False`) and measure how many more trials it needs for
#    the same cosine to the exact gradient.
# 4. Write the gradient of Matching Networks' attention read (a softmax over cosine similarities) and check it with
#    `gradcheck`.
