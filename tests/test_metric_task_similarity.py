"""Task similarity (§4.1 loss), Task2Vec-style embeddings, retrieval and nearest-task transfer."""
import pytest
import torch

from mlcore.experiments import task_similarity as study
from mlcore.metric import task_similarity as ts
from mlcore.nets import Conv4


@pytest.fixture(scope="module")
def background():
    from mlcore.data import load_split

    return load_split("background")


def test_similarity_loss_is_the_articles_sum_of_squares():
    f, y = torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1.0, 0.0, 0.0])
    assert torch.isclose(ts.similarity_loss(f, y), torch.tensor(0.01 + 0.04 + 0.36))


def test_set_encoder_is_permutation_invariant_and_similarity_is_symmetric():
    torch.manual_seed(0)
    enc, sim = ts.SetTaskEncoder(hidden=8, dim=16).eval(), ts.TaskSimilarity(16)
    x = torch.rand(10, 1, 28, 28)
    assert torch.allclose(enc(x), enc(x[torch.randperm(10)]), atol=1e-5)
    a, b = enc(x), enc(torch.rand(10, 1, 28, 28))
    assert torch.allclose(sim(a, b), sim(b, a))
    assert enc(torch.rand(3, 10, 1, 28, 28)).shape == (3, 16)
    loss = ts.similarity_loss(sim(a, b)[None], torch.ones(1))
    loss.backward()
    assert all(p.grad is not None for p in sim.parameters())


def test_task2vec_shape():
    torch.manual_seed(0)
    probe = Conv4(1, 8, pool="max").eval()
    emb = ts.task2vec(probe, torch.rand(6, 1, 28, 28), torch.tensor([0, 0, 1, 1, 2, 2]), head_steps=5)
    assert emb.shape == (4 * 8,) and (emb >= 0).all() and (emb > 0).any()  # one Fisher value per filter of each conv layer


def test_task2vec_fisher_matches_a_per_example_autograd_loop():
    """The vmap'd per-example Fisher equals an independent loop of torch.autograd.grad calls."""
    torch.manual_seed(0)
    probe = Conv4(1, 8, pool="max").eval()
    x, y = torch.rand(5, 1, 28, 28), torch.tensor([0, 0, 1, 1, 1])
    emb = ts.task2vec(probe, x, y, head_steps=7, generator=torch.Generator().manual_seed(5))
    head = torch.nn.Linear(8, 2)  # the head task2vec fits: zero-initialised, Adam 1e-2, 7 steps
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    feats = probe.embed(x).detach()
    for _ in range(7):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(feats), y).backward()
        opt.step()
    with torch.no_grad():
        probs = torch.softmax(head(probe.embed(x)), -1)
    y_model = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(5)).flatten()
    convs = [p for p in probe.parameters() if p.ndim == 4]
    sq = [torch.zeros_like(p) for p in convs]
    for i in range(len(x)):
        lp = torch.log_softmax(head(probe.embed(x[i:i + 1])), -1)[0, y_model[i]]
        for s, gr in zip(sq, torch.autograd.grad(lp, convs)):
            s += gr.pow(2) / len(x)
    ref = torch.cat([s.flatten(1).mean(1) for s in sq])
    assert ref.abs().sum() > 0 and torch.allclose(emb, ref, rtol=1e-4, atol=1e-12)


def test_retrieval_finds_the_constructed_nearest_task(background):
    g = torch.Generator().manual_seed(0)
    split = ts.alphabet_split(background, 5, alphabets=4)
    probe = Conv4(1, 8, pool="max").eval()
    sources = [ts.make_task(background, src[:5], a, 5, 0, g) for a, (src, _) in enumerate(split)]
    target = ts.Task(sources[2].support_x.clone(), sources[2].support_y.clone(), 2, sources[2].chars)
    e_src = torch.stack([ts.task2vec(probe, s.support_x, s.support_y, 10, torch.Generator().manual_seed(1))
                         for s in sources])
    e_tgt = ts.task2vec(probe, target.support_x, target.support_y, 10, torch.Generator().manual_seed(1))
    sims = ts.task2vec_similarity(e_tgt[None], e_src)
    assert int(sims.argmax()) == 2 and torch.isclose(sims[2], torch.tensor(1.0))


def _bank_where_source_k_knows_group_k(groups=4, ways=3, dim=6, noise=1.0, seed=0):
    """Features under source k separate the classes of target group k only: a known best source per task."""
    g = torch.Generator().manual_seed(seed)
    chars = groups * ways
    bank = noise * torch.randn(groups, chars, 20, dim, generator=g)
    for k in range(groups):
        for c in range(ways):
            bank[k, k * ways + c, :, c] += 6.0  # class c of group k lights up its own axis under source k
    rows = [torch.arange(k * ways, (k + 1) * ways) for k in range(groups)]
    order = torch.rand(groups, ways, 20, generator=g).argsort(-1)
    return bank, rows, order


