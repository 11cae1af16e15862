"""Relation Network (Sung et al. 2018): shapes, paper architecture, loss, gradients, a short real run."""
import pytest
import torch
import torch.nn.functional as F

from mlcore import engine
from mlcore.data import EpisodeSampler
from mlcore.metric.relation import RelationNet


def test_paper_architecture_shapes():
    m = RelationNet()
    assert m.feature_shape == (64, 5, 5)  # 28 -> 26 -> 13 -> 11 -> 5, pooled in the first two blocks only
    pools = [isinstance(b[-1], torch.nn.MaxPool2d) for b in m.embedding]
    assert pools == [True, True, False, False]
    assert [l.out_features for l in m.relation_fc if isinstance(l, torch.nn.Linear)] == [8, 1]


def test_logits_shape_loss_and_gradients(test_classes):
    torch.manual_seed(0)
    m = RelationNet(hidden=16)
    ep = EpisodeSampler(test_classes, ways=4, shots=2, queries=3, batch_size=2, seed=0).sample()
    logits = m.relation_logits(ep.support_x, ep.support_y, ep.query_x, ep.ways)
    assert logits.shape == (2, 12, 4)
    loss, _ = m.meta_loss(ep)
    by_hand = ((torch.sigmoid(logits) - F.one_hot(ep.query_y, 4).float()) ** 2).mean()
    assert torch.allclose(loss, by_hand, atol=1e-6)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in m.parameters())


def test_class_relabelling_permutes_the_scores_and_shots_are_summed(test_classes):
    torch.manual_seed(0)
    m = RelationNet(hidden=16).eval()
    ep = EpisodeSampler(test_classes, ways=3, shots=2, queries=2, seed=1).sample()
    sx, sy, qx = ep.support_x[0], ep.support_y[0], ep.query_x[0]
    perm = torch.tensor([2, 0, 1])  # class c becomes perm[c]
    a, b = m.predict(sx, sy, qx), m.predict(sx, perm[sy], qx)
    assert torch.allclose(a, b[:, perm], atol=1e-5)
    # the paper sums a class's shot embeddings: reordering shots within a class changes nothing
    order = torch.tensor([1, 0, 3, 2, 5, 4])
    assert torch.allclose(a, m.predict(sx[order], sy[order], qx), atol=1e-5)


def test_under_batch_statistics_support_and_queries_are_normalised_apart_as_in_sung_et_al_code(test_classes):
    """Their code embeds the sample (support) images and the batch (query) images in two forward passes: in train
    mode, and at their transductive test, each set is normalised with its own batch statistics."""
    torch.manual_seed(0)
    m = RelationNet(hidden=8).double().train()
    ep = EpisodeSampler(test_classes, ways=3, shots=2, queries=4, seed=2).sample()
    sx, sy, qx = ep.support_x[0].double(), ep.support_y[0], ep.query_x[0].double()
    got = m.predict(sx, sy, qx)
    fs, fq = m.embedding(sx), m.embedding(qx)  # the reference: two separate passes
    fc = torch.stack([fs[sy == c].sum(0) for c in range(3)])  # each class's shots summed
    pairs = torch.cat([fc[None].expand(len(qx), -1, -1, -1, -1), fq[:, None].expand(-1, 3, -1, -1, -1)], dim=2)
    want = m.relation_fc(m.relation_conv(pairs.flatten(0, 1)).flatten(1)).view(len(qx), 3)
    assert torch.allclose(got, want, atol=1e-10)
    # one pass over support and queries together normalises with other statistics: the difference is real
    joint = m.embedding(torch.cat([sx, qx]))
    assert not torch.allclose(joint[: len(sx)], fs, atol=1e-3)


