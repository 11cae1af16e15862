"""Chapter 10's domain shift: digit episodes, the pixel yardstick, the digits themselves (no training, < 10 s)."""
from __future__ import annotations

import pytest
import torch

from mlcore.baselines.pixels import PixelCentroids
from mlcore.data.digits import DigitEpisodes
from mlcore.engine import evaluate


def toy_digits(per_class=30, classes=10, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(classes, 1, size, size, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = protos[labels] + 0.05 * torch.randn(len(labels), 1, size, size, generator=g)
    return images, labels


def test_digit_episodes_are_seeded_class_major_and_distinct():
    images, labels = toy_digits()
    s = DigitEpisodes(5, 2, 3, "cpu", images, labels)
    ep1 = next(s.fixed_set(4, seed=7, chunk=4))
    ep2 = next(s.fixed_set(4, seed=7, chunk=4))
    assert ep1.support_x.shape == (4, 10, 1, 28, 28) and ep1.query_x.shape == (4, 15, 1, 28, 28)
    assert torch.equal(ep1.support_x, ep2.support_x) and torch.equal(ep1.query_x, ep2.query_x)
    assert ep1.support_y[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep1.query_y[0].tolist() == [c for c in range(5) for _ in range(3)]
    # N distinct classes per episode; support and query images of a class are different images
    for b in range(4):
        assert len(set(ep1.classes[b].tolist())) == 5
        allx = torch.cat([ep1.support_x[b], ep1.query_x[b]]).flatten(1)
        assert torch.unique(allx, dim=0).shape[0] == allx.shape[0]
    other = next(s.fixed_set(4, seed=8, chunk=4))
    assert not torch.equal(ep1.support_x, other.support_x)
    assert sum(e.support_x.shape[0] for e in s.fixed_set(7, seed=1, chunk=3)) == 7


@pytest.mark.parametrize("kw, word", [({"ways": 11}, "ways"), ({"ways": 1}, "ways"),
                                      ({"shots": 20, "queries": 15}, "shots"), ({"queries": 0}, "queries")])
def test_digit_episodes_reject_bad_settings(kw, word):
    images, labels = toy_digits()
    args = {"ways": 5, "shots": 1, "queries": 5, **kw}
    with pytest.raises(ValueError, match=word):
        DigitEpisodes(args["ways"], args["shots"], args["queries"], "cpu", images, labels)


def test_pixel_centroids_are_nearest_class_means():
    images, labels = toy_digits(seed=1)
    s = DigitEpisodes(5, 3, 4, "cpu", images, labels)
    ep = next(s.fixed_set(2, seed=0, chunk=2))
    logits = PixelCentroids().predict_batch(ep)
    for b in range(2):
        means = torch.stack([ep.support_x[b][ep.support_y[b] == c].mean(0).flatten() for c in range(5)])
        ref = -((ep.query_x[b].flatten(1)[:, None] - means[None]) ** 2).sum(-1)
        assert torch.allclose(logits[b], ref, atol=1e-3)
    # well-separated toy classes: the pixel rule is near perfect, so evaluate() wiring is right
    assert evaluate(PixelCentroids(), s, 20, seed=0)["accuracy"] > 0.95


def test_real_digits_are_ink_one_on_zero():
    pytest.importorskip("sklearn")
    from mlcore.data.digits import load_digits_28

    x, y = load_digits_28()
    assert x.shape == (1797, 1, 28, 28) and y.bincount().tolist()[0] == 178
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # the full range: blank 0, darkest ink 1
    border = torch.cat([x[..., 0, :].flatten(), x[..., -1, :].flatten()]).mean()
    centre = x[..., 10:18, 10:18].mean()
    assert float(border) == 0.0 and centre > 0.3  # ink (1) in the middle, a blank margin as in Omniglot
