import pytest
import torch

from mlcore.data import EpisodeSampler
from mlcore.engine import evaluate, fit
from mlcore.memory.protonet import ProtoNet, prototype_logits, prototypes


def test_prototype_logits_by_hand():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 2.0]])
    y = torch.tensor([0, 0, 1, 1])
    p = prototypes(z, y, 2)
    assert torch.allclose(p, torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    q = torch.tensor([[1.0, 1.0]])
    # ||(1,1)-(1,0)||^2 = 1 ; ||(1,1)-(0,3)||^2 = 1 + 4 = 5
    assert torch.allclose(prototype_logits(q, p), torch.tensor([[-1.0, -5.0]]))


def test_predict_shapes_gradients_and_errors(test_classes):
    m = ProtoNet(hidden=16)
    ep = EpisodeSampler(test_classes, 5, 2, 3, batch_size=2, seed=0).sample()
    loss, stats = m.meta_loss(ep)
    # in training mode the loss is the cross-entropy of the batch's logits, the accuracy their argmax's
    with torch.no_grad():
        z = m.predict_batch(ep)
    log_p = torch.log_softmax(z, -1).gather(-1, ep.query_y[..., None])
    assert torch.allclose(loss, -log_p.mean(), atol=1e-5)
    assert float(stats["acc"]) == pytest.approx(float((z.argmax(-1) == ep.query_y).float().mean()))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    m.eval()  # batch norm on running statistics: predictions no longer depend on the batch
    logits = m.predict(ep.support_x[0], ep.support_y[0], ep.query_x[0])
    assert logits.shape == (15, 5)
    assert torch.allclose(m.predict_batch(ep)[0], logits, atol=1e-5)
    with pytest.raises(ValueError, match="support_y must be"):
        m.predict(ep.support_x[0], ep.support_y[0][:3], ep.query_x[0])
    with pytest.raises(ValueError, match="differ in shape"):
        m.predict(ep.support_x[0], ep.support_y[0], ep.query_x[0][:, :, :14])
    with pytest.raises(ValueError, match="every class present"):
        m.predict(ep.support_x[0], ep.support_y[0] * 2, ep.query_x[0])


def test_short_real_training_beats_floor():
    """120 real 20-way episodes on the Vinyals training classes: 5w1s test accuracy >= 80 % (chance 20 %)."""
    from mlcore.data import load_split

    torch.manual_seed(0)
    m = ProtoNet()
    tr = EpisodeSampler(load_split("vinyals/trainval"), 20, 1, 5, seed=0)
    fit(m, tr, 120, lr=1e-3, progress=False)
    te = EpisodeSampler(load_split("vinyals/test"), 5, 1, 5, seed=0)
    r = evaluate(m, te, episodes=100, seed=1)
    assert r["accuracy"] >= 0.80, r["accuracy"]


def test_distances_stay_float32_under_autocast_where_bf16_would_cancel():
    # long embeddings close to their prototypes: the expanded ||q||^2 - 2 q.p + ||p||^2 cancels in bf16
    g = torch.Generator().manual_seed(0)
    base = 10 * torch.randn(1, 64, generator=g)
    q, p = base + 0.1 * torch.randn(15, 64, generator=g), base + 0.1 * torch.randn(5, 64, generator=g)
    exact = prototype_logits(q.double(), p.double())
    assert exact.dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        qb, pb = q.bfloat16(), p.bfloat16()
        guarded = prototype_logits(qb, pb)
        naive = -(qb.pow(2).sum(-1, keepdim=True) - 2 * qb @ pb.T + pb.pow(2).sum(-1)).clamp_min(0)
    assert guarded.dtype == torch.float32 and naive.dtype == torch.bfloat16
    scale = exact.abs().max()
    # against the exact distances of the same bf16-rounded embeddings: float32's own cancellation (~1e-3 of the
    # scale here) is all that is left, where bf16's wipes distances out (several come out as 0)
    exact_of_rounded = prototype_logits(q.bfloat16().double(), p.bfloat16().double())
    assert float((guarded.double() - exact_of_rounded).abs().max() / scale) < 5e-3
    assert float((naive.double() - exact_of_rounded).abs().max() / scale) > 0.1
