"""RL^2 trains through mlcore.engine.fit (one fit step = one PPO update, done by RL2Learner.train_step).

The reference is the plain PPO loop train_rl2 ran before (rollout, schedule, ppo_update per update): fit's
loop must compute it bit for bit, resume it exactly, refuse another run's checkpoint, stop on a time limit
and on a NaN as fit does for every other learner. Tiny configs: seconds each.
"""
from __future__ import annotations

import itertools
import math
import time
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from mlcore.engine import CHECKPOINT_NAME, NonFiniteLossError, fit
from mlcore.learner import TrainingHooks
from mlcore.rl import rl2
from mlcore.rl.envs import cpu_threads, make_env
from mlcore.rl.rl2 import RL2Config, RL2Policy, ppo_update, rl2_schedule, rollout, train_rl2

SPEC = {"env": "bandit", "arms": 3, "pulls": 5}
RESULTS = Path(__file__).resolve().parents[1] / "results"


def tiny(**kw) -> RL2Config:
    base = {"spec": SPEC, "hidden": 8, "updates": 4, "trials_per_update": 16, "epochs": 2, "minibatches": 2,
            "lr": 3e-3}
    return RL2Config(**{**base, **kw})


def plain_ppo_loop(cfg: RL2Config, seed: int, log_every: int) -> tuple[RL2Policy, list[dict]]:
    """RL^2's PPO loop written out with the public pieces, as train_rl2 ran it before fit did."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        make_env(SPEC, 1, 0)  # train_rl2 builds a probe env before the policy
        policy = RL2Policy(1, SPEC["arms"], cfg.hidden)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    g = torch.Generator().manual_seed(seed)
    rows, kl_stops, floor_updates = [], 0, 0
    with cpu_threads("cpu"):  # train_rl2 runs on one thread: the same sums in the same order
        for u in range(cfg.updates):
            env = make_env(SPEC, cfg.trials_per_update, 10_000_000 + seed * 1_000_003 + u)
            ro = rollout(policy, env, g)
            sched = rl2_schedule(cfg, u)
            for group in opt.param_groups:
                group["lr"] = sched["lr"]
            floor = sched["entropy_floor"] * math.log(SPEC["arms"])
            st = ppo_update(policy, opt, ro, cfg, sched["entropy_coef"], g, floor)
            kl_stops += int(st["kl_stopped"])
            floor_updates += int(st["floor_active"] > 0)
            if u % log_every == 0 or u + 1 == cfg.updates:
                rows.append({"update": u + 1, "trials_seen": (u + 1) * cfg.trials_per_update,
                             "mean_total_reward": float(ro.total.mean()),
                             **{k: round(v, 5) for k, v in st.items() if isinstance(v, float)},
                             "ppo_steps": st["ppo_steps"], "kl_stopped": st["kl_stopped"],
                             "lr": round(sched["lr"], 8), "entropy_coef": round(sched["entropy_coef"], 8),
                             "entropy_floor": round(floor, 5), "kl_stops": kl_stops, "floor_updates": floor_updates})
    return policy, rows


def same(a, b) -> bool:
    """Exact equality of nested state (dicts, lists, tensors, numbers)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def no_clock(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def fake_update_clock(monkeypatch) -> None:
    """Every update lasts exactly one second by rl2's clock, so ``wall_s`` is reproducible too."""
    monkeypatch.setattr(rl2, "time", types.SimpleNamespace(perf_counter=itertools.count().__next__, time=time.time))


def load(run_dir: Path) -> dict:
    return torch.load(run_dir / CHECKPOINT_NAME, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- the same run as the plain loop
@pytest.mark.parametrize("guards, log_every", [({}, 1), ({"target_kl": 2e-5, "entropy_floor": 1.0}, 2)],
                         ids=["plain", "guards-firing"])
def test_train_rl2_is_the_plain_ppo_loop_bit_for_bit(guards, log_every):
    cfg = tiny(**guards)
    ref, ref_rows = plain_ppo_loop(cfg, seed=3, log_every=log_every)
    policy, rows = train_rl2(cfg, seed=3, log_every=log_every)
    assert same(policy.state_dict(), ref.state_dict())
    assert no_clock(rows) == ref_rows
    assert [r["update"] for r in rows] == ([1, 2, 3, 4] if log_every == 1 else [1, 3, 4])
    assert list(rows[0]) == ["update", "trials_seen", "mean_total_reward", "wall_s", "policy_loss", "value_loss",
                             "entropy", "approx_kl", "floor_active", "ppo_steps", "kl_stopped", "lr",
                             "entropy_coef", "entropy_floor", "kl_stops", "floor_updates"]
    assert isinstance(rows[0]["ppo_steps"], int) and isinstance(rows[0]["kl_stopped"], bool)
    if guards:  # the counters are exercised, not zero throughout
        assert rows[-1]["kl_stops"] > 0 and rows[-1]["floor_updates"] > 0
    assert not same(policy.state_dict(), plain_ppo_loop(cfg, seed=4, log_every=1)[0].state_dict())


# ----------------------------------------------------------------------------- exact resume
def test_a_resumed_run_is_the_uninterrupted_run(tmp_path, monkeypatch):
    fake_update_clock(monkeypatch)
    cfg = lambda: tiny(updates=6, target_kl=2e-5, entropy_floor=1.0)  # the guard counters move too
    straight, straight_rows = train_rl2(cfg(), seed=1, log_every=2, run_dir=tmp_path / "a", checkpoint_every=2)
    _, part = train_rl2(cfg(), seed=1, log_every=2, run_dir=tmp_path / "b", checkpoint_every=2, stop_after=3)
    assert [r["update"] for r in part] == [1, 3] and load(tmp_path / "b")["step"] == 3
    torch.manual_seed(12345)  # whatever the global RNG did in between, the checkpoint restores it
    resumed, rows = train_rl2(cfg(), seed=1, log_every=2, run_dir=tmp_path / "b", checkpoint_every=2)
    assert same(resumed.state_dict(), straight.state_dict())
    assert rows == straight_rows  # wall_s too: the seconds so far are carried over with the counters
    a, b = load(tmp_path / "a"), load(tmp_path / "b")
    for part_name in ("model", "optimizer", "sampler", "history", "step", "fingerprint"):
        assert same(a[part_name], b[part_name]), part_name
    assert a["sampler"]["update"] == 6 and a["model"]["_extra_state"]["kl_stops"] == rows[-1]["kl_stops"]


# ----------------------------------------------------------------------------- another run's checkpoint
def test_a_checkpoint_of_another_config_or_loop_is_refused(tmp_path):
    train_rl2(tiny(), seed=2, run_dir=tmp_path, stop_after=1)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(ValueError, match=r"different run \(config\.gamma: 0\.99 -> 0\.9\).*delete"):
        train_rl2(tiny(gamma=0.9), seed=2, run_dir=tmp_path)
    with pytest.raises(ValueError, match=r"different run \(model\.hidden: 8 -> 16\)"):
        train_rl2(tiny(), seed=2, run_dir=tmp_path, policy=RL2Policy(1, 3, 16))
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before  # refused before anything was written
    # a checkpoint of the loop train_rl2 had before fit (other keys) is refused clearly, not with a KeyError
    old = tmp_path / "old"
    old.mkdir()
    torch.save({"policy": RL2Policy(1, 3, 8).state_dict(), "update": 2, "identity": "{}"}, old / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="not a checkpoint fit wrote"):
        train_rl2(tiny(), seed=2, run_dir=old)


# ----------------------------------------------------------------------------- time limit
def test_time_limit_stops_after_an_update_and_the_run_continues(tmp_path):
    ref, _ = train_rl2(tiny(), seed=6)
    _, rows = train_rl2(tiny(time_limit_s=0.0), seed=6, log_every=10, run_dir=tmp_path)
    assert [r["update"] for r in rows] == [1] and rows[-1]["stopped"] == "time_limit_s reached after 1 of 4 updates"
    _, rows = train_rl2(tiny(), seed=6, log_every=10, deadline=0.0)  # a deadline long past, the limit reads so
    assert rows[-1]["stopped"] == "time limit reached after 1 of 4 updates"
    assert load(tmp_path)["step"] == 1 and rows[-1]["lr"] == round(rl2_schedule(tiny(), 0)["lr"], 8)
    # the limit is no part of the run: without it, the same run_dir trains on to the uninterrupted run
    done, rows = train_rl2(tiny(), seed=6, log_every=10, run_dir=tmp_path)
    assert same(done.state_dict(), ref.state_dict()) and [r["update"] for r in rows] == [1, 4]
    assert all("stopped" not in r for r in rows)


def test_a_stop_file_stops_after_an_update_and_the_curve_says_it_was_requested(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "STOP").touch()
    _, rows = train_rl2(tiny(), seed=6, log_every=10, run_dir=tmp_path)
    assert [r["update"] for r in rows] == [1] and rows[-1]["stopped"] == "stop requested after 1 of 4 updates"
    assert not (tmp_path / "STOP").exists() and load(tmp_path)["step"] == 1  # consumed; the next call trains on


# ----------------------------------------------------------------------------- NaN guard
def test_a_nan_loss_stops_naming_the_last_good_checkpoint(tmp_path, monkeypatch):
    two, _ = train_rl2(tiny(), seed=7, stop_after=2)
    real = rl2.rl2_schedule
    monkeypatch.setattr(rl2, "rl2_schedule",  # a NaN entropy coefficient makes update 3's loss NaN
                        lambda cfg, u: {**real(cfg, u), "entropy_coef": float("nan")} if u == 2 else real(cfg, u))
    with pytest.raises(NonFiniteLossError,
                       match=r"^PPO loss is nan \(epoch 1, minibatch 1\) at step 3; training stopped\. The last good "
                             r"checkpoint is .*last\.pt \(step 2\)"):
        train_rl2(tiny(), seed=7, run_dir=tmp_path, checkpoint_every=1)
    state = load(tmp_path)
    assert state["step"] == 2  # the checkpoint after update 2 is kept, and it is the good run's
    assert same({k.removeprefix("policy."): v for k, v in state["model"].items() if k.startswith("policy.")},
                two.state_dict())
    with pytest.raises(NonFiniteLossError, match=r"at step 3; .*checkpoint was not written \(no run_dir\)"):
        train_rl2(tiny(), seed=7)


# ----------------------------------------------------------------------------- the hook, on its own
class _Counter:
    """A sampler whose batches are 1, 2, 3, ..."""

    def __init__(self):
        self.n = 0

    def sample(self):
        self.n += 1
        return self.n

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


class _OwnStep(TrainingHooks, nn.Module):
    """A learner that does its update itself: two optimizer steps per batch, a NaN at ``nan_at``."""

    def __init__(self, nan_at: int | None = None):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.nan_at, self.calls = nan_at, []
        self.device = torch.device("cpu")

    def meta_loss(self, batch):
        raise AssertionError("fit used its standard step although train_step did the update")

    def train_step(self, batch, optimizer, step):
        self.calls.append(("train_step", batch, step))
        if step == self.nan_at:
            raise NonFiniteLossError("my loss is nan")
        for _ in range(2):
            loss = (self.w - batch) ** 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.detach(), {"target": batch}

    def after_backward(self):
        self.calls.append("after_backward")

    def after_step(self):
        self.calls.append("after_step")


def test_fit_lets_a_learner_own_its_update(tmp_path):
    lrn = _OwnStep()
    opt = torch.optim.SGD(lrn.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=1.0)
    r = fit(lrn, _Counter(), 3, optimizer=opt, scheduler=sched, log_every=1, progress=False)
    # fit's backward hook is the learner's own business on its own step; after_step and the scheduler are fit's
    assert lrn.calls == [("train_step", 1, 1), "after_step", ("train_step", 2, 2), "after_step",
                         ("train_step", 3, 3), "after_step"]
    assert sched.last_epoch == 3 and float(lrn.w.detach()) == 3.0  # SGD lr 0.5 on (w - t)^2 lands on t in one step
    assert [h["target"] for h in r.history] == [1.0, 2.0, 3.0] and r.history[-1]["loss"] == 0.0
    # its NaN becomes fit's error, with the step and the last good checkpoint
    lrn = _OwnStep(nan_at=3)
    with pytest.raises(NonFiniteLossError, match=r"^my loss is nan at step 3; .*last\.pt \(step 2\)"):
        fit(lrn, _Counter(), 5, lr=0.5, run_dir=tmp_path, checkpoint_every=1, progress=False)
    assert load(tmp_path)["step"] == 2


# ----------------------------------------------------------------------------- the committed record
def test_the_committed_record_loads_and_scores_as_recorded():
    from mlcore.experiments.rl2_records import load_rl2
    from mlcore.rl.rl2 import evaluate_rl2

    policy, rec = load_rl2(RESULTS / "rl2_bandit_n10_k5.json", "cpu")  # trained and scored on the CPU
    assert type(policy) is RL2Policy
    res = evaluate_rl2(policy, rec.config["spec"], rec.metrics["trials"], rec.config["eval_seed"], "cpu")
    assert res["mean_total_reward"] == rec.metrics["mean_total_reward"] and res["ci95"] == rec.metrics["ci95"]
