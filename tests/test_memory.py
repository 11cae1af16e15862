"""Chapter 5 models: ProtoNet's logits, Matching Networks' attention, the MANN's LRUA memory.

Unit tests use synthetic tensors; the short real-Omniglot runs use tiny budgets and state their floors.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mlcore.data.episodes import Episode
from mlcore.memory.mann import (
    MANN,
    SequenceSampler,
    class_similarity,
    cosine_read_weights,
    episode_to_sequence,
    init_memory,
    instance_numbers,
    key_class_similarity,
    least_used,
    lrua_step,
)
from mlcore.memory.matching import MatchingNet, attention_to_log_probs, cosine_attention
from mlcore.memory.protonet import ProtoNet, prototype_logits, prototypes


def fake_episode(b=2, ways=3, shots=2, queries=2, size=28, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(b, ways * shots, 1, size, size, generator=g)
    qx = torch.rand(b, ways * queries, 1, size, size, generator=g)
    sy = torch.arange(ways).repeat_interleave(shots).expand(b, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(queries).expand(b, -1).contiguous()
    return Episode(sx, sy, qx, qy, ways, shots, queries)


# ---------------------------------------------------------------------------- ProtoNet
def test_prototype_logits_equal_negative_squared_distances_by_hand():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])  # two per class
    y = torch.tensor([0, 0, 1, 1])
    protos = prototypes(z, y, 2)
    assert torch.allclose(protos, torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    q = torch.tensor([[1.0, 1.0], [3.0, 2.0]])
    # by hand: q0-p0 = (0,1) -> 1; q0-p1 = (1,-1) -> 2; q1-p0 = (2,2) -> 8; q1-p1 = (3,0) -> 9
    assert torch.allclose(prototype_logits(q, protos), -torch.tensor([[1.0, 2.0], [8.0, 9.0]]))


def test_protonet_shapes_and_gradients():
    torch.manual_seed(0)
    m, ep = ProtoNet(hidden=8), fake_episode()
    loss, _ = m.meta_loss(ep)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert m.predict(ep.support_x[0], ep.support_y[0], ep.query_x[0]).shape == (6, 3)


# ---------------------------------------------------------------------------- Matching Networks
def test_cosine_attention_rows_sum_to_one_and_pick_the_same_direction():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    q = torch.tensor([[5.0, 0.1], [0.0, 2.0]])
    a = cosine_attention(q, s, scale=10.0)
    assert torch.allclose(a.sum(-1), torch.ones(2))
    assert a.argmax(-1).tolist() == [0, 1]
    # label distribution: attention mass summed per class, log-probabilities
    p = attention_to_log_probs(a, torch.tensor([0, 1, 1]), 2).exp()
    assert torch.allclose(p.sum(-1), torch.ones(2), atol=1e-6)
    assert torch.allclose(p[:, 0], a[:, 0], atol=1e-6)


def test_cosine_attention_is_a_softmax_of_known_cosines():
    """Parallel, orthogonal and opposite support vectors have cosines 1, 0 and -1 with the query, whatever
    their lengths: the attention is exactly softmax(scale * (1, 0, -1)); on random vectors it is the softmax
    of torch's own cosine_similarity, computed independently."""
    q = torch.tensor([[3.0, 0.0, 0.0]])
    s = torch.tensor([[0.5, 0.0, 0.0], [0.0, 7.0, 0.0], [-2.0, 0.0, 0.0]])
    for scale in (1.0, 10.0):
        e = [math.exp(scale * c) for c in (1.0, 0.0, -1.0)]
        assert torch.allclose(cosine_attention(q, s, scale), torch.tensor([[v / sum(e) for v in e]]), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    q, s = torch.randn(2, 4, 5, generator=g), torch.randn(2, 6, 5, generator=g)  # batched: (..., m, D), (..., n, D)
    cos = F.cosine_similarity(q[:, :, None], s[:, None], dim=-1)
    assert torch.allclose(cosine_attention(q, s, 5.0), torch.softmax(5.0 * cos, -1), atol=1e-6)


def test_cosine_read_weights_are_a_softmax_of_known_cosines():
    """The MANN's read weights: softmax over slots of strength * cosine(key, slot), per head."""
    keys = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])  # (B=1, heads=2, W=2)
    memory = torch.tensor([[[4.0, 4.0], [-1.0, 1.0], [-3.0, -3.0]]])  # parallel, orthogonal, opposite to head 1
    e = torch.exp(torch.tensor([1.0, 0.0, -1.0]))
    assert torch.allclose(cosine_read_weights(keys, memory)[0, 0], e / e.sum(), atol=1e-6)
    # head 2, (2, 0), has cosine 1/sqrt(2), -1/sqrt(2), -1/sqrt(2) with the slots; strength 3 multiplies them
    c = torch.tensor([1.0, -1.0, -1.0]) / math.sqrt(2)
    w = cosine_read_weights(keys, memory, strength=torch.tensor([[1.0, 3.0]]))
    assert torch.allclose(w[0, 1], torch.softmax(3 * c, 0), atol=1e-6)
    assert torch.allclose(w[0, 0], e / e.sum(), atol=1e-6)  # head 1 at strength 1: unchanged
    g = torch.Generator().manual_seed(1)
    keys, memory, strength = torch.randn(3, 2, 4, generator=g), torch.randn(3, 5, 4, generator=g), torch.rand(3, 2)
    cos = F.cosine_similarity(keys[:, :, None], memory[:, None], dim=-1)  # (B, H, S)
    assert torch.allclose(cosine_read_weights(keys, memory, strength), torch.softmax(strength[..., None] * cos, -1),
                          atol=1e-6)


