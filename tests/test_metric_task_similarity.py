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


def test_analysis_of_a_known_transfer_matrix():
    acc = torch.tensor([[0.9, 0.5, 0.6, 0.4], [0.3, 0.8, 0.2, 0.1]])
    scratch = torch.tensor([0.4, 0.2])
    scores = {"perfect": acc.clone(), "worst": -acc}
    out = study.analyse(acc, scratch, scores, torch.tensor([0, 1]), torch.tensor([0, 1, 2, 3]), top_k=1)
    assert out["retrieval"]["perfect"]["in_top1_most_helpful"] == 1.0
    assert out["retrieval"]["perfect"]["same_alphabet_top1"] == 1.0
    assert out["retrieval"]["worst"]["mean_rank_of_retrieved"] == 4.0
    assert out["transfer_table"]["best in hindsight (oracle)"]["accuracy"] == pytest.approx(0.85)
    assert out["transfer_table"]["random training task"]["accuracy"] == pytest.approx((0.6 + 0.35) / 2)


def test_bad_input_gives_clear_errors(background):
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="exceeds the 20 drawings"):
        ts.make_task(background, [0, 1], 0, 15, 10, g)
    with pytest.raises(ValueError, match="characters; need"):
        ts.alphabet_split(background, 40)


def test_small_real_run_transfer_beats_no_transfer():
    """A tiny end-to-end run on real Omniglot: warm starts from training tasks beat random init."""
    m = study.run_analysis("smoke", seed=0, device="cpu",
                        cfg_overrides={"alphabets": 4, "source_steps": 25, "sim_steps": 10, "probe_steps": 10,
                                       "t2v_tasks_per_alphabet": 2, "head_steps": 20, "ft_steps": 10})
    table = m["transfer_table"]
    assert table["random training task"]["accuracy"] > table["no transfer"]["accuracy"] + 0.05
    assert table["best in hindsight (oracle)"]["accuracy"] >= table["random training task"]["accuracy"]
    assert len(m["transfer_matrix"]) == 4 and len(m["similarity_matrix"]) == 4
