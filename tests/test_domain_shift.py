"""Chapter 10's helpers: digit episodes, the pixel yardstick, and the RL^2 ablated policies (no training, < 10 s)."""
from __future__ import annotations

import pytest
import torch

from mlcore.baselines.pixels import PixelCentroids
from mlcore.data.digits import DigitEpisodes
from mlcore.engine import evaluate
from mlcore.rl.rl2 import RL2Policy
from mlcore.experiments.rl_ablations import VARIANTS, AblatedRL2Policy


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
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    border = torch.cat([x[..., 0, :].flatten(), x[..., -1, :].flatten()]).mean()
    centre = x[..., 10:18, 10:18].mean()
    assert float(border) == 0.0 and centre > 0.3  # ink (1) in the middle, a blank margin as in Omniglot


def _inputs(policy, T=6, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = []
    for t in range(T):
        state = torch.zeros(B, dtype=torch.long)
        a = None if t == 0 else torch.randint(policy.num_actions, (B,), generator=g)
        r = torch.rand(B, generator=g)
        done = torch.full((B,), t > 0 and t % 2 == 0)  # an episode ends every 2 steps
        xs.append(policy.encode(state, a, r, done))
    return torch.stack(xs, 1)


def test_full_variant_is_the_plain_rl2_policy():
    torch.manual_seed(0)
    a = AblatedRL2Policy(1, 4, 8, True, True)
    b = RL2Policy(1, 4, 8)
    b.load_state_dict(a.state_dict())
    x = _inputs(a)
    la, va, _ = a(x)
    lb, vb, _ = b(x)
    assert torch.allclose(la, lb) and torch.allclose(va, vb)
    assert VARIANTS["RL2 (full)"] == (True, True)


def test_no_reward_input_makes_the_policy_blind_to_rewards():
    torch.manual_seed(0)
    p = AblatedRL2Policy(1, 4, 8, reward_input=False)
    s, a, d = torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.bool)
    x1, x2 = p.encode(s, a, torch.zeros(3), d), p.encode(s, a, torch.ones(3) * 5, d)
    assert torch.equal(x1, x2) and x1.shape[-1] == p.input_size
    full = AblatedRL2Policy(1, 4, 8)
    assert not torch.equal(full.encode(s, a, torch.zeros(3), d), full.encode(s, a, torch.ones(3), d))


def test_hidden_reset_forgets_exactly_at_episode_boundaries():
    torch.manual_seed(0)
    p = AblatedRL2Policy(1, 4, 8, carry_hidden=False)
    x = _inputs(p, T=6)
    logits, values, _ = p(x)
    # stepping one input at a time with the same module (as a rollout does) gives the same outputs
    h = None
    for t in range(6):
        lt, vt, h = p(x[:, t:t + 1], h)
        assert torch.allclose(lt[:, 0], logits[:, t], atol=1e-6)
    # after the reset at t = 2, outputs depend only on inputs from t = 2 on
    x2 = x.clone()
    x2[:, :2] = torch.randn_like(x2[:, :2])
    l2, _, _ = p(x2)
    assert torch.allclose(l2[:, 2:], logits[:, 2:], atol=1e-6)
    assert not torch.allclose(l2[:, :2], logits[:, :2])
    # the carried variant does remember the earlier inputs
    c = AblatedRL2Policy(1, 4, 8, carry_hidden=True)
    c.load_state_dict(p.state_dict())
    assert not torch.allclose(c(x2)[0][:, 2:], c(x)[0][:, 2:])


def test_test_time_ablation_pairs_variants_on_the_same_trials(tmp_path):
    from mlcore.results import Record, atomic_torch_save, save_record
    from mlcore.rl.rl2 import evaluate_rl2
    from mlcore.experiments.rl_ablations import test_time_ablation

    torch.manual_seed(0)
    spec = {"env": "bandit", "arms": 3, "pulls": 6}
    policy = RL2Policy(1, 3, 16)
    atomic_torch_save(policy.state_dict(), tmp_path / "agent.pt")
    save_record(Record(name="agent", method="rl2", dataset="bernoulli_bandit", checkpoint="agent.pt",
                       config={"spec": spec, "model": policy.config()}), tmp_path)
    out = test_time_ablation(tmp_path / "agent.json", trials=64, seed=5)
    intact = evaluate_rl2(policy, spec, 64, 5)
    assert out["variants"]["RL2 (full)"]["mean_total_reward"] == intact["mean_total_reward"]
    assert set(out["variants"]) == set(VARIANTS)
    for name, v in out["variants"].items():
        if name != "RL2 (full)":
            d = v["paired_vs_full"]
            assert abs(d["mean_difference"] - (v["mean_total_reward"] - intact["mean_total_reward"])) < 1e-9
