"""The sinusoid and task-similarity studies train through :func:`mlcore.engine.fit` (issue 16) and still
give the very weights their hand-written loops gave.

The committed records (``results/sinusoid*.json``, ``results/task_similarity_omniglot.json``) came from
those loops, and the book's chapters train these functions live, so bitwise equality is the criterion:
each ``_old_*`` function below is the loop as it stood before the move (copied from git, kept here as an
independent reference), and every test runs it and the library function on small settings and asserts
``torch.equal`` on every parameter and buffer, and the same history values.
"""
import pytest
import torch
import torch.nn.functional as F

from mlcore.data.sinusoid import SinusoidSampler
from mlcore.engine import fit
from mlcore.experiments import sinusoid as S
from mlcore.metric import task_similarity as ts
from mlcore.metric.siamese import distort
from mlcore.nets import Conv4
from mlcore.optimization.maml import batched_query_loss
from mlcore.runtime import get_device, seed_everything


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Every parameter and buffer equal bit for bit, under the same names."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def background():
    from mlcore.data import load_split

    return load_split("background")


# ----------------------------------------------------------------------------- sinusoid: the old loops
def _old_train_maml(steps, meta_batch=25, shots=10, inner_lr=0.01, inner_steps=1, first_order=False, lr=1e-3,
                    seed=0, device=None, log_every=1000):
    device = get_device(device)
    seed_everything(seed)
    model = S.make_regressor().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sampler = SinusoidSampler(shots=shots, queries=shots, batch_size=meta_batch, seed=seed, device=device)
    history, running = [], 0.0
    for step in range(1, steps + 1):
        t = sampler.sample()
        losses, _ = batched_query_loss(model, dict(model.named_parameters()), t.support_x, t.support_y,
                                       t.query_x, t.query_y, F.mse_loss, [inner_lr] * inner_steps, first_order)
        loss = losses.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(loss.detach())
        if step % log_every == 0 or step == steps:
            history.append({"step": step, "loss": running / (log_every if step % log_every == 0 else
                                                             step % log_every)})
            running = 0.0
    return model, history


def _old_train_pretrained(steps, meta_batch=25, shots=10, lr=1e-3, seed=0, device=None):
    device = get_device(device)
    seed_everything(seed)
    model = S.make_regressor().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sampler = SinusoidSampler(shots=shots, queries=shots, batch_size=meta_batch, seed=seed + 1, device=device)
    for _ in range(steps):
        t = sampler.sample()
        x = torch.cat([t.support_x, t.query_x], 1)
        y = torch.cat([t.support_y, t.query_y], 1)
        loss = F.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


# ----------------------------------------------------------------------------- sinusoid: the tests
@pytest.mark.parametrize("kw", [
    {"steps": 7, "meta_batch": 4, "shots": 5, "log_every": 3, "seed": 1},  # the last row is a partial mean
    {"steps": 6, "meta_batch": 3, "shots": 4, "inner_steps": 2, "first_order": True, "lr": 3e-3, "log_every": 2},
    {"steps": 0, "meta_batch": 3, "shots": 4},
])
def test_train_maml_equals_the_old_loop(kw):
    old, old_hist = _old_train_maml(device="cpu", **kw)
    new, new_hist = S.train_maml(device="cpu", **kw)
    assert_same_state(old, new)
    assert new_hist == old_hist


def test_train_maml_at_the_notebooks_settings_equals_the_old_loop():
    """Chapter 4's live call (``log_every = steps // 4``) and chapter 7's (exact and first order), shortened."""
    for kw in ({"log_every": 5}, {"first_order": True, "seed": 0}, {"first_order": False, "seed": 0}):
        old, old_hist = _old_train_maml(20, **kw)
        new, new_hist = S.train_maml(20, **kw)
        assert_same_state(old, new)
        assert new_hist == old_hist


@pytest.mark.parametrize("kw", [{"steps": 5, "meta_batch": 4, "shots": 5, "seed": 2}, {"steps": 3, "lr": 1e-2}])
def test_train_pretrained_equals_the_old_loop(kw):
    assert_same_state(_old_train_pretrained(device="cpu", **kw), S.train_pretrained(device="cpu", **kw))


