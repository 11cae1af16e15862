"""Siamese network (Koch et al. 2015): shapes, flatten size, loss, gradients, sampler, a short real run."""
import math

import pytest
import torch

from mlcore import engine
from mlcore.book.article_siamese import ARTICLE_LISTING, DEFECTS, diagnose, undefined_names
from mlcore.engine import evaluate, fit
from mlcore.metric.siamese import (
    PairBatch,
    PairSampler,
    Siamese,
    SiameseEncoder,
    distort,
    feature_shape,
    koch_config,
)

TINY = {"channels": [8, 8, 16, 16], "embed_dim": 32}


def test_flatten_size_is_computed_from_the_input_resolution():
    # Koch's net on 105x105 gives the article's 256 * 6 * 6; other sizes get their own flatten size
    assert feature_shape(**{k: v for k, v in koch_config(105).items()
                            if k in ("image_size", "channels", "kernels", "padding", "pools")}) == (256, 6, 6)
    for size in (28, 56, 105):
        enc = SiameseEncoder(image_size=size, channels=[4, 4, 8, 8], embed_dim=16)
        x = torch.zeros(2, 1, size, size)
        assert enc.conv(x).flatten(1).shape[1] == enc.flatten_size  # computed == actual
        assert enc(x).shape == (2, 16)
    koch = SiameseEncoder(**{**koch_config(105), "channels": [4, 4, 4, 8], "embed_dim": 8})
    assert koch.flatten_size == 8 * 6 * 6


def test_wrong_resolution_and_too_small_images_raise_clear_errors():
    enc = SiameseEncoder(image_size=28, **TINY)
    with pytest.raises(ValueError, match="image_size=105"):
        enc(torch.zeros(1, 1, 105, 105))
    with pytest.raises(ValueError, match="too small"):
        SiameseEncoder(**koch_config(28))  # Koch's 10x10 kernels do not fit 28x28


def test_verification_loss_on_a_hand_made_pair_batch():
    torch.manual_seed(0)
    m = Siamese(**TINY).eval()
    with torch.no_grad():  # logit = 2 - sum|z1 - z2|: an identical pair scores exactly 2
        m.distance.weight.fill_(-1.0)
        m.distance.bias.fill_(2.0)
    a, b = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    x1, x2 = torch.cat([a, a]), torch.cat([a, b])
    same = torch.tensor([1.0, 1, 1, 0, 0, 0])
    loss, stats = m.meta_loss(PairBatch.from_pairs(x1, x2, same))
    z1, z2 = m.encoder(x1), m.encoder(x2)
    logit = 2 - (z1 - z2).abs().sum(1)
    assert torch.allclose(logit[:3], torch.full((3,), 2.0))
    p = torch.sigmoid(logit)
    by_hand = -(same * torch.log(p) + (1 - same) * torch.log(1 - p)).mean()
    assert torch.allclose(loss, by_hand, atol=1e-6)
    # a pair is called "same" when its logit is positive: the identical pairs (logit 2) always are
    assert float(stats["pair_acc"]) == pytest.approx(float(((logit > 0).float() == same).float().mean()))


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    m = Siamese(**TINY, batch_norm=False).double().eval()
    x1, x2 = torch.rand(4, 1, 28, 28, dtype=torch.float64), torch.rand(4, 1, 28, 28, dtype=torch.float64)
    pairs = PairBatch.from_pairs(x1, x2, torch.tensor([1.0, 0, 1, 0], dtype=torch.float64))
    params = {k: v.detach().clone() for k, v in m.named_parameters()}

    loss = m.meta_loss(pairs)[0]
    names = ["distance.weight", "encoder.fc.bias", "encoder.conv.0.weight"]
    grads = torch.autograd.grad(loss, [dict(m.named_parameters())[n] for n in names])
    eps = 1e-6
    for name, g in zip(names, grads):
        idx = (0,) * g.ndim
        for sign in (1, -1):
            params[name][idx] += sign * eps
            with torch.no_grad():
                for k, v in m.named_parameters():
                    v.copy_(params[k])
            val = float(m.meta_loss(pairs)[0].detach())
            params[name][idx] -= sign * eps
            if sign == 1:
                up = val
            else:
                down = val
        fd = (up - down) / (2 * eps)
        assert math.isclose(float(g[idx]), fd, rel_tol=1e-5, abs_tol=1e-9), (name, float(g[idx]), fd)


def test_every_parameter_gets_a_gradient_from_a_sampled_batch(test_classes):
    m = Siamese(**TINY)
    s = PairSampler(test_classes, classes_per_batch=6, seed=0)
    loss, _ = m.meta_loss(s.sample())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_pair_sampler_pairs_are_right_and_it_resumes_exactly(test_classes):
    s = PairSampler(test_classes, classes_per_batch=5, seed=1, distortions=False)
    b = s.sample()
    assert b.images.shape == (10, 1, 28, 28) and len(b.left) == 45
    assert int(b.same.sum()) == 5
    pos_w, neg_w = b.weight[b.same == 1].sum(), b.weight[b.same == 0].sum()
    assert torch.allclose(pos_w, neg_w)  # positives and negatives carry equal mass
    for i, j in zip(b.left[b.same == 1], b.right[b.same == 1]):  # a positive = two drawings of one class
        assert not torch.equal(b.images[i], b.images[j])
    state = s.state_dict()
    x = s.sample().images
    s.load_state_dict(state)
    assert torch.equal(s.sample().images, x)