@pytest.mark.parametrize("fce", [False, True])
def test_matching_shapes_attention_and_gradients(fce):
    torch.manual_seed(0)
    m, ep = MatchingNet(hidden=8, fce=fce, fce_steps=2, scale=5.0), fake_episode()
    att = m.attention(ep.support_x, ep.support_y, ep.query_x)
    assert att.shape == (2, 6, 6)
    assert torch.allclose(att.sum(-1), torch.ones(2, 6), atol=1e-6)
    loss, _stats = m.meta_loss(ep)
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"
    m.eval()  # batch norm on running statistics, so one task or a batch give the same answer
    logits = m.predict(ep.support_x[0], ep.support_y[0], ep.query_x[0])
    assert logits.shape == (6, 3)
    assert torch.allclose(logits.exp().sum(-1), torch.ones(6), atol=1e-5)  # log P(y|x) over the 3 classes
    assert torch.allclose(m.predict_batch(ep)[0], logits, atol=1e-5)


def test_matching_bad_inputs_raise_clear_errors():
    m, ep = MatchingNet(hidden=8), fake_episode()
    with pytest.raises(ValueError, match="labels 0..N-1"):
        m.predict(ep.support_x[0], ep.support_y[0] + 1, ep.query_x[0])
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        m.predict(ep.support_x[0, :, 0], ep.support_y[0], ep.query_x[0])
    with pytest.raises(ValueError, match="scale"):
        MatchingNet(scale=0.0)
    with pytest.raises(ValueError, match="processing step"):
        MatchingNet(fce=True, fce_steps=0)


# ---------------------------------------------------------------------------- MANN memory
def test_least_used_marks_the_smallest_usages_in_order():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.0]])
    lu = least_used(usage, 2)
    assert lu.shape == (1, 2, 4)
    assert lu[0].argmax(-1).tolist() == [3, 1]


def test_lrua_hand_made_sequence_writes_lru_slot_and_decays_usage():
    gamma = 0.5
    state = init_memory(1, 4, 2, heads=1)
    # write gate -inf: sigma(alpha) = 0, so all writing goes to the least-used slot
    never_read = torch.tensor([[-1e4]])
    k1 = torch.tensor([[[1.0, 0.0]]])
    state, w1 = lrua_step(state, k1, never_read, gamma)
    s0 = int(w1[0, 0].argmax())  # all usages tie at 0: any one slot, written with weight 1
    assert sorted(w1[0, 0].tolist()) == [0.0, 0.0, 0.0, 1.0]
    assert torch.allclose(state.memory[0, s0], k1[0, 0])
    # the read after the write finds the slot just written (cosine 1 vs ~0.7 for the empty slots)
    assert state.read_w[0, 0].argmax() == s0
    usage1 = state.usage.clone()
    assert torch.allclose(usage1[0], w1[0, 0] + state.read_w[0, 0])
    # second write goes to a different, now least-used slot; usage decays by gamma first
    k2 = torch.tensor([[[0.0, 1.0]]])
    state2, w2 = lrua_step(state, k2, never_read, gamma)
    lru = int(state.lu[0, 0].argmax())  # the least-used slot after step 1 (empty slots tie)
    assert lru != s0 and usage1[0, lru] == usage1[0].min() and int(w2[0, 0].argmax()) == lru
    assert torch.allclose(state2.usage, gamma * usage1 + w2.sum(1) + state2.read_w.sum(1))
    assert torch.allclose(state2.memory[0, s0], k1[0, 0])  # the first slot is untouched
    assert torch.allclose(state2.memory[0, lru], k2[0, 0])  # erased, then written
    # write gate +inf: the write goes where the previous step read (binding a label to that slot)
    k3 = torch.tensor([[[0.0, 0.5]]])
    state3, w3 = lrua_step(state2, k3, torch.tensor([[1e4]]), gamma)
    assert torch.allclose(w3, state2.read_w)
    assert torch.allclose(cosine_read_weights(k3, state3.memory).sum(-1), torch.ones(1, 1))


