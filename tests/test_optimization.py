"""MAML & co.: exact meta-gradients (finite differences, explicit Hessian term), vmap = loop,
Meta-SGD ⊃ MAML, Reptile's direction, ANIL's head-only loop, transductive batch norm, errors,
a short real Omniglot run and the sinusoid code."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from mlcore.data import Episode, EpisodeSampler
from mlcore.nets import Conv4
from mlcore.optimization.anil import ANIL
from mlcore.optimization.maml import FOMAML, MAML, batched_query_loss, check_functional_model, inner_loop
from mlcore.optimization.metasgd import MetaSGD
from mlcore.optimization.reptile import Reptile


def tiny_episode(ways=3, shots=2, queries=2, batch=2, size=10, dtype=torch.float64, seed=0) -> Episode:
    """Random small images: enough to exercise every gradient path quickly."""
    g = torch.Generator().manual_seed(seed)
    sx = torch.randn(batch, ways * shots, 1, size, size, generator=g, dtype=dtype)
    qx = torch.randn(batch, ways * queries, 1, size, size, generator=g, dtype=dtype)
    sy = torch.arange(ways).repeat_interleave(shots).repeat(batch, 1)
    qy = torch.arange(ways).repeat_interleave(queries).repeat(batch, 1)
    return Episode(sx, sy, qx, qy, ways, shots, queries)


def tiny(cls=MAML, **kw):
    torch.manual_seed(0)
    kw = {"ways": 3, "hidden": 4, **kw}
    return cls(**kw).double()


def flat_grad(learner, ep, **kw):
    learner.zero_grad(set_to_none=True)
    loss, _ = learner.meta_loss(ep, **kw)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in learner.net.parameters()])


def test_meta_gradient_matches_float64_finite_differences():
    """Exact second-order meta-gradient, 2 inner steps with per-step rates, vs central differences."""
    m = tiny(inner_steps=2, inner_lr=[0.3, 0.2])
    ep = tiny_episode()
    g = flat_grad(m, ep)
    params = list(m.net.parameters())
    gen = torch.Generator().manual_seed(1)
    eps = 1e-7  # ReLU kinks sit close by in a tiny random net: keep the step well inside them
    for _ in range(3):
        v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        with torch.no_grad():
            for p, d in zip(params, v):
                p += eps * d
        lp = m.meta_loss(ep)[0].item()
        with torch.no_grad():
            for p, d in zip(params, v):
                p -= 2 * eps * d
        lm = m.meta_loss(ep)[0].item()
        with torch.no_grad():
            for p, d in zip(params, v):
                p += eps * d
        fd = (lp - lm) / (2 * eps)
        analytic = float(g @ torch.cat([d.flatten() for d in v]))
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-8)
    # the first-order gradient is a different vector: the check above can tell them apart
    m.first_order = True
    assert not torch.allclose(flat_grad(m, ep), g, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("batching", ["vmap", "inner"])
@pytest.mark.parametrize("cls", [MAML, FOMAML, ANIL, MetaSGD])
def test_batched_meta_batch_equals_plain_loop(cls, batching):
    """Every way of batching the tasks gives the loop's loss and meta-gradient: it is a speed choice only."""
    m = tiny(cls, inner_steps=2, inner_lr=0.3)
    ep = tiny_episode(batch=3)
    loss_b, _ = m.meta_loss(ep, batching=batching)
    loss_l, _ = m.meta_loss(ep, batching="loop")
    assert torch.allclose(loss_b, loss_l, rtol=1e-10)
    g_loop = flat_grad(m, ep, batching="loop")
    assert torch.allclose(flat_grad(m, ep, batching=batching), g_loop, rtol=1e-9, atol=1e-12)
    # a perturbed task changes the loop's gradient by far more than the tolerance: the check can fail
    ep.query_x[1] += 0.1
    assert not torch.allclose(flat_grad(m, ep, batching=batching), g_loop, rtol=1e-6, atol=1e-9)


def test_batching_auto_picks_by_device_and_bad_values_are_refused():
    from mlcore.optimization.maml import resolve_batching

    assert resolve_batching("auto", torch.device("cpu")) == "inner"
    assert resolve_batching("auto", torch.device("cuda")) == "vmap"
    assert resolve_batching("loop", torch.device("cuda")) == "loop"
    m = tiny(MAML, inner_steps=1, inner_lr=0.3)
    with pytest.raises(ValueError, match="batching must be one of 'auto', 'vmap', 'inner', 'loop', got 'fast'"):
        m.meta_loss(tiny_episode(batch=2), batching="fast")