def test_distortion_is_identity_when_switched_off_and_changes_images_when_on():
    x = torch.rand(4, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(distort(x, g, prob=0.0), x, atol=1e-5)
    assert not torch.allclose(distort(x, g, prob=1.0), x, atol=1e-2)


def test_predict_shapes_aggregation_and_bad_input():
    torch.manual_seed(0)
    for agg in ("mean_logit", "max"):
        m = Siamese(**TINY, aggregate=agg).eval()
        with torch.no_grad():
            m.distance.weight.fill_(-1.0)
        sx, sy = torch.rand(10, 1, 28, 28), torch.arange(5).repeat_interleave(2)
        qx = torch.cat([sx[7:8], torch.rand(3, 1, 28, 28)])
        logits = m.predict(sx, sy, qx)
        assert logits.shape == (4, 5)
        if agg == "max":  # a query identical to a support image of class 3 has distance 0: class 3 wins
            assert int(logits[0].argmax()) == 3
    with pytest.raises(ValueError, match="support_y"):
        m.predict(sx, sy[:7], qx)
    # queries of another size are resized to the net's (as raw drawings are)
    big = torch.nn.functional.interpolate(qx, size=(32, 32), mode="bilinear")
    from mlcore.data import preprocess

    assert torch.equal(m.predict(sx, sy, big), m.predict(sx, sy, preprocess(big, size=28)))
    with pytest.raises(ValueError, match="PairBatch"):
        m.meta_loss(torch.zeros(3))
    with pytest.raises(ValueError, match="aggregate"):
        Siamese(aggregate="median")


def test_article_listing_defects_are_found_by_compiling_it():
    kinds = [(f.kind, f.detail) for f in diagnose(ARTICLE_LISTING)]
    assert kinds[0][0] == "syntax"  # cut off in forward
    assert {"conv_net", "nn", "torch"} <= set(undefined_names(
        "\n".join(ARTICLE_LISTING.splitlines()[:-1])))
    assert len(DEFECTS) == 3
    assert diagnose("import torch\nx = torch.zeros(1)\n") == []


def test_short_real_training_beats_floor():
    """150 verification steps of a small twin on Vinyals trainval: 5-way 1-shot on test well above 20 % chance."""
    from mlcore.data import load_split

    torch.manual_seed(0)
    m = Siamese(channels=[16, 16, 32, 32], embed_dim=64)
    s = PairSampler(load_split("vinyals/trainval"), classes_per_batch=16, seed=0)
    fit(m, s, 150, lr=3e-3, progress=False)
    acc = evaluate(m, engine.test_sampler(5, 1, queries=5), episodes=40)["accuracy"]
    assert acc > 0.45, acc  # measured 0.64 (seed 0); chance is 0.20


def test_lake_record_loads_and_predicts_on_preprocessed_drawings(tmp_path):
    """The Lake-protocol record rebuilds with mlcore.load and scores 20 candidates made by preprocess."""
    import numpy as np

    import mlcore
    from mlcore.data.omniglot import load_raw
    from mlcore.experiments.siamese_omniglot import evaluate_record, reproduce

    torch.manual_seed(0)
    (path,) = reproduce("smoke", seed=0, out_dir=tmp_path, device="cpu", protocol="lake", progress=False,
                        test_episodes=2, steps=3)
    net = mlcore.load(path)
    raw = load_raw()
    rows = np.flatnonzero(~raw.background)[: 20 * 20: 20]  # drawer 1 of 20 evaluation characters, 105x105
    size = net.encoder.image_size
    support = mlcore.preprocess(raw.unpack(rows), size=size)
    queries = mlcore.preprocess(raw.unpack(rows[:3] + 1), size=size)  # drawer 2 of the first three
    logits = net.predict(support, torch.arange(20), queries)
    assert logits.shape == (3, 20) and torch.isfinite(logits).all()
    # the raw 105x105 drawings: the net resizes them itself, just as preprocess(size=...) does
    assert torch.equal(net.predict(raw.unpack(rows), torch.arange(20), raw.unpack(rows[:3] + 1)), logits)
    small = mlcore.preprocess(raw.unpack(rows))  # preprocess's default 28x28, smaller than the net's size
    with pytest.warns(UserWarning, match="upsampled"):
        assert net.predict(small, torch.arange(20), small[:3]).shape == (3, 20)
    # re-scored on the record's own test episodes (its eval seed and count), the loaded net gives its number
    rec = mlcore.load_record(path)
    out = evaluate_record(path, episodes=rec.episodes, seed=rec.config["eval_seed"])
    assert (out["accuracy"], out["ci95"], out["episodes"]) == (rec.accuracy, rec.ci95, 2)
    assert len(rec.metrics["per_episode"]) == 2  # kept, so paired tests and protocol_scores can use this score
    assert (out["ways"], out["shots"], out["reference_accuracy"]) == (20, 1, rec.accuracy)