def test_instance_numbers_and_sequences():
    y = torch.tensor([[0, 1, 0, 0, 1]])
    assert instance_numbers(y).tolist() == [[1, 1, 2, 3, 2]]
    ep = fake_episode(b=2, ways=3, shots=2, queries=1)
    seq = episode_to_sequence(ep, torch.Generator().manual_seed(0))
    assert seq.x.shape == (2, 9, 1, 28, 28) and seq.y.shape == (2, 9)
    assert torch.bincount(seq.y[0], minlength=3).tolist() == [3, 3, 3]
    # images move with their labels
    pooled = torch.cat([ep.support_x[0], ep.query_x[0]])
    for t in range(9):
        i = int(((pooled - seq.x[0, t]).abs().flatten(1).sum(1) == 0).nonzero()[0])
        assert int(torch.cat([ep.support_y[0], ep.query_y[0]])[i]) == int(seq.y[0, t])


@pytest.mark.parametrize("encoder", ["flat", "conv"])
def test_mann_shapes_and_gradients(encoder):
    torch.manual_seed(0)
    m = MANN(ways=3, image_size=10, controller=16, slots=8, slot_width=6, heads=2, encoder=encoder)
    ep = fake_episode(b=2, ways=3, shots=2, queries=1)
    loss, stats = m.meta_loss(ep)
    assert math.isfinite(loss.item()) and set(stats) >= {"acc", "acc_2nd"}
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"
    trace: dict = {}
    logits = m.forward_sequence(episode_to_sequence(ep).x, episode_to_sequence(ep).y, trace)
    assert logits.shape == (2, 9, 3) and len(trace["write_w"]) == 9 and trace["read_w"][0].shape == (2, 2, 8)
    m.eval()
    out = m.predict(ep.support_x[0], ep.support_y[0], ep.query_x[0])
    assert out.shape == (3, 3)
    assert torch.allclose(m.predict_batch(ep)[0], out, atol=1e-5)


def test_class_similarity_on_hand_made_keys():
    labels = torch.tensor([[0, 1, 0, 1, 2]])
    one_hot = F.one_hot(labels, 3).float()  # keys that *are* the class: same 1, different 0
    assert class_similarity(one_hot, labels) == {"same_class": 1.0, "different_class": 0.0, "gap": 1.0}
    # identical keys for every step carry no class information: the gap is 0 whatever the labels
    flat = torch.ones(1, 5, 4)
    assert abs(class_similarity(flat, labels)["gap"]) < 1e-6
    # pairs are taken within a sequence only: label 0 in sequence 2 is not the class of label 0 in sequence 1
    two = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[-1.0, 0.0], [0.0, 1.0]]])
    res = class_similarity(two, torch.tensor([[0, 0], [0, 1]]))
    assert res["same_class"] == 1.0 and res["different_class"] == 0.0
    # unnormalised keys 60 degrees apart within each class: same-class cosine 1/2; across the classes two
    # pairs are opposite (-1) and two 120 degrees apart (-1/2), so the different-class mean is -3/4; both agree
    # with torch's cosine_similarity averaged over the same pairs
    k = torch.tensor([[[2.0, 0.0], [1.0, math.sqrt(3)], [-3.0, 0.0], [-0.5, -math.sqrt(3) / 2]]])
    y = torch.tensor([[0, 0, 1, 1]])
    res = class_similarity(k, y)
    cos = F.cosine_similarity(k[0][:, None], k[0][None], dim=-1)
    same = (y[0][:, None] == y[0][None]) & ~torch.eye(4, dtype=torch.bool)
    diff = y[0][:, None] != y[0][None]
    assert res["same_class"] == pytest.approx(0.5) and float(cos[same].mean()) == pytest.approx(0.5)
    assert res["different_class"] == pytest.approx(-0.75) and float(cos[diff].mean()) == pytest.approx(-0.75)
    assert res["gap"] == pytest.approx(res["same_class"] - res["different_class"])
    with pytest.raises(ValueError, match=r"\(B, T, D\)"):
        class_similarity(flat[0], labels)