def test_second_minus_first_order_is_exactly_the_hessian_term():
    """One inner step: ∇θ L_q(θ − α∇L_s(θ)) = ∇L_q(φ) − α H_s(θ) ∇L_q(φ); check the H_s v term explicitly."""
    alpha = 0.25  # exactly representable: the learner stores α as a float32 buffer
    m = tiny(inner_steps=1, inner_lr=alpha)
    ep = tiny_episode(batch=2)
    second = flat_grad(m, ep)
    m.first_order = True
    first = flat_grad(m, ep)
    theta = {k: v.detach() for k, v in m.net.named_parameters()}

    def support_loss(p, x, y):
        return F.cross_entropy(functional_call(m.net, p, (x,)), y)

    hv_terms = []
    for i in range(ep.batch_size):
        gs = grad(support_loss)(theta, ep.support_x[i], ep.support_y[i])
        phi = {k: theta[k] - alpha * gs[k] for k in theta}
        gq = grad(support_loss)(phi, ep.query_x[i], ep.query_y[i])  # ∇L_q at φ (v of the HVP)
        # H_s(θ) v by double backward of the support loss at θ (independent of the torch.func code path)
        th = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        g1 = torch.autograd.grad(support_loss(th, ep.support_x[i], ep.support_y[i]), list(th.values()),
                                 create_graph=True)
        hv = torch.autograd.grad(sum((a * gq[k]).sum() for a, k in zip(g1, th)), list(th.values()))
        hv_terms.append(torch.cat([h.flatten() for h in hv]))
    hessian_term = -alpha * torch.stack(hv_terms).mean(0)
    assert hessian_term.abs().max() > 1e-4  # the term is not negligible here, so the check has teeth
    assert torch.allclose(second - first, hessian_term, rtol=1e-7, atol=1e-10)


def test_metasgd_with_frozen_rates_equals_maml():
    maml = tiny(MAML, inner_steps=2, inner_lr=0.25)
    msgd = tiny(MetaSGD, inner_steps=2, inner_lr=0.25, learn_rates=False)
    msgd.net.load_state_dict(maml.net.state_dict())
    ep = tiny_episode()
    assert torch.allclose(flat_grad(maml, ep), flat_grad(msgd, ep), rtol=1e-10, atol=1e-13)
    assert all(not a.requires_grad for a in msgd.alpha.values())
    # with learnable rates the rates get a meta-gradient of their own
    learn = tiny(MetaSGD, inner_steps=1, inner_lr=0.25)
    learn.meta_loss(ep)[0].backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in learn.alpha.values())


def test_anil_adapts_only_the_head_and_matches_the_generic_path():
    m = tiny(ANIL, inner_steps=2, inner_lr=0.3)
    ep = tiny_episode()
    params = dict(m.net.named_parameters())
    head = m.adapt_names()
    assert head == ["head.weight", "head.bias"]
    phi = inner_loop(m.net, params, ep.support_x[0], ep.support_y[0], F.cross_entropy, [0.3, 0.3], adapt=head)
    assert all(phi[k] is params[k] for k in params if k not in head)
    assert not torch.allclose(phi["head.weight"], params["head.weight"])
    # the feature-caching ANIL path equals running the whole net with only the head adapted
    fast, _ = m.meta_loss(ep)
    generic, _ = batched_query_loss(m.net, params, ep.support_x, ep.support_y, ep.query_x, ep.query_y,
                                    F.cross_entropy, [0.3, 0.3], adapt=head)
    assert torch.allclose(fast, generic.mean(), rtol=1e-10)


def assert_reptile_direction(m, ep, batches, lr):
    """Independent reference: plain SGD per task (torch.autograd on a deep copy of the net), one step per
    entry of ``batches`` (image indices, or None for the whole task); θ.grad must equal θ − mean φ."""
    import copy

    phis = []
    for i in range(ep.batch_size):
        net = copy.deepcopy(m.net)
        x = torch.cat([ep.support_x[i], ep.query_x[i]])
        y = torch.cat([ep.support_y[i], ep.query_y[i]])
        for idx in batches:
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            gs = torch.autograd.grad(F.cross_entropy(net(xb), yb), list(net.parameters()))
            with torch.no_grad():
                for p, g in zip(net.parameters(), gs):
                    p -= lr * g
        phis.append([p.detach() for p in net.parameters()])
    for j, theta in enumerate(m.net.parameters()):
        direction = theta.detach() - torch.stack([ph[j] for ph in phis]).mean(0)
        assert torch.allclose(theta.grad, direction, rtol=1e-9, atol=1e-12)


