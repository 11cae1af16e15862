import pytest
import torch

from mlcore.data import EpisodeSampler, SinusoidSampler


def test_episode_shapes_and_labels(test_classes):
    s = EpisodeSampler(test_classes, ways=5, shots=2, queries=3, batch_size=4, seed=0)
    ep = s.sample()
    assert ep.support_x.shape == (4, 10, 1, 28, 28) and ep.query_x.shape == (4, 15, 1, 28, 28)
    assert ep.support_y[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.query_y[0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert all(len(set(c.tolist())) == 5 for c in ep.classes)


def test_support_and_query_images_come_from_the_right_class(test_classes):
    s = EpisodeSampler(test_classes, ways=3, shots=1, queries=2, seed=1)
    ep = s.sample()
    for j, c in enumerate(ep.classes[0].tolist()):
        imgs = test_classes.class_images(c)  # (20,1,28,28), rotation applied
        for x in [ep.support_x[0, j], *ep.query_x[0, 2 * j:2 * j + 2]]:
            assert any(torch.equal(x, im) for im in imgs)
    # support and query drawings of a class are distinct
    assert not any(torch.equal(ep.support_x[0, 0], q) for q in ep.query_x[0, :2])


def test_rotate_quarter_turns_is_rot90_per_image():
    """The one rotation helper (episodes, pre-training batches, Siamese pairs) equals rot90 image by image."""
    from mlcore.data.omniglot import rotate_quarter_turns

    x = torch.arange(2 * 3 * 1 * 4 * 4, dtype=torch.float32).view(2, 3, 1, 4, 4)
    turns = torch.tensor([[0, 1, 2], [3, 5, -1]])  # taken mod 4: 5 -> 1, -1 -> 3
    out = rotate_quarter_turns(x, turns)
    for i in range(2):
        for j in range(3):
            assert torch.equal(out[i, j], torch.rot90(x[i, j], int(turns[i, j]) % 4, dims=(-2, -1)))
    # one turn per class broadcasts over its drawings; no turn at all returns the input itself
    per_class = rotate_quarter_turns(x, torch.tensor([1, 2])[:, None])
    assert torch.equal(per_class[1, 2], torch.rot90(x[1, 2], 2, dims=(-2, -1)))
    assert rotate_quarter_turns(x, torch.zeros(2, 3, dtype=torch.long)) is x


def test_seeded_and_resumable(test_classes):
    a = EpisodeSampler(test_classes, 5, 1, 1, seed=3)
    b = EpisodeSampler(test_classes, 5, 1, 1, seed=3)
    assert torch.equal(a.sample().support_x, b.sample().support_x)
    state = a.state_dict()
    x1 = a.sample().query_x
    a.load_state_dict(state)
    assert torch.equal(a.sample().query_x, x1)


def test_fixed_set_is_independent_of_chunking_and_training_state(test_classes):
    s = EpisodeSampler(test_classes, 5, 1, 15, seed=0)
    one = torch.cat([e.support_x for e in s.fixed_set(10, seed=9, chunk=3)])
    s.sample()
    two = torch.cat([e.support_x for e in s.fixed_set(10, seed=9, chunk=10)])
    assert torch.equal(one, two)


def test_within_alphabet(test_classes):
    s = EpisodeSampler(test_classes, 20, 1, 1, batch_size=3, seed=0, within_alphabet=True)
    ep = s.sample()
    for cls in ep.classes:
        assert len(set(test_classes.class_alphabet[cls].tolist())) == 1


@pytest.mark.parametrize("kw,msg", [({"ways": 5000, "shots": 1, "queries": 1}, "exceeds the 1692 classes"),
                                     ({"ways": 5, "shots": 10, "queries": 11}, "exceeds the 20 drawings"),
                                     ({"ways": 5, "shots": 0, "queries": 1}, "shots must be a positive int"),
                                     ({"ways": 1, "shots": 1, "queries": 1}, "at least 2"),
                                     ({"ways": 5, "shots": 1, "queries": -2}, "queries must be a positive int")])
def test_impossible_specs(test_classes, kw, msg):
    with pytest.raises(ValueError, match=msg):
        EpisodeSampler(test_classes, **kw)


def test_sinusoid_tasks_follow_the_paper_ranges():
    s = SinusoidSampler(shots=5, queries=7, batch_size=200, seed=0)
    t = s.sample()
    assert t.support_x.shape == (200, 5, 1) and t.query_y.shape == (200, 7, 1)
    assert 0.1 <= float(t.amplitude.min()) and float(t.amplitude.max()) <= 5.0
    assert float(t.support_x.abs().max()) <= 5.0
    assert torch.allclose(t.support_y, t.amplitude[:, None, None] * torch.sin(t.support_x + t.phase[:, None, None]))
