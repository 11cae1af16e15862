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
