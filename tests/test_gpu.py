"""The CUDA path (skipped without a GPU; run on a lent GPU before full reproductions)."""
import pytest
import torch

from mlcore.data import EpisodeSampler
from mlcore.engine import evaluate, fit
from mlcore.memory.protonet import ProtoNet

pytestmark = pytest.mark.gpu


def test_same_seed_same_episodes_on_cpu_and_gpu(test_classes):
    a = EpisodeSampler(test_classes, 5, 1, 3, batch_size=4, seed=7, device="cpu").sample()
    b = EpisodeSampler(test_classes, 5, 1, 3, batch_size=4, seed=7, device="cuda").sample()
    assert b.support_x.is_cuda
    assert torch.equal(a.support_x, b.support_x.cpu()) and torch.equal(a.query_y, b.query_y.cpu())


def test_protonet_trains_on_gpu(test_classes):
    from mlcore.data import load_split

    torch.manual_seed(0)
    m = ProtoNet().cuda()
    fit(m, EpisodeSampler(load_split("vinyals/trainval"), 20, 1, 5, device="cuda", seed=0), 100, progress=False)
    r = evaluate(m, EpisodeSampler(test_classes, 5, 1, 5, device="cuda"), episodes=100, seed=1)
    assert r["accuracy"] > 0.8


def _maml_pair(test_classes, meta_batch=4, inner_steps=2):
    import copy

    from mlcore.optimization.maml import MAML

    torch.manual_seed(0)
    eager = MAML(ways=5, inner_steps=inner_steps, inner_lr=0.4, hidden=16).cuda()
    graphed = copy.deepcopy(eager)
    sampler = EpisodeSampler(test_classes, 5, 1, 3, batch_size=meta_batch, device="cuda", seed=3)
    return eager, graphed, sampler


def _weights(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_graphed_meta_step_trains_like_the_eager_step(test_classes):
    from mlcore.optimization.cuda_graph import GraphedMetaStep

    eager, graphed, sampler = _maml_pair(test_classes)
    opt_e = torch.optim.Adam(eager.parameters(), 1e-3)
    step = GraphedMetaStep(graphed, torch.optim.Adam(graphed.parameters(), 1e-3, capturable=True), sampler.sample())
    assert torch.equal(_weights(eager), _weights(graphed))  # the warm-up steps were undone
    start = _weights(eager).clone()
    for _ in range(4):
        batch = sampler.sample()
        opt_e.zero_grad(set_to_none=True)
        loss_e, _ = eager.meta_loss(batch)
        loss_e.backward()
        opt_e.step()
        loss_g, stats = step.step(batch)
        assert float(loss_g) == pytest.approx(float(loss_e), rel=1e-4)
        assert 0.0 <= float(stats["acc"]) <= 1.0
    moved = (_weights(eager) - start).norm()
    assert moved > 0 and (_weights(eager) - _weights(graphed)).norm() < 1e-3 * moved


def test_graphed_meta_step_refuses_another_batch_shape(test_classes):
    from mlcore.optimization.cuda_graph import GraphedMetaStep

    _, graphed, sampler = _maml_pair(test_classes)
    step = GraphedMetaStep(graphed, torch.optim.Adam(graphed.parameters(), 1e-3, capturable=True), sampler.sample())
    other = EpisodeSampler(test_classes, 5, 1, 3, batch_size=2, device="cuda", seed=4).sample()
    with pytest.raises(ValueError, match=r"support_x has shape \(2, 5, 1, 28, 28\); this graph was captured for"):
        step.step(other)
