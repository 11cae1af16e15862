"""Protocols as data: batch norm at test is stated and obeyed, and papers' numbers carry how they were measured."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from mlcore.data.episodes import Episode
from mlcore.memory.protonet import ProtoNet
from mlcore.optimization.maml import MAML
from mlcore.optimization.reptile import Reptile
from mlcore.protocols import Protocol, batch_norm_at_test, batch_norm_kind, book_protocol, training_words
from mlcore.reference import NON_TRANSDUCTIVE, OMNIGLOT, PAPER_PROTOCOLS, published


def episode(ways=3, shots=2, queries=3, batch=2, size=12, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(batch, ways * shots, 1, size, size, generator=g, dtype=torch.float64)
    qx = torch.rand(batch, ways * queries, 1, size, size, generator=g, dtype=torch.float64)
    sy = torch.arange(ways).repeat_interleave(shots).repeat(batch, 1)
    qy = torch.arange(ways).repeat_interleave(queries).repeat(batch, 1)
    return Episode(sx, sy, qx, qy, ways, shots, queries)


def maml_learner(cls=MAML, **kw):
    torch.manual_seed(0)
    return cls(ways=3, hidden=4, inner_steps=1, test_inner_steps=2, inner_lr=0.3, **kw).double()


@pytest.mark.parametrize("cls", [MAML, Reptile])
def test_per_query_batch_norm_normalises_each_query_with_the_support_set_only(cls):
    m = maml_learner(cls)
    ep = episode()
    with batch_norm_at_test(m, "per_query"):
        per_query = m.predict_batch(ep)
    assert m.test_batch_norm == "transductive"  # restored
    transductive = m.predict_batch(ep)
    # independent reference: adapt on the support set by hand, then run [support; one query] for every query
    params = {k: v.detach().clone().requires_grad_(True) for k, v in m.net.named_parameters()}
    for i in range(ep.batch_size):
        fast = params
        for _ in range(m.test_inner_steps):
            loss = torch.nn.functional.cross_entropy(functional_call(m.net, fast, (ep.support_x[i],)),
                                                     ep.support_y[i])
            grads = torch.autograd.grad(loss, list(fast.values()))
            fast = {k: v - m.inner_lrs[0] * g for (k, v), g in zip(fast.items(), grads)}
        for j in range(ep.query_x.shape[1]):
            batch = torch.cat([ep.support_x[i], ep.query_x[i, j:j + 1]])
            want = functional_call(m.net, fast, (batch,))[-1]
            assert torch.allclose(per_query[i, j], want, atol=1e-10)
        # a query's logits must not depend on the other queries (they do under transductive batch norm)
        alone = m.predict_batch(Episode(ep.support_x[i:i + 1], ep.support_y[i:i + 1], ep.query_x[i:i + 1, :1],
                                        ep.query_y[i:i + 1, :1], 3, 2, 1))
    with batch_norm_at_test(m, "per_query"):
        first_alone = m.predict_batch(Episode(ep.support_x[:1], ep.support_y[:1], ep.query_x[:1, :1],
                                              ep.query_y[:1, :1], 3, 2, 1))
    assert torch.allclose(first_alone[0, 0], per_query[0, 0], atol=1e-10)
    assert not torch.allclose(alone[0, 0], transductive[0, 0], atol=1e-6)


@pytest.mark.parametrize("cls", [MAML, Reptile])
def test_support_batch_norm_normalises_every_query_with_the_support_sets_statistics(cls):
    m = maml_learner(cls)
    ep = episode()
    with batch_norm_at_test(m, "support"):
        got = m.predict_batch(ep)
        alone = m.predict_batch(Episode(ep.support_x[:1], ep.support_y[:1], ep.query_x[:1, 1:2],
                                        ep.query_y[:1, 1:2], 3, 2, 1))
    assert m.test_batch_norm == "transductive"
    assert torch.allclose(alone[0, 0], got[0, 1], atol=1e-10)  # no query sees another
    # independent reference: eval-mode nn.BatchNorm2d whose running statistics are the support set's, layer by
    # layer (captured by hooks on a pass of the support set), on weights adapted by hand
    import copy
    params = {k: v.detach().clone().requires_grad_(True) for k, v in m.net.named_parameters()}
    fast = params
    for _ in range(m.test_inner_steps):
        loss = torch.nn.functional.cross_entropy(functional_call(m.net, fast, (ep.support_x[0],)), ep.support_y[0])
        grads = torch.autograd.grad(loss, list(fast.values()))
        fast = {k: v - m.inner_lrs[0] * g for (k, v), g in zip(fast.items(), grads)}
    stats = []
    hooks = [mod.register_forward_hook(lambda mod, inp, out: stats.append(
        (inp[0].mean(dim=(0, 2, 3)), inp[0].var(dim=(0, 2, 3), unbiased=False))))
        for mod in m.net.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    functional_call(m.net, fast, (ep.support_x[0],))
    for h in hooks:
        h.remove()
    ref = copy.deepcopy(m.net)
    bns = [n for n, mod in ref.named_modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    for name, (mean, var) in zip(bns, stats):
        parent = ref.get_submodule(name.rsplit(".", 1)[0]) if "." in name else ref
        old = ref.get_submodule(name)
        bn = torch.nn.BatchNorm2d(old.num_features, eps=old.eps).double().eval()
        bn.running_mean.copy_(mean.detach())
        bn.running_var.copy_(var.detach())
        setattr(parent, name.rsplit(".", 1)[-1], bn)
    want = functional_call(ref, {k: v.detach() for k, v in fast.items()}, (ep.query_x[0],))
    assert torch.allclose(got[0], want, atol=1e-10)


def test_batch_statistics_for_running_stat_nets_leave_the_running_statistics_alone():
    torch.manual_seed(0)
    net = ProtoNet(hidden=8).double().eval()
    for bn in (mod for mod in net.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ep = episode(size=28, batch=1)
    running = net.predict_batch(ep)
    with batch_norm_at_test(net, "batch"):
        batch_stats = net.predict_batch(ep)
        net.eval()  # as mlcore.engine.evaluate does inside the block: it must not bring the running statistics back
        assert torch.allclose(net.predict_batch(ep), batch_stats, atol=1e-10)
    assert not any(m.training for m in net.modules())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.allclose(running, batch_stats)
    # the same as a train-mode forward of a copy (whose running statistics may move: it is thrown away)
    import copy
    twin = copy.deepcopy(net).train()
    assert torch.allclose(twin.predict_batch(ep), batch_stats, atol=1e-10)
    with pytest.raises(ValueError, match="cannot be scored"), batch_norm_at_test(net, "per_query"):
        pass


def test_score_under_the_transductive_protocol_normalises_each_episode_with_its_own_batch():
    """Through ``score`` and ``evaluate`` (which switches the learner to eval mode), on real test episodes."""
    import copy

    from mlcore.protocols import score

    torch.manual_seed(0)
    net = ProtoNet(hidden=8).eval()
    for bn in (mod for mod in net.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    seen = []
    predict_batch = net.predict_batch

    def spy(ep):
        out = predict_batch(ep)
        seen.append((ep, out))
        return out

    net.predict_batch = spy
    score(net, Protocol("batch", queries=2), ways=5, shots=1, episodes=2)
    ep, transductive = seen[-1]
    assert len(seen) == 2 and ep.support_x.shape[0] == 1  # one episode per batch: episodes do not normalise each other
    del net.predict_batch
    twin = copy.deepcopy(net).train()  # a train-mode forward normalises with the batch (its statistics move: thrown away)
    with torch.no_grad():
        assert torch.allclose(twin.predict_batch(ep), transductive, atol=1e-5)
        assert not torch.allclose(net.predict_batch(ep), transductive, atol=1e-3)


def test_book_protocol_is_non_transductive_for_every_kind_of_net():
    assert batch_norm_kind(maml_learner()) == "support"
    assert book_protocol(ProtoNet(hidden=4)).batch_norm == "running"
    assert not book_protocol(maml_learner()).transductive


def test_protocol_rejects_bad_fields_and_reads_as_words():
    with pytest.raises(ValueError, match="batch_norm must be one of"):
        Protocol("eval")
    with pytest.raises(ValueError, match="queries must be"):
        Protocol("batch", queries=0)
    words = Protocol("batch", queries="shots", episodes=600).words(shots=1)
    assert "transductive" in words and "1 query/class" in words and "600 episodes" in words
    assert not Protocol("not stated", queries=None).scorable


def test_every_published_number_carries_its_protocol():
    for (method, setting), pub in OMNIGLOT.items():
        assert isinstance(pub.protocol, Protocol), (method, setting)
    assert published("maml", "5w1s").protocol.transductive
    assert published("relationnet", "5w1s").protocol.selection == "test"
    assert published("protonet", "5w1s").protocol.batch_norm == "running"
    assert published("siamese", "20w1s-within").protocol.image_size == 105
    nt = published("reptile", "5w1s", batch_norm="per_query")
    assert nt is NON_TRANSDUCTIVE[("reptile", "5w1s")] and nt.accuracy == 95.39
    assert published("reptile", "5w1s").accuracy == 97.68
    assert set(PAPER_PROTOCOLS) >= {m for m, _ in OMNIGLOT}


def test_training_words_say_what_the_record_trained_on():
    assert training_words({"train_split": "vinyals/trainval"}) == "Vinyals train+val, rotations as classes"
    assert training_words({"train_split": "vinyals/train", "episode_rotation": True}) == (
        "Vinyals train, one random 90° rotation per episode")
    assert training_words({"train_split": "background", "within_alphabet": True}) == (
        "the 30 background alphabets, no rotations")


class _BatchNormOnly(torch.nn.Module):
    """A learner whose forward pass is one batch norm: its statistics can be checked by hand."""

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(2).double()
        self.scale = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

    def meta_loss(self, x):
        return (self.scale * self.bn(x)).sum(), {}


def test_recompute_batch_norm_replaces_the_running_average_with_the_plain_mean_of_the_batches():
    from mlcore.protocols import recompute_batch_norm

    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64) * (1 + i) + i
               for i, n in enumerate((5, 19, 7))]
    net = _BatchNormOnly().eval()
    net.bn.running_mean.fill_(9.0)
    net.bn.num_batches_tracked.fill_(40_000)  # as after training: a cumulative average must start afresh
    weights = {k: v.clone() for k, v in net.named_parameters()}
    assert recompute_batch_norm(net, iter(batches + [None]), count=3) == 3  # stops after count: None never runs
    means = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    variances = torch.stack([b.transpose(0, 1).flatten(1).var(1) for b in batches]).mean(0)  # unbiased, per batch
    assert torch.allclose(net.bn.running_mean, means, atol=1e-12)
    assert torch.allclose(net.bn.running_var, variances, atol=1e-12)
    assert net.bn.momentum == 0.1 and not net.training
    assert all(torch.equal(v, weights[k]) for k, v in net.named_parameters())


def test_recompute_batch_norm_with_a_momentum_continues_the_exponential_average():
    from mlcore.protocols import recompute_batch_norm

    net = _BatchNormOnly()
    net.bn.running_mean.copy_(torch.tensor([1.0, -1.0]))
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64) + 3
    recompute_batch_norm(net, [x], count=1, momentum=0.25)
    assert torch.allclose(net.bn.running_mean, 0.75 * torch.tensor([1.0, -1.0], dtype=torch.float64)
                          + 0.25 * x.mean((0, 2, 3)), atol=1e-12)
    assert net.bn.momentum == 0.1 and net.training


def test_recompute_batch_norm_refuses_bad_input_and_leaves_the_statistics_as_they_were():
    from mlcore.protocols import recompute_batch_norm

    net = _BatchNormOnly().eval()
    net.bn.running_mean.fill_(2.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="ran out after 2 of the 5"):
        recompute_batch_norm(net, [torch.randn(3, 2, 2, 2, dtype=torch.float64)] * 2, count=5)
    with pytest.raises(ValueError, match="at least 1 episode"):
        recompute_batch_norm(net, [], count=0)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert net.bn.momentum == 0.1 and not net.training
    with pytest.raises(ValueError, match="no batch norm with running statistics"):
        recompute_batch_norm(torch.nn.Linear(2, 2), [], count=1)


def test_recompute_batch_norm_draws_from_a_sampler_the_batches_training_drew():
    """A sampler (``sample()``, not iterable), as ``make_train_sampler`` gives the Siamese net, works like a list."""
    from mlcore.protocols import recompute_batch_norm

    class Sampler:
        def __init__(self):
            self.g = torch.Generator().manual_seed(1)
            self.drawn = []

        def sample(self):
            self.drawn.append(torch.randn(6, 2, 3, 3, generator=self.g, dtype=torch.float64))
            return self.drawn[-1]

    net, sampler = _BatchNormOnly(), Sampler()
    assert recompute_batch_norm(net, sampler, count=4) == 4
    assert len(sampler.drawn) == 4
    means = torch.stack([b.mean((0, 2, 3)) for b in sampler.drawn]).mean(0)
    assert torch.allclose(net.bn.running_mean, means, atol=1e-12)