def test_reptile_loss_gradient_is_the_reptile_direction():
    m = tiny(Reptile, inner_steps=3, inner_lr=0.25)
    ep = tiny_episode()
    m.zero_grad()
    m.meta_loss(ep)[0].backward()
    assert_reptile_direction(m, ep, [None] * 3, lr=0.25)


def test_reptile_inner_mini_batches():
    """With ``inner_batch`` each inner step uses its own slice of a reshuffled pass over the task's images."""
    m = tiny(Reptile, inner_steps=3, inner_lr=0.25, inner_batch=4)
    torch.manual_seed(5)
    batches = m.inner_batches(10, torch.device("cpu"))
    assert [len(b) for b in batches] == [4, 4, 4]
    assert len(set(torch.cat(batches[:2]).tolist())) == 8  # no image repeats within a pass
    assert all(b is None for b in Reptile(ways=3, hidden=4, inner_batch=None).inner_batches(10, "cpu"))
    assert all(b is None for b in tiny(Reptile, inner_batch=12).inner_batches(10, "cpu"))  # batch >= task: whole task
    with pytest.raises(ValueError, match="inner_batch"):
        Reptile(ways=3, inner_batch=0)

    ep = tiny_episode()  # 3 ways x (2 + 2) = 12 images per task
    torch.manual_seed(7)
    batches = m.inner_batches(12, torch.device("cpu"))
    torch.manual_seed(7)  # meta_loss draws the very same batches
    m.zero_grad()
    m.meta_loss(ep)[0].backward()
    assert_reptile_direction(m, ep, batches, lr=0.25)
    # and mini-batches really change φ̄ compared with whole-task steps
    full = tiny(Reptile, inner_steps=3, inner_lr=0.25)
    full.zero_grad()
    full.meta_loss(ep)[0].backward()
    assert not torch.allclose(full.net.head.weight.grad, m.net.head.weight.grad)

    r = Reptile.recipe(5, 1, "full")
    assert r.shots + r.queries == 10 and r.model["inner_batch"] == 10 and r.model["inner_steps"] == 5
    r20 = Reptile.recipe(20, 1, "full")
    assert r20.model["inner_batch"] == 20 and r20.model["inner_steps"] == 10


def test_batch_norm_uses_the_current_batch_statistics():
    """Transductive BN as in the MAML paper: no running stats, same behaviour in train and eval mode."""
    m = tiny()
    assert list(m.net.named_buffers()) == []
    ep = tiny_episode(batch=1, queries=4)
    x = ep.query_x[0]
    m.net.train()
    out_train = m.net(x)
    m.net.eval()
    assert torch.allclose(m.net(x), out_train)  # eval mode still normalises with the batch's own statistics
    full = m.predict(ep.support_x[0], ep.support_y[0], x)
    half = m.predict(ep.support_x[0], ep.support_y[0], x[:6])
    assert full.shape == (12, 3)
    assert not torch.allclose(full[:6], half)  # a query's logits depend on the other queries (transductive)
    assert torch.allclose(m.predict_batch(ep)[0], full)


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="inner_steps must be an int >= 0"):
        MAML(inner_steps=-1)
    with pytest.raises(ValueError, match="test_inner_steps must be an int >= 0"):
        MAML(test_inner_steps=1.5)
    for bad in (float("nan"), float("inf"), "fast"):
        with pytest.raises(ValueError, match="inner_lr must be a finite number"):
            MAML(inner_lr=bad)
    with pytest.raises(ValueError, match="inner_lr must be a finite number"):
        MAML(inner_steps=2, inner_lr=[0.1, math.nan])
    with pytest.raises(ValueError, match="track_running_stats=False"):
        check_functional_model(Conv4(pool="stride", out_dim=5))  # BN with running statistics
    m = tiny()
    with pytest.raises(ValueError, match="3 outputs; got a 5-way"):
        m.meta_loss(tiny_episode(ways=5))
    ep = tiny_episode(batch=1)
    with pytest.raises(ValueError, match="support_y must be"):
        m.predict(ep.support_x[0], ep.support_y[0][:2], ep.query_x[0])


def test_zero_inner_steps_is_plain_training():
    m = tiny(inner_steps=0)
    ep = tiny_episode(batch=1)
    loss, _ = m.meta_loss(ep)
    direct = F.cross_entropy(m.net(ep.query_x[0]), ep.query_y[0])
    assert torch.allclose(loss, direct)


