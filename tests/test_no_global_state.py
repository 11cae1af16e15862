"""No hidden global state: library functions leave the caller's random state alone, and a cached data
split handed to one caller cannot be changed for the next one."""
from __future__ import annotations

import warnings

import pytest
import torch

from mlcore.baselines.scratch import Scratch
from mlcore.data import omniglot
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


def _tiny_split(name, root, size):
    zeros = torch.zeros(3, dtype=torch.long)
    return omniglot.ClassSet(name, torch.rand(3, 20, 1, size, size), torch.tensor([0, 1, 2]), zeros, zeros.clone(),
                             ["a/c1", "a/c2", "a/c3"], ["a"])


def test_a_cached_split_cannot_be_changed_for_the_next_caller(monkeypatch):
    builds = []

    def build(name, root, size):
        builds.append(name)
        return _tiny_split(name, root, size)

    monkeypatch.setattr(omniglot, "_build_split", build)
    key = ("vinyals/test", "/no/such/root/for/this/test", 8)
    monkeypatch.setattr(omniglot, "_SPLIT_CACHE", omniglot.OrderedDict())
    first = omniglot.load_split(key[0], key[1], key[2])
    ref = first.images.clone()
    # no pixel is copied per call (the real images are ~120 MB) ...
    again = omniglot.load_split(*key)
    assert again is not first and again.images.data_ptr() == first.images.data_ptr() and builds == [key[0]]
    # ... but reassigning fields and editing lists stays with the caller
    first.images = torch.zeros(1)
    first.class_char = None
    first.class_names.append("x/extra")
    first.alphabets.clear()
    clean = omniglot.load_split(*key)
    assert torch.equal(clean.images, ref) and clean.class_names == ["a/c1", "a/c2", "a/c3"]
    assert clean.alphabets == ["a"] and clean.class_char.tolist() == [0, 1, 2] and builds == [key[0]]
    # an in-place write reaches the shared storage: the next call notices and builds the split again
    clean.images[0].zero_()
    with pytest.warns(RuntimeWarning, match="written in place"):
        rebuilt = omniglot.load_split(*key)
    assert builds == [key[0]] * 2 and rebuilt.images.data_ptr() != clean.images.data_ptr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert omniglot.load_split(*key).images.data_ptr() == rebuilt.images.data_ptr()