def test_pairs_are_convolved_by_parts_with_the_same_scores_and_gradients_as_stacked_pairs(test_classes):
    """relation_logits convolves each class map and each query map once with its half of the first relation
    kernel and adds them per pair; the reference stacks every (query, class) pair along the channels and
    convolves the stack, as the paper describes. Scores and every parameter's gradient must agree."""
    torch.manual_seed(0)
    m = RelationNet(hidden=8).double().train()
    ep = EpisodeSampler(test_classes, ways=4, shots=2, queries=3, batch_size=2, seed=3).sample()
    sx, qx = ep.support_x.double(), ep.query_x.double()
    got = m.relation_logits(sx, ep.support_y, qx, 4)

    b, m_q = qx.shape[:2]
    fs = m.embedding(sx.flatten(0, 1)).view(b, -1, *m.feature_shape)
    fq = m.embedding(qx.flatten(0, 1)).view(b, m_q, *m.feature_shape)
    fc = torch.stack([torch.stack([fs[i][ep.support_y[i] == c].sum(0) for c in range(4)]) for i in range(b)])
    pairs = torch.cat([fc[:, None].expand(-1, m_q, -1, -1, -1, -1), fq[:, :, None].expand(-1, -1, 4, -1, -1, -1)],
                      dim=3)
    want = m.relation_fc(m.relation_conv(pairs.flatten(0, 2)).flatten(1)).view(b, m_q, 4)
    assert torch.allclose(got, want, atol=1e-12)

    target = F.one_hot(ep.query_y, 4).double()
    params = list(m.parameters())
    g_got = torch.autograd.grad(F.mse_loss(torch.sigmoid(got), target), params)
    g_want = torch.autograd.grad(F.mse_loss(torch.sigmoid(want), target), params)
    scale = torch.cat([g.flatten() for g in g_want]).norm()
    assert all(torch.allclose(a, w, atol=1e-12 * float(scale), rtol=0) for a, w in zip(g_got, g_want))
    # the first relation kernel's two halves both get gradient: the class half and the query half
    w_grad = g_got[next(i for i, p in enumerate(params) if p is m.relation_conv[0][0].weight)]
    assert w_grad[:, :8].abs().sum() > 0 and w_grad[:, 8:].abs().sum() > 0


def test_channels_last_gives_the_same_scores(test_classes):
    """The recipe trains with NHWC convolutions on the CPU (recipe.extra['channels_last']): same function."""
    torch.manual_seed(0)
    m = RelationNet(hidden=8).train()
    nhwc = RelationNet(hidden=8).train()
    nhwc.load_state_dict(m.state_dict())
    nhwc = nhwc.to(memory_format=torch.channels_last)
    assert RelationNet.recipe(20, 1, "cpu").extra["channels_last"]
    ep = EpisodeSampler(test_classes, ways=4, shots=2, queries=3, batch_size=2, seed=4).sample()
    a = m.relation_logits(ep.support_x, ep.support_y, ep.query_x, 4)
    b = nhwc.relation_logits(ep.support_x, ep.support_y, ep.query_x, 4)
    assert torch.allclose(a, b, atol=1e-5)


def test_bad_input_is_rejected_with_clear_errors():
    m = RelationNet(hidden=8)
    sx, sy = torch.rand(6, 1, 28, 28), torch.arange(3).repeat_interleave(2)
    with pytest.raises(ValueError, match="support_y"):
        m.predict(sx, sy[:4], torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="built for images"):
        m.relation_logits(torch.rand(1, 6, 1, 32, 32), sy[None], torch.rand(1, 2, 1, 32, 32), 3)
    # predict takes images of any size and resizes them to the net's, as it does raw drawings
    from mlcore.data import preprocess

    m.eval()
    big, qx = torch.rand(6, 1, 32, 32), torch.rand(2, 1, 40, 40)
    assert torch.equal(m.predict(big, sy, qx), m.predict(preprocess(big), sy, preprocess(qx)))


def test_short_real_training_beats_floor():
    """150 episodes of 5-way 1-shot on Vinyals trainval: test accuracy well above 20 % chance."""
    from mlcore.data import load_split

    torch.manual_seed(0)
    m = RelationNet(hidden=32)
    s = EpisodeSampler(load_split("vinyals/trainval"), 5, 1, 5, batch_size=2, seed=0)
    engine.fit(m, s, 150, lr=1e-3, progress=False)
    acc = engine.evaluate(m, engine.test_sampler(5, 1, queries=5), episodes=40)["accuracy"]
    assert acc > 0.5, acc