def test_gain_labels_rescale_each_task_to_unit_range():
    acc = torch.tensor([[0.9, 0.5, 0.7], [0.4, 0.4, 0.4], [0.2, 0.6, 0.3]])
    y = ts.gain_labels(acc)
    assert torch.allclose(y[0], torch.tensor([1.0, 0.0, 0.5]))
    assert torch.allclose(y[1], torch.full((3,), 0.5))  # no spread: no preference
    assert torch.allclose(y[2], torch.tensor([0.0, 1.0, 0.25]))
    with pytest.raises(ValueError, match="tasks, sources"):
        ts.gain_labels(torch.rand(3))


def test_frozen_transfer_matches_a_plain_nearest_centroid_loop():
    bank, rows, order = _bank_where_source_k_knows_group_k()
    acc = ts.frozen_transfer_accuracy(bank, rows[1], order[1], shots=4, metric="euclidean")
    for m in range(bank.shape[0]):
        f = bank[m, rows[1]]
        sup = torch.stack([f[c, order[1][c, :4]] for c in range(3)])
        correct, total = 0, 0
        for c in range(3):
            for q in order[1][c, 4:]:
                d = ((sup.mean(1) - f[c, q]) ** 2).sum(-1)
                correct += int(d.argmin()) == c
                total += 1
        assert acc[m] == pytest.approx(correct / total)
    assert int(acc.argmax()) == 1 and acc[1] == 1.0


def test_support_leave_one_out_matches_a_loop_and_finds_the_known_best_source():
    bank, rows, order = _bank_where_source_k_knows_group_k()
    shots = 5
    for k in range(4):
        score = ts.support_loo_score(bank, rows[k], order[k], shots, metric="euclidean")
        assert int(score.argmax()) == k
    # independent reference for one model: classify each support item by the means of the others
    f = bank[2, rows[0][:, None], order[0][:, :shots]]  # (N, K, d)
    logp = []
    for c in range(3):
        for s in range(shots):
            means = f.mean(1).clone()
            means[c] = torch.cat([f[c, :s], f[c, s + 1:]]).mean(0)
            logits = -((f[c, s] - means) ** 2).sum(-1)
            logp.append(logits.log_softmax(-1)[c])
    ref = torch.stack(logp).mean()
    got = ts.support_loo_score(bank, rows[0], order[0], shots, metric="euclidean")[2]
    assert torch.isclose(got, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 2 shots"):
        ts.support_loo_score(bank, rows[0], order[0], 1)


def test_learned_metric_on_gain_labels_retrieves_the_known_best_source():
    """Tasks whose best source is the nearest source embedding: f_theta learns it from gains alone."""
    g = torch.Generator().manual_seed(0)
    e_src = torch.randn(6, 8, generator=g)
    def tasks(n):
        best = torch.randint(6, (n,), generator=g)
        e = e_src[best] + 0.3 * torch.randn(n, 8, generator=g)
        acc = 0.5 + 0.4 * torch.exp(-torch.cdist(e, e_src) ** 2 / 8)  # transfer decays with distance
        return e, acc, best
    e_tr, acc_tr, _ = tasks(300)
    e_va, acc_va, _ = tasks(60)
    e_te, _, best_te = tasks(100)
    metric, hist = ts.train_task_metric(e_tr, e_src, ts.gain_labels(acc_tr), steps=600,
                                        val=(e_va, ts.gain_labels(acc_va)), lr=3e-3)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] / 2
    with torch.no_grad():
        f = metric(e_te[:, None].expand(-1, 6, -1), e_src[None].expand(100, -1, -1))
    assert (f.argmax(1) == best_te).float().mean() > 0.9


def test_rank_correlation_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 12, generator=g), torch.randn(5, 12, generator=g)
    b[0] = a[0].round()  # ties
    a[1, :4] = 0.0
    got = ts.rank_correlation(a, b)
    for i in range(5):
        assert float(got[i]) == pytest.approx(scipy_stats.spearmanr(a[i], b[i]).statistic, abs=1e-6)