def test_train_maml_stopped_by_its_time_limit_resumes_to_the_straight_run(tmp_path):
    """``time_limit_s=0`` stops after one step and checkpoints; each later call resumes one more step."""
    kw = {"meta_batch": 3, "shots": 4, "log_every": 2, "seed": 4}
    straight, straight_hist = S.train_maml(5, **kw)
    for done in range(1, 6):
        model, hist = S.train_maml(5, run_dir=tmp_path, time_limit_s=0, **kw)
        assert hist[-1]["step"] == done
    assert_same_state(straight, model)
    # every stop logs the steps since the previous row, here one each: their means are the straight run's rows
    assert [h["step"] for h in hist] == [1, 2, 3, 4, 5] and [h["step"] for h in straight_hist] == [2, 4, 5]
    losses = [h["loss"] for h in hist]
    assert [h["loss"] for h in straight_hist] == pytest.approx([(losses[0] + losses[1]) / 2,
                                                               (losses[2] + losses[3]) / 2, losses[4]], rel=1e-12)
    with pytest.raises(ValueError, match="different run"):  # another recipe's checkpoint is refused
        S.train_maml(5, run_dir=tmp_path, **{**kw, "shots": 5})


def test_sinusoid_maml_learner_resumes_exactly_after_stop_after(tmp_path):
    """fit(stop_after=3) then a resumed fit from run_dir: the weights of the straight 8-step run."""
    def build():
        seed_everything(0)
        learner = S.SinusoidMAML(S.make_regressor(), inner_lr=0.01, inner_steps=1, first_order=False)
        return learner, SinusoidSampler(shots=4, queries=4, batch_size=3, seed=0)

    straight, sampler = build()
    fit(straight, sampler, 8, progress=False, log_every=4)
    first, sampler = build()
    fit(first, sampler, 8, progress=False, log_every=4, run_dir=tmp_path, stop_after=3)
    resumed, sampler = build()
    fr = fit(resumed, sampler, 8, progress=False, log_every=4, run_dir=tmp_path)
    assert fr.resumed_from == 3
    assert_same_state(straight, resumed)