def test_key_class_similarity_on_hand_made_keys():
    """The diagnostic concatenates every head's write key per step and compares them by the sequence's labels.

    Hand-made keys: head 1 writes the one-hot of the step's class, head 2 writes (1, 1, 1) at every step.
    Concatenated, a key is (onehot, 1, 1, 1) with norm 2: two steps of one class have cosine 4/4 = 1,
    two steps of different classes 3/4, so the gap is exactly 1/4 (head 1 alone would give 1 and 0).
    """
    m = MANN(ways=3, image_size=10, controller=8, slots=8, slot_width=3, heads=2)
    seen = []

    def hand_made_keys(x, y, trace=None):
        seen.append(y.clone())
        for t in range(y.shape[1]):
            heads = [F.one_hot(y[:, t], 3).float(), torch.ones(y.shape[0], 3)]
            trace.setdefault("keys", []).append(torch.stack(heads, 1))  # (B, heads, width)
        return torch.zeros(*y.shape, 3)

    m.forward_sequence = hand_made_keys
    res = key_class_similarity(m, episodes=4, ways=3, instances=3)
    assert res["same_class"] == pytest.approx(1.0) and res["different_class"] == pytest.approx(0.75)
    assert res["gap"] == pytest.approx(0.25)
    # it scored held-out sequences of the asked shape: 4 sequences, each class presented 3 times
    (y,) = seen
    assert y.shape == (4, 9) and all(sorted(row.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2] for row in y)


def test_mann_bad_inputs_raise_clear_errors():
    m = MANN(ways=3, image_size=10, controller=8, slots=4, slot_width=4, heads=1)
    ep = fake_episode(b=1, ways=4, shots=1, queries=1)
    with pytest.raises(ValueError, match="3 output units"):
        m.predict(ep.support_x[0], ep.support_y[0], ep.query_x[0])
    with pytest.raises(ValueError, match="encoder"):
        MANN(encoder="resnet")
    with pytest.raises(ValueError, match="gamma"):
        MANN(gamma=0.0)
    with pytest.raises(ValueError, match="heads"):
        MANN(heads=5, slots=4)
    from mlcore.data import load_split

    with pytest.raises(ValueError, match="instances"):
        SequenceSampler(load_split("vinyals/test"), 5, 1, 2, "cpu", 0)


# ---------------------------------------------------------------------------- MANN augmentation
def test_random_affine_is_the_identity_at_zero_and_moves_ink_within_its_bounds():
    from mlcore.memory.mann import random_affine

    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 12:16, 12:16] = 1.0  # a centred square: where its ink goes measures the shift
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(random_affine(x, 0.0, 0.0, g), x, atol=1e-5)
    moved = random_affine(x, 0.0, 3.0, g)
    coords = torch.arange(28.0)
    mass = moved.sum((1, 2, 3))
    cx = (moved.sum((1, 2)) * coords).sum(-1) / mass
    cy = (moved.sum((1, 3)) * coords).sum(-1) / mass
    # the square's ink stays in the frame, and its centre moves by at most 3 pixels along each axis
    assert torch.allclose(mass, torch.full_like(mass, 16.0), atol=1e-3)
    assert (cx - 13.5).abs().max() <= 3.0 + 1e-4 and (cy - 13.5).abs().max() <= 3.0 + 1e-4
    assert (cx - 13.5).abs().max() > 1.5  # and it does move: 64 draws, not all near the centre
    turned = random_affine(x, 30.0, 0.0, g)  # a rotation about the centre keeps the centre of mass
    mass = turned.sum((1, 2, 3))
    assert torch.allclose((turned.sum((1, 2)) * coords).sum(-1) / mass, torch.full_like(mass, 13.5), atol=0.05)


def test_augmented_sequences_resume_exactly_and_bad_settings_are_refused():
    from mlcore.data import load_split

    classes = load_split("vinyals/test")
    plain = SequenceSampler(classes, 5, 4, 2, "cpu", 0)
    aug = SequenceSampler(classes, 5, 4, 2, "cpu", 0, augment={"max_rotation": 10, "max_shift": 2})
    a, p = aug.sample(), plain.sample()
    # the same sequences and labels, each image moved a little; the ink is kept
    assert torch.equal(a.y, p.y) and not torch.equal(a.x, p.x)
    assert a.x.sum().item() == pytest.approx(p.x.sum().item(), rel=0.02)
    state = aug.state_dict()
    first = aug.sample().x
    aug.load_state_dict(state)
    assert torch.equal(aug.sample().x, first)
    for bad, what in (({"max_rotation": 10}, "exactly the keys"), ({"max_rotation": 200, "max_shift": 0}, "180"),
                      ({"max_rotation": 5, "max_shift": -1}, "max_shift >= 0"),
                      ({"max_rotation": float("nan"), "max_shift": 0}, "finite")):
        with pytest.raises(ValueError, match=what):
            SequenceSampler(classes, 5, 4, 2, "cpu", 0, augment=bad)
