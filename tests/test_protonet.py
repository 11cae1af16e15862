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