# ----------------------------------------------------------------------------- task similarity: the old loops
def _old_train_set_similarity(cs, split, steps, pairs=16, ways=4, shots=5, hidden=32, dim=32, lr=1e-3, seed=0,
                              device="cpu"):
    g = torch.Generator().manual_seed(seed)
    enc, sim = ts.seeded(seed, lambda: (ts.SetTaskEncoder(hidden, dim).to(device), ts.TaskSimilarity(dim).to(device)))
    opt = torch.optim.Adam([*enc.parameters(), *sim.parameters()], lr=lr)
    hist = []
    for _step in range(steps):
        xi, xj, y, _ = ts.sample_task_pairs(cs, split, pairs, ways, shots, g)
        f = sim(enc(xi.to(device)), enc(xj.to(device)))
        loss = ts.similarity_loss(f, y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(float(loss.detach()) / pairs)
    return enc.eval(), sim.eval(), hist


def _old_train_feature_net(cs, classes, steps, hidden=32, batch=64, lr=1e-3, train_drawings=15, seed=0,
                           device="cpu"):
    g = torch.Generator().manual_seed(seed)
    net = ts.seeded(seed, lambda: Conv4(1, hidden, pool="max", out_dim=len(classes)).to(device))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    cls = torch.tensor(classes)
    for _ in range(steps):
        c = torch.randint(len(classes), (batch,), generator=g)
        d = torch.randint(train_drawings, (batch,), generator=g)
        loss = F.cross_entropy(net(distort(cs.images[cls[c], d].to(device), g)), c.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        held = cs.images[cls][:, train_drawings:].flatten(0, 1).to(device)
        truth = torch.arange(len(classes)).repeat_interleave(20 - train_drawings)
        heldout_acc = float((net(held).argmax(-1).cpu() == truth).float().mean())
    net.head = None
    return net, heldout_acc


def _old_train_task_metric(e_tasks, e_sources, y, steps, val=None, weight=None, lr=1e-3, weight_decay=1e-4,
                           eval_every=50, seed=0):
    metric = ts.seeded(seed, lambda: ts.LearnedTaskMetric(e_tasks.shape[1]))
    opt = torch.optim.Adam(metric.parameters(), lr=lr, weight_decay=weight_decay)
    w = torch.ones_like(y) if weight is None else weight

    def loss_on(e, target, wt):
        f = metric(e[:, None].expand(-1, len(e_sources), -1), e_sources[None].expand(len(e), -1, -1))
        return (wt * (f - target) ** 2).sum() / wt.sum()

    best, history = (float("inf"), None), []
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                tr = float(loss_on(e_tasks, y, w))
                va = float(loss_on(val[0], val[1], torch.ones_like(val[1]))) if val is not None else tr
            history.append({"step": step, "train_loss": tr, "val_loss": va})
            if va < best[0]:
                best = (va, {k: v.clone() for k, v in metric.state_dict().items()})
        if step == steps:
            break
        loss = loss_on(e_tasks, y, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
    metric.load_state_dict(best[1])
    return metric.eval(), history


# ----------------------------------------------------------------------------- task similarity: the tests
@pytest.mark.parametrize("kw", [{"steps": 3, "hidden": 8, "batch": 8, "seed": 3},
                                {"steps": 2, "hidden": 4, "batch": 6, "lr": 1e-2, "train_drawings": 12, "seed": 0}])
def test_train_feature_net_equals_the_old_loop(background, kw):
    classes = [0, 1, 2, 7, 9]
    old, old_acc = _old_train_feature_net(background, classes, **kw)
    new, new_acc = ts.train_feature_net(background, classes, **kw)
    assert_same_state(old, new)  # batch-norm running statistics included
    assert new_acc == old_acc and new.head is None and not new.training


def test_feature_net_learner_resumes_exactly_after_stop_after(background, tmp_path):
    """The drawing sampler's generator (draws and distortions) and the BN statistics survive a resume."""
    def build():
        net = ts.seeded(5, lambda: Conv4(1, 4, pool="max", out_dim=3))
        return ts.SourceClassifier(net), ts.DrawingSampler(background, [0, 1, 2], batch=6, train_drawings=15, seed=5)

    straight, sampler = build()
    fit(straight, sampler, 5, progress=False)
    first, sampler = build()
    fit(first, sampler, 5, progress=False, run_dir=tmp_path, stop_after=2)
    resumed, sampler = build()
    assert fit(resumed, sampler, 5, progress=False, run_dir=tmp_path).resumed_from == 2
    assert_same_state(straight, resumed)


def test_train_set_similarity_equals_the_old_loop(background):
    split = ts.alphabet_split(background, 5, alphabets=3)
    kw = {"steps": 3, "pairs": 4, "ways": 3, "shots": 2, "hidden": 8, "dim": 8, "seed": 1}
    old_enc, old_sim, old_hist = _old_train_set_similarity(background, split, **kw)
    enc, sim, hist = ts.train_set_similarity(background, split, **kw)
    assert_same_state(old_enc, enc)
    assert_same_state(old_sim, sim)
    assert hist == old_hist and len(hist) == 3
    assert not enc.training and not sim.training


def _metric_data(seed=0, n=40, val_n=12, s=5, d=6):
    g = torch.Generator().manual_seed(seed)
    e_src = torch.randn(s, d, generator=g)
    e_tr, e_va = torch.randn(n, d, generator=g), torch.randn(val_n, d, generator=g)
    y_tr, y_va = torch.rand(n, s, generator=g), torch.rand(val_n, s, generator=g)
    w = torch.rand(n, s, generator=g) + 0.5
    return e_tr, e_src, y_tr, (e_va, y_va), w


@pytest.mark.parametrize("kw", [
    {"steps": 23, "eval_every": 5, "lr": 3e-2, "use_val": True, "use_weight": True},  # a last step off the eval grid
    {"steps": 20, "eval_every": 5, "lr": 1e-3, "weight_decay": 0.0, "use_val": False, "use_weight": False, "seed": 2},
    {"steps": 3, "eval_every": 50, "use_val": True, "use_weight": False},  # eval_every past the end: steps 0 and 3
    {"steps": 0, "eval_every": 5, "use_val": True, "use_weight": True},
])
def test_train_task_metric_equals_the_old_loop(kw):
    kw = dict(kw)
    e_tr, e_src, y, val, w = _metric_data()
    args = dict(val=val if kw.pop("use_val") else None, weight=w if kw.pop("use_weight") else None, **kw)
    old, old_hist = _old_train_task_metric(e_tr, e_src, y, **args)
    new, new_hist = ts.train_task_metric(e_tr, e_src, y, **args)
    assert_same_state(old, new)
    assert new_hist == old_hist and not new.training


def test_train_task_metric_keeps_the_best_validation_step_like_the_old_loop():
    """Validation labels that training moves away from: the kept state is an early one, in both."""
    e_tr, e_src, y, (_e_va, _), _ = _metric_data(seed=3)
    val = (e_tr[:12], 1 - y[:12])  # the training tasks with inverted labels: fitting y makes them worse
    old, old_hist = _old_train_task_metric(e_tr, e_src, y, 30, val=val, lr=3e-2, eval_every=5)
    new, new_hist = ts.train_task_metric(e_tr, e_src, y, 30, val=val, lr=3e-2, eval_every=5)
    assert new_hist == old_hist
    best = min(range(len(new_hist)), key=lambda i: new_hist[i]["val_loss"])
    assert new_hist[best]["step"] < 30  # the state kept is not the last one...
    assert_same_state(old, new)  # ...and it is the same state