def test_short_real_omniglot_run_beats_floor():
    """FOMAML, 5-way 1-shot, 100 real meta-steps of 4 tasks on Vinyals' training classes (narrow Conv-4):
    5w1s accuracy on 100 fixed test episodes >= 45 % (chance 20 %)."""
    from mlcore.data import load_split
    from mlcore.engine import evaluate, fit, test_sampler

    torch.manual_seed(0)
    m = FOMAML(ways=5, hidden=32, inner_steps=1, inner_lr=0.4, test_inner_steps=3)
    sampler = EpisodeSampler(load_split("vinyals/trainval"), 5, 1, 2, batch_size=4, seed=0)
    fit(m, sampler, 100, lr=3e-3, progress=False)
    res = evaluate(m, test_sampler(5, 1, queries=5), 100)
    assert res["accuracy"] >= 0.45, res["accuracy"]


def test_sinusoid_code():
    from mlcore.experiments import sinusoid as S

    model, history = S.train_maml(20, meta_batch=5, log_every=10)
    assert [h["step"] for h in history] == [10, 20]
    tasks, grid, truth = S.eval_tasks(shots=5, n_tasks=8)
    assert tasks.support_x.shape == (8, 5, 1) and truth.shape == (8, 100)
    curves = S.adaptation_curves(model, tasks.support_x, tasks.support_y, grid, steps=(0, 10))
    with torch.no_grad():
        assert torch.allclose(curves[0], model(grid[:, None])[:, 0].expand(8, -1))
        # gradient descent at a small step lowers every task's support loss
        params = {k: v.detach() for k, v in model.named_parameters()}
        before = (model(tasks.support_x) - tasks.support_y).pow(2).mean((1, 2))
    after = torch.stack([F.mse_loss(functional_call(model, inner_loop(
        model, params, tasks.support_x[i], tasks.support_y[i], F.mse_loss, [0.01] * 10), (tasks.support_x[i],)),
        tasks.support_y[i]) for i in range(8)])
    assert (after < before).all()
    scores = S.score(model, 5, n_tasks=8)
    assert set(scores) == {"steps=0", "steps=1", "steps=5", "steps=10"}
    assert all(v[0] > 0 and math.isfinite(v[1]) for v in scores.values())
    # the robust summary agrees with the per-task errors and counts no divergence at 0 steps
    errs = S.per_task_mse(model, 5, n_tasks=8)
    robust = S.robust_summary(model, 5, n_tasks=8)
    assert robust["steps=0"]["worse"] == 0
    assert robust["steps=10"]["median"] == pytest.approx(float(errs[10].median()))
    assert robust["steps=10"]["worse"] == int((errs[10] > errs[0]).sum())
    assert scores["steps=10"][0] == pytest.approx(float(errs[10].mean()), rel=1e-5)


def test_task_batch_norm_equals_torch_batch_norm():
    from torch import nn

    from mlcore.optimization.maml import TaskBatchNorm2d, use_task_batch_norm

    ref = nn.BatchNorm2d(4, track_running_stats=False).double()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-1, 1)
    net = use_task_batch_norm(nn.Sequential(ref))
    assert isinstance(net[0], TaskBatchNorm2d)
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64)
    assert torch.allclose(net(x), torch.nn.functional.batch_norm(x, None, None, ref.weight, ref.bias, True),
                          atol=1e-12)
    plain = use_task_batch_norm(nn.Sequential(nn.BatchNorm2d(4, affine=False, track_running_stats=False)))
    assert torch.allclose(plain(x), torch.nn.functional.batch_norm(x, None, None, None, None, True), atol=1e-12)


def test_graphed_meta_step_refuses_what_a_graph_cannot_replay():
    from mlcore.optimization.cuda_graph import GraphedMetaStep

    m = tiny(MAML, inner_steps=1, inner_lr=0.3)
    ep = tiny_episode(batch=2)
    with pytest.raises(TypeError, match="needs Adam or AdamW built with capturable=True, got SGD"):
        GraphedMetaStep(m, torch.optim.SGD(m.parameters(), 0.1), ep)
    with pytest.raises(ValueError, match="build the optimizer with capturable=True"):
        GraphedMetaStep(m, torch.optim.Adam(m.parameters(), 1e-3), ep)
    with pytest.raises(ValueError, match="CUDA graphs need the batch on a CUDA device, got cpu"):
        GraphedMetaStep(m, torch.optim.Adam(m.parameters(), 1e-3, capturable=True), ep)
