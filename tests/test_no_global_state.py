"""No hidden global state: library functions leave the caller's random state alone."""
from __future__ import annotations

import pytest
import torch

from mlcore.baselines.scratch import Scratch
from mlcore.nets import Conv4
from mlcore.rl.baselines import PSRL, Thompson, run_policy
from mlcore.rl.envs import make_env
from mlcore.rl.rl2 import RL2Config, train_rl2
from mlcore.runtime import seeded_global_rng


def test_seeded_global_rng_draws_as_manual_seed_and_restores_the_state():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with seeded_global_rng(7):
        inside = torch.rand(5)
    assert torch.equal(torch.get_rng_state(), before)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        assert torch.equal(inside, torch.rand(5))


def test_scratch_init_is_seeded_without_touching_the_global_rng():
    before = torch.get_rng_state()
    a, b = Scratch(init_seed=3), Scratch(init_seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        ref = Conv4(1, 64, pool="max")
    for k, v in ref.state_dict().items():
        assert torch.equal(a.encoder.state_dict()[k], v) and torch.equal(b.encoder.state_dict()[k], v)


def test_train_rl2_twice_is_the_same_run_and_leaves_the_global_rng_alone(tmp_path):
    spec = {"env": "bandit", "arms": 3, "pulls": 5}
    cfg = RL2Config(spec=spec, hidden=8, updates=2, trials_per_update=8, epochs=1, minibatches=2)
    before = torch.get_rng_state()
    p1, _ = train_rl2(cfg, seed=1, log_every=1)
    p2, _ = train_rl2(cfg, seed=1, log_every=1, run_dir=tmp_path, stop_after=1)  # saves a checkpoint
    p2, _ = train_rl2(cfg, seed=1, log_every=1, run_dir=tmp_path)  # resumes: restores the saved RNG state
    assert torch.equal(torch.get_rng_state(), before)
    for k, v in p1.state_dict().items():
        assert torch.equal(p2.state_dict()[k], v)


@pytest.mark.parametrize("policy, spec", [
    (Thompson, {"env": "bandit", "arms": 4, "pulls": 6}),
    (PSRL, {"env": "mdp", "episodes": 2, "num_states": 3, "num_actions": 2, "horizon": 3}),
])
def test_sampling_baselines_leave_the_global_rng_alone(policy, spec):
    before = torch.get_rng_state()
    a = run_policy(policy(), make_env(spec, 16, seed=3))["total"]
    b = run_policy(policy(), make_env(spec, 16, seed=3))["total"]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a, b)
