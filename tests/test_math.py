"""Chapter 7's numeric checks of the four objectives (float64, small models, each a few seconds)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from mlcore.book import mathcheck as M


# ----------------------------------------------------------------------------- §4.1 task similarity
def test_similarity_loss_gradient_matches_chain_rule_and_gradcheck():
    from mlcore.metric.task_similarity import TaskSimilarity, similarity_loss

    torch.manual_seed(0)
    sim = TaskSimilarity(dim=4, hidden=6).double()
    e_i, e_j = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    auto, formula = M.similarity_gradient_by_formula(sim, e_i, e_j, y)
    for k in auto:
        assert torch.allclose(auto[k], formula[k], rtol=1e-10, atol=1e-12), k
    # gradcheck through the head w.r.t. both task embeddings
    assert gradcheck(lambda a, b: similarity_loss(sim(a, b), y), (e_i.requires_grad_(), e_j.requires_grad_()))
    # symmetric in its arguments, as a similarity between tasks should be
    assert torch.allclose(sim(e_i, e_j), sim(e_j, e_i))


def test_similarity_objective_whole_network_finite_differences():
    from mlcore.metric.task_similarity import SetTaskEncoder, TaskSimilarity, similarity_loss

    torch.manual_seed(0)
    enc, sim = SetTaskEncoder(hidden=3, dim=4).double(), TaskSimilarity(dim=4, hidden=5).double()
    enc.eval()  # BN on running stats: a deterministic function of θ for the finite differences
    xi, xj = torch.rand(3, 4, 1, 28, 28, dtype=torch.float64), torch.rand(3, 4, 1, 28, 28, dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    params = [*enc.parameters(), *sim.parameters()]
    for auto, fd in M.directional_check(lambda: similarity_loss(sim(enc(xi), enc(xj)), y), params):
        assert auto == pytest.approx(fd, rel=1e-6, abs=1e-9)


# ----------------------------------------------------------------------------- §4.2 MAML
def sinusoid_task(seed=0, k=5):
    from mlcore.data import SinusoidSampler

    t = SinusoidSampler(shots=k, queries=k, batch_size=1, seed=seed).sample()
    d = torch.float64
    return (t.support_x[0].to(d), t.support_y[0].to(d)), (t.query_x[0].to(d), t.query_y[0].to(d))


def small_mlp(hidden=8):
    from mlcore.nets import MLP

    torch.manual_seed(0)
    return MLP(1, [hidden, hidden], 1).double()


def test_maml_meta_gradient_equals_explicit_hessian_formula():
    model = small_mlp()
    support, query = sinusoid_task()
    r = M.maml_hessian_term(model, support, query, alpha=0.01)
    assert torch.allclose(r["second"], r["explicit"], rtol=1e-9, atol=1e-12)
    # the Hessian term is what separates MAML from first-order MAML, and it is not negligible here
    assert torch.allclose(r["second"] - r["first"], r["hvp_term"], rtol=1e-9, atol=1e-12)
    assert r["hvp_term"].norm() > 1e-4 * r["first"].norm()
    assert torch.allclose(r["hessian"], r["hessian"].T, atol=1e-10)


def test_maml_meta_loss_gradcheck():

    from mlcore.optimization.maml import adapted_query_loss

    model = small_mlp(hidden=4)
    support, query = sinusoid_task(k=3)
    names = [k for k, _ in model.named_parameters()]
    inputs = tuple(v.detach().clone().requires_grad_(True) for _, v in model.named_parameters())

    def meta_loss(*vals):
        return adapted_query_loss(model, dict(zip(names, vals)), *support, *query, F.mse_loss, [0.05, 0.05])[0]

    assert gradcheck(meta_loss, inputs)


# ----------------------------------------------------------------------------- §4.3 memory
def test_protonet_memory_read_gradient_formula_and_gradcheck():
    from mlcore.memory.protonet import prototype_logits, prototypes

    g = torch.Generator().manual_seed(0)
    protos = torch.randn(4, 6, generator=g, dtype=torch.float64)
    q = torch.randn(6, generator=g, dtype=torch.float64)
    auto, formula = M.protonet_query_gradient(q, protos, label=2)
    assert torch.allclose(auto, formula, rtol=1e-10, atol=1e-12)
    # the write (class means) and the read (softmax over distances) together, w.r.t. support and query embeddings
    zs = torch.randn(8, 6, generator=g, dtype=torch.float64, requires_grad=True)
    zq = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    ys, yq = torch.arange(4).repeat_interleave(2), torch.tensor([0, 1, 2, 3, 0])
    assert gradcheck(lambda s, qq: F.cross_entropy(prototype_logits(qq, prototypes(s, ys, 4)), yq), (zs, zq))


def test_mann_lrua_memory_gradcheck_and_whole_model_finite_differences():
    from mlcore.memory.mann import MANN, SequenceBatch, init_memory, lrua_step

    g = torch.Generator().manual_seed(0)
    st = init_memory(1, 5, 3, 1, dtype=torch.float64)
    st.memory = torch.rand(1, 5, 3, generator=g, dtype=torch.float64)
    st.read_w = torch.softmax(torch.randn(1, 1, 5, generator=g, dtype=torch.float64), -1)
    keys = torch.randn(1, 1, 3, generator=g, dtype=torch.float64, requires_grad=True)
    gate = torch.randn(1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    mem = st.memory.clone().requires_grad_(True)

    def read(k, a, m):
        s = type(st)(m, st.usage, st.read_w, st.lu, st.reads)
        new, _ = lrua_step(s, k, a, 0.95)
        return new.reads

    assert gradcheck(read, (keys, gate, mem))
    torch.manual_seed(0)
    mann = MANN(ways=3, image_size=4, controller=6, slots=5, slot_width=3, heads=1).double()
    x = torch.rand(2, 6, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 0, 1, 0]])
    batch = SequenceBatch(x, y, 3)
    for auto, fd in M.directional_check(lambda: mann.meta_loss(batch)[0], list(mann.parameters())):
        assert auto == pytest.approx(fd, rel=1e-6, abs=1e-9)


# ----------------------------------------------------------------------------- §4.4 meta-reward
def rl2_policies(hidden=4):
    from mlcore.rl.rl2 import RL2Policy

    torch.manual_seed(0)
    p32 = RL2Policy(num_states=1, num_actions=2, hidden=hidden)
    with torch.no_grad():
        p32.pi.weight.mul_(100)  # move away from the near-uniform init so the gradient has structure
    return p32, copy.deepcopy(p32).double()


MEANS = torch.tensor([0.2, 0.7], dtype=torch.float64)


def test_meta_reward_exact_value_and_gradcheck():
    _, p64 = rl2_policies()
    # a uniform policy on a 2-armed bandit collects (0.2 + 0.7) / 2 per pull
    uniform = copy.deepcopy(p64)
    with torch.no_grad():
        uniform.pi.weight.zero_()
        uniform.pi.bias.zero_()
    assert float(M.bandit_meta_reward(uniform, MEANS, 3).detach()) == pytest.approx(3 * 0.45, abs=1e-12)
    names = ["pi.weight", "pi.bias"]
    fixed = {k: v.detach() for k, v in p64.named_parameters()}

    def J(w, b):
        return M.bandit_meta_reward(p64, MEANS, 3, params={**fixed, "pi.weight": w, "pi.bias": b})

    assert gradcheck(J, tuple(fixed[k].clone().requires_grad_(True) for k in names))


def test_score_function_gradient_equals_autograd_exactly():
    _, p64 = rl2_policies()
    auto = torch.autograd.grad(M.bandit_meta_reward(p64, MEANS, 3), M.policy_parameters(p64))
    score = M.reinforce_exact(p64, MEANS, 3)
    for a, s in zip(auto, score):
        assert torch.allclose(a, s, rtol=1e-9, atol=1e-12)


def test_reinforce_monte_carlo_with_rl2_rollouts_is_unbiased():
    p32, p64 = rl2_policies()
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(M.bandit_meta_reward(p64, MEANS, 3),
                                                                M.policy_parameters(p64))]).float()
    est, R = M.reinforce_monte_carlo(p32, MEANS, 3, trials=20000, seed=0)
    est = torch.cat([g.flatten() for g in est])
    cos = float(est @ exact / (est.norm() * exact.norm()))
    assert cos > 0.95, cos
    assert float((est.norm() - exact.norm()).abs() / exact.norm()) < 0.15
    # and the mean return matches the exact meta-reward
    assert float(R.mean()) == pytest.approx(float(M.bandit_meta_reward(p64, MEANS, 3).detach()), abs=0.03)
