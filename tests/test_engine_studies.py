"""The sinusoid study trains through :func:`mlcore.engine.fit` (issue 16) and still
gives the very weights its hand-written loops gave.

The committed records (``results/sinusoid*.json``) came from
those loops, and the book's chapters train these functions live, so bitwise equality is the criterion:
each ``_old_*`` function below is the loop as it stood before the move (copied from git, kept here as an
independent reference), and every test runs it and the library function on small settings and asserts
``torch.equal`` on every parameter and buffer, and the same history values.
"""
import pytest
import torch
import torch.nn.functional as F

from mlcore.data.sinusoid import SinusoidSampler
from mlcore.engine import fit
from mlcore.experiments import sinusoid as S
from mlcore.optimization.maml import batched_query_loss
from mlcore.runtime import get_device, seed_everything


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Every parameter and buffer equal bit for bit, under the same names."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ----------------------------------------------------------------------------- sinusoid: the old loops
def _old_train_maml(steps, meta_batch=25, shots=10, inner_lr=0.01, inner_steps=1, first_order=False, lr=1e-3,
                    seed=0, device=None, log_every=1000):
    device = get_device(device)
    seed_everything(seed)
    model = S.make_regressor().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sampler = SinusoidSampler(shots=shots, queries=shots, batch_size=meta_batch, seed=seed, device=device)
    history, running = [], 0.0
    for step in range(1, steps + 1):
        t = sampler.sample()
        losses, _ = batched_query_loss(model, dict(model.named_parameters()), t.support_x, t.support_y,
                                       t.query_x, t.query_y, F.mse_loss, [inner_lr] * inner_steps, first_order)
        loss = losses.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(loss.detach())
        if step % log_every == 0 or step == steps:
            history.append({"step": step, "loss": running / (log_every if step % log_every == 0 else
                                                             step % log_every)})
            running = 0.0
    return model, history


def _old_train_pretrained(steps, meta_batch=25, shots=10, lr=1e-3, seed=0, device=None):
    device = get_device(device)
    seed_everything(seed)
    model = S.make_regressor().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sampler = SinusoidSampler(shots=shots, queries=shots, batch_size=meta_batch, seed=seed + 1, device=device)
    for _ in range(steps):
        t = sampler.sample()
        x = torch.cat([t.support_x, t.query_x], 1)
        y = torch.cat([t.support_y, t.query_y], 1)
        loss = F.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


# ----------------------------------------------------------------------------- sinusoid: the tests
@pytest.mark.parametrize("kw", [
    {"steps": 7, "meta_batch": 4, "shots": 5, "log_every": 3, "seed": 1},  # the last row is a partial mean
    {"steps": 6, "meta_batch": 3, "shots": 4, "inner_steps": 2, "first_order": True, "lr": 3e-3, "log_every": 2},
    {"steps": 0, "meta_batch": 3, "shots": 4},
])
def test_train_maml_equals_the_old_loop(kw):
    old, old_hist = _old_train_maml(device="cpu", **kw)
    new, new_hist = S.train_maml(device="cpu", **kw)
    assert_same_state(old, new)
    assert new_hist == old_hist


def test_train_maml_at_the_notebooks_settings_equals_the_old_loop():
    """Chapter 4's live call (``log_every = steps // 4``) and chapter 7's (exact and first order), shortened."""
    for kw in ({"log_every": 5}, {"first_order": True, "seed": 0}, {"first_order": False, "seed": 0}):
        old, old_hist = _old_train_maml(20, **kw)
        new, new_hist = S.train_maml(20, **kw)
        assert_same_state(old, new)
        assert new_hist == old_hist


@pytest.mark.parametrize("kw", [{"steps": 5, "meta_batch": 4, "shots": 5, "seed": 2}, {"steps": 3, "lr": 1e-2}])
def test_train_pretrained_equals_the_old_loop(kw):
    assert_same_state(_old_train_pretrained(device="cpu", **kw), S.train_pretrained(device="cpu", **kw))


def test_train_maml_stopped_by_its_time_limit_resumes_to_the_straight_run(tmp_path):
    """``time_limit_s=0`` stops after one step and checkpoints; each later call resumes one more step."""
    kw = {"meta_batch": 3, "shots": 4, "log_every": 2, "seed": 4}
    straight, straight_hist = S.train_maml(5, **kw)
    for done in range(1, 6):
        model, hist = S.train_maml(5, run_dir=tmp_path, time_limit_s=0, **kw)
        assert hist[-1]["step"] == done
    assert_same_state(straight, model)
    # every stop logs the steps since the previous row, here one each: their means are the straight run's rows
    assert [h["step"] for h in hist] == [1, 2, 3, 4, 5] and [h["step"] for h in straight_hist] == [2, 4, 5]
    losses = [h["loss"] for h in hist]
    assert [h["loss"] for h in straight_hist] == pytest.approx([(losses[0] + losses[1]) / 2,
                                                               (losses[2] + losses[3]) / 2, losses[4]], rel=1e-12)
    with pytest.raises(ValueError, match="different run"):  # another recipe's checkpoint is refused
        S.train_maml(5, run_dir=tmp_path, **{**kw, "shots": 5})


def test_sinusoid_maml_learner_resumes_exactly_after_stop_after(tmp_path):
    """fit(stop_after=3) then a resumed fit from run_dir: the weights of the straight 8-step run."""
    def build():
        seed_everything(0)
        learner = S.SinusoidMAML(S.make_regressor(), inner_lr=0.01, inner_steps=1, first_order=False)
        return learner, SinusoidSampler(shots=4, queries=4, batch_size=3, seed=0)

    straight, sampler = build()
    fit(straight, sampler, 8, progress=False, log_every=4)
    first, sampler = build()
    fit(first, sampler, 8, progress=False, log_every=4, run_dir=tmp_path, stop_after=3)
    resumed, sampler = build()
    fr = fit(resumed, sampler, 8, progress=False, log_every=4, run_dir=tmp_path)
    assert fr.resumed_from == 3
    assert_same_state(straight, resumed)