def test_analysis_of_a_known_transfer_matrix():
    # two target groups (one background of alphabet 0, one evaluation), one split, four sources
    acc = torch.tensor([[[0.9, 0.5, 0.6, 0.4]], [[0.3, 0.8, 0.2, 0.1]]])
    pooled, untrained = torch.tensor([[0.7], [0.6]]), torch.tensor([[0.4], [0.2]])
    scores = {k: acc.clone() for k in study.RETRIEVERS}
    scores[study.RETRIEVERS[1]] = -acc
    out = study.analyse(acc, pooled, untrained, scores, {}, torch.tensor([0, 1]), torch.tensor([0, 0]),
                        torch.tensor([0, 1, 2, 3]), top_k=1)
    ret = out["retrieval"]["all"]
    assert ret[study.HEADLINE]["in_top1_most_helpful"] == 1.0 and ret[study.HEADLINE]["regret_vs_best"] == 0
    assert out["retrieval"]["background"][study.HEADLINE]["same_alphabet_top1"] == 1.0
    assert ret[study.RETRIEVERS[1]]["mean_rank_of_retrieved"] == 4.0
    table = out["transfer_tables"]["all"]
    assert table["best source in hindsight (oracle, sees the queries)"]["accuracy"] == pytest.approx(0.85)
    assert table["random source (expected)"]["accuracy"] == pytest.approx((0.6 + 0.35) / 2)
    assert "same-alphabet source (label oracle)" not in table  # no same-alphabet source for evaluation targets
    assert out["transfer_tables"]["background"]["same-alphabet source (label oracle)"]["accuracy"] == pytest.approx(0.9)


def test_character_roles_never_share_a_character():
    from mlcore.data import load_split

    bg, ev = load_split("background"), load_split("evaluation")
    cfg = study.config_for("full")
    roles = study.character_roles(bg, ev, cfg)
    src = {c for s in roles["sources"] for c in s["chars"]}
    lab = {c for s in roles["labels"] for c in s["chars"]}
    tgt = {c for t in roles["targets"] if t["kind"] == "background" for c in t["chars"]}
    assert not (src & lab) and not (src & tgt) and not (lab & tgt)
    assert all(bg.class_alphabet[c] == s["alphabet"] for s in roles["sources"] for c in s["chars"])
    kinds = [t["kind"] for t in roles["targets"]]
    assert kinds.count("background") >= 30 and kinds.count("evaluation") >= 80
    with pytest.raises(ValueError, match="characters; need"):
        study.character_roles(bg, ev, {**cfg, "ways": 10})


def test_bad_input_gives_clear_errors(background):
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="exceeds the 20 drawings"):
        ts.make_task(background, [0, 1], 0, 15, 10, g)
    with pytest.raises(ValueError, match="characters; need"):
        ts.alphabet_split(background, 40)
    with pytest.raises(ValueError, match="metric must be"):
        ts.prototype_logits(torch.rand(2, 3, 4), torch.rand(5, 4), metric="manhattan")


def test_small_real_run_transfer_beats_no_transfer_and_records_every_row():
    """A tiny end-to-end run on real Omniglot: features learned on training tasks beat untrained ones."""
    m = study.run_analysis("smoke", seed=0, device="cpu", cfg_overrides={"hidden": 16, "source_steps": 60,
                                                                       "pooled_steps": 120})
    table = m["transfer_tables"]["all"]
    assert table["one network on every source's characters (pooled)"]["accuracy"] > \
        table["no transfer (untrained network)"]["accuracy"] + 0.05
    assert table["best source in hindsight (oracle, sees the queries)"]["accuracy"] >= \
        table["random source (expected)"]["accuracy"]
    assert all(f"retrieved by {k}" in table for k in study.RETRIEVERS)
    assert len(m["transfer_matrix"]) == len(m["targets"]) and len(m["transfer_matrix"][0][0]) == 6


def test_training_functions_leave_the_global_rng_alone_and_are_reproducible(background):
    state = torch.get_rng_state()
    a, acc_a = ts.train_feature_net(background, [0, 1, 2], steps=2, hidden=4, batch=8, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b, acc_b = ts.train_feature_net(background, [0, 1, 2], steps=2, hidden=4, batch=8, seed=3)
    assert acc_a == acc_b and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="train_drawings must be"):
        ts.train_feature_net(background, [0, 1], steps=1, train_drawings=20)


def test_source_networks_stack_into_one_tensor_per_name_and_back():
    nets = [Conv4(1, 4, pool="max") for _ in range(3)]
    stacked = study.stack_states([n.state_dict() for n in nets])
    assert stacked["features.0.0.weight"].shape == (3, 4, 1, 3, 3) and stacked["features.0.0.weight"].dtype == torch.float16
    back = study.unstack_states(stacked)
    for net, sd in zip(nets, back):
        for k, v in net.state_dict().items():
            assert torch.allclose(v.float(), sd[k].float(), atol=1e-2) and sd[k].shape == v.shape


def test_committed_record_loads_its_networks_and_metrics():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "results" / "task_similarity_omniglot.json"
    nets, metrics, cfg = study.load_models(path)
    assert len(nets) == cfg["alphabets"] + 2 and {"gain", "same", "label_source_mean"} <= set(metrics)
    assert nets[0](torch.zeros(2, 1, 28, 28)).shape == (2, cfg["hidden"])
