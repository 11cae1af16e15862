"""fit/evaluate: exact resume, NaN guard, CIs, records."""
import json
import math
import statistics

import pytest
import torch

from mlcore.data import EpisodeSampler
from mlcore.engine import NonFiniteLossError, evaluate, fit
from mlcore.memory.protonet import ProtoNet
from mlcore.results import Record, atomic_torch_save, atomic_write_text, load_record, mean_ci95, save_record


def _sampler(classes, seed=0):
    return EpisodeSampler(classes, ways=5, shots=1, queries=2, batch_size=2, seed=seed)


def test_resume_is_exact(test_classes, tmp_path):
    torch.manual_seed(0)
    a = ProtoNet(hidden=16)
    b = ProtoNet(hidden=16)
    b.load_state_dict(a.state_dict())
    ra = fit(a, _sampler(test_classes), 12, lr=1e-3, lr_step=5, progress=False, log_every=4)
    # b: "crash" after 7 steps, then a fresh process (fresh objects) resumes from the checkpoint
    fit(b, _sampler(test_classes), 12, lr=1e-3, lr_step=5, run_dir=tmp_path, checkpoint_every=3, progress=False,
        log_every=4, stop_after=7)
    c = ProtoNet(hidden=16)
    torch.manual_seed(123)  # a different global RNG state must not matter: it is restored
    rc = fit(c, _sampler(test_classes, seed=0), 12, lr=1e-3, lr_step=5, run_dir=tmp_path, checkpoint_every=3,
             progress=False, log_every=4)
    assert rc.resumed_from == 7
    for (n, p), q in zip(a.state_dict().items(), c.state_dict().values()):
        assert torch.equal(p, q), n
    assert ra.history[-1]["loss"] == pytest.approx(rc.history[-1]["loss"], rel=0, abs=0)


class _Exploding(ProtoNet):
    def meta_loss(self, episodes):
        loss, stats = super().meta_loss(episodes)
        self.calls = getattr(self, "calls", 0) + 1
        return (loss * float("nan") if self.calls >= 4 else loss), stats


def test_nan_guard_stops_and_keeps_last_good_checkpoint(test_classes, tmp_path):
    m = _Exploding(hidden=8)
    with pytest.raises(NonFiniteLossError, match="step 4"):
        fit(m, _sampler(test_classes), 10, run_dir=tmp_path, checkpoint_every=2, progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_fit_rejects_bad_arguments(test_classes):
    with pytest.raises(ValueError, match="lr"):
        fit(ProtoNet(hidden=8), _sampler(test_classes), 3, lr=float("nan"), progress=False)
    with pytest.raises(ValueError, match="steps"):
        fit(ProtoNet(hidden=8), _sampler(test_classes), -1, progress=False)


class _KnownAccuracy:
    """A learner whose accuracy on the j-th episode it scores is (j mod 4) / 5 on 5-way, 3-query episodes.

    It answers right exactly for the queries whose label is below j mod 4 (3 queries per class), wrong for
    the others, so the per-episode accuracies are 0, 0.2, 0.4, 0.6, 0, 0.2, ... whatever the chunking.
    """

    def __init__(self):
        self.seen = 0

    def eval(self):
        return self

    def predict_batch(self, ep):
        y = ep.query_y
        k = (torch.arange(self.seen, self.seen + y.shape[0]) % 4)[:, None]
        self.seen += y.shape[0]
        pred = torch.where(y < k, y, (y + 1) % ep.ways)
        return torch.nn.functional.one_hot(pred, ep.ways).float()


def test_evaluate_returns_ci_over_fixed_episodes(test_classes):
    s = EpisodeSampler(test_classes, 5, 1, 3, seed=0)
    # known per-episode accuracies: mean 0.3, sample variance 20 x 0.05 / 19 = 1/19, CI 1.96 sqrt(1/19) / sqrt(20)
    r = evaluate(_KnownAccuracy(), s, episodes=20, seed=5, chunk=7)
    assert r["per_episode"] == pytest.approx([0.0, 0.2, 0.4, 0.6] * 5)
    assert r["episodes"] == 20 and r["accuracy"] == pytest.approx(0.3)
    assert r["ci95"] == pytest.approx(1.96 / math.sqrt(380))
    # a real learner: the same episodes whatever the chunk size, and its CI is 1.96 s / sqrt(n) over them
    m = ProtoNet(hidden=8)
    r1 = evaluate(m, s, episodes=20, seed=5, chunk=7)
    r2 = evaluate(m, s, episodes=20, seed=5, chunk=20)
    assert r1["per_episode"] == r2["per_episode"] and r1["episodes"] == 20
    assert r1["accuracy"] == pytest.approx(statistics.fmean(r1["per_episode"]))
    assert r1["ci95"] == pytest.approx(1.96 * statistics.stdev(r1["per_episode"]) / math.sqrt(20))
    assert r1["ci95"] > 0  # an untrained net's accuracy varies from episode to episode


def test_mean_ci95_formula():
    m, ci = mean_ci95([0.0, 1.0, 0.0, 1.0])
    assert m == 0.5
    assert ci == pytest.approx(1.96 * math.sqrt(1 / 3) / 2)
    # known numbers: 2, 4, 4, 4, 5, 5, 7, 9 have mean 5 and sample variance 32 / 7
    m, ci = mean_ci95(torch.tensor([[2.0, 4, 4, 4], [5, 5, 7, 9]]))  # any shape: the values are flattened
    assert m == 5.0 and ci == pytest.approx(1.96 * math.sqrt(32 / 7) / math.sqrt(8))
    m, ci = mean_ci95([0.25])  # one value: its mean, and no spread to measure
    assert m == 0.25 and math.isnan(ci)
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci95([])


def test_record_roundtrip(tmp_path):
    r = Record(name="x_omniglot_5w1s", method="protonet", dataset="omniglot", ways=5, shots=1, accuracy=0.9,
               ci95=0.01, config={"a": 1})
    p = save_record(r, tmp_path)
    assert json.loads(p.read_text())["accuracy"] == 0.9
    assert load_record(p).config == {"a": 1}
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="no record"):
        load_record(tmp_path / "missing.json")


def test_deadline_stops_training_like_a_shorter_run(test_classes, tmp_path):
    """A run stopped by its deadline keeps a checkpoint, says where it stopped, and equals ``steps=N``."""
    import time

    torch.manual_seed(0)
    a, b = ProtoNet(hidden=16), ProtoNet(hidden=16)
    b.load_state_dict(a.state_dict())
    ra = fit(a, _sampler(test_classes), 50, lr=1e-3, lr_step=5, run_dir=tmp_path, progress=False,
             deadline=time.time() - 1)  # already past: exactly one step runs
    assert ra.steps == 1 and "1 of 50" in ra.stopped
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 1
    rb = fit(b, _sampler(test_classes), 1, lr=1e-3, lr_step=5, progress=False)
    assert rb.stopped is None
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # no deadline: the same run directory resumes to the planned end
    rc = fit(a, _sampler(test_classes), 3, lr=1e-3, lr_step=5, run_dir=tmp_path, progress=False)
    assert rc.resumed_from == 1 and rc.steps == 3 and rc.stopped is None


class _Slow(ProtoNet):
    """Each training step takes at least 50 ms of wall time."""

    def meta_loss(self, episodes):
        import time

        time.sleep(0.05)
        return super().meta_loss(episodes)


def test_time_limit_is_an_argument_of_fit(test_classes, tmp_path):
    """``time_limit_s`` stops fit after the first step that ends past it; the stopped run equals ``steps=N``."""
    torch.manual_seed(0)
    a, b = _Slow(hidden=8), ProtoNet(hidden=8)
    b.load_state_dict(a.state_dict())
    r = fit(a, _sampler(test_classes), 1000, lr_step=5, progress=False, run_dir=tmp_path, time_limit_s=0.2)
    assert 2 <= r.steps < 1000 and r.stopped == f"time limit reached after {r.steps} of 1000 steps"
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == r.steps
    fit(b, _sampler(test_classes), r.steps, lr_step=5, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # 0 s: exactly one step; of two limits, the earlier one counts
    assert fit(ProtoNet(hidden=8), _sampler(test_classes), 5, progress=False, time_limit_s=0).steps == 1
    assert fit(ProtoNet(hidden=8), _sampler(test_classes), 5, progress=False, time_limit_s=1e6,
               deadline=0.0).steps == 1
    for bad in (-1, float("nan"), float("inf"), "10", True):
        with pytest.raises(ValueError, match="time_limit_s"):
            fit(ProtoNet(hidden=8), _sampler(test_classes), 2, progress=False, time_limit_s=bad)


def test_fit_reads_no_time_limit_from_the_environment(test_classes, monkeypatch):
    """The limit is an argument only: the environment variable the CLI once set is not read."""
    import os

    from mlcore import runtime

    monkeypatch.setenv("MLCORE_TRAIN_DEADLINE", "1.0")  # 1970: long past, were it read
    read = []
    real_get = os.environ.get
    monkeypatch.setattr(os.environ, "get", lambda k, *d: (read.append(k), real_get(k, *d))[1])
    r = fit(ProtoNet(hidden=8), _sampler(test_classes), 3, progress=False)
    assert r.steps == 3 and r.stopped is None
    assert not [k for k in read if "DEADLINE" in k or "TIME" in k], read
    assert not hasattr(runtime, "set_train_time_limit") and not hasattr(runtime, "train_deadline")


class _SmallMemory(ProtoNet):
    """Runs out of (pretend) device memory on batches of more than 8 episodes."""

    def predict_batch(self, ep):
        if ep.support_x.shape[0] > 8:
            raise torch.cuda.OutOfMemoryError("pretend: CUDA out of memory")
        return super().predict_batch(ep)


def test_evaluate_retries_smaller_chunks_on_the_same_episodes(test_classes):
    torch.manual_seed(0)
    small = _SmallMemory(hidden=8)
    plain = ProtoNet(hidden=8)
    plain.load_state_dict(small.state_dict())
    sampler = EpisodeSampler(test_classes, ways=5, shots=1, queries=3, batch_size=1, seed=0)
    a = evaluate(small, sampler, episodes=30, seed=5, chunk=30)
    b = evaluate(plain, sampler, episodes=30, seed=5, chunk=30)
    assert a["per_episode"] == b["per_episode"] and a["episodes"] == 30


def test_resume_checks_the_fingerprint(test_classes, tmp_path):
    """The same fingerprint resumes exactly; another run's checkpoint is refused with the differing key named."""
    from mlcore.engine import run_fingerprint

    fp = run_fingerprint({"lr": 1e-3, "steps": 12, "model": {"hidden": 16}}, method="protonet", seed=0)
    torch.manual_seed(0)
    a, b = ProtoNet(hidden=16), ProtoNet(hidden=16)
    b.load_state_dict(a.state_dict())
    fit(a, _sampler(test_classes), 6, lr=1e-3, progress=False)
    fit(b, _sampler(test_classes), 6, lr=1e-3, run_dir=tmp_path, progress=False, stop_after=4, fingerprint=fp)
    # a longer plan (steps is not part of the run's identity) still resumes
    longer = run_fingerprint({"lr": 1e-3, "steps": 40, "model": {"hidden": 16}}, method="protonet", seed=0)
    rb = fit(b, _sampler(test_classes), 6, lr=1e-3, run_dir=tmp_path, progress=False, fingerprint=longer)
    assert rb.resumed_from == 4 and rb.steps == 6
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # the checkpoint is at step 6 >= steps: a different config must not "train nothing" and look finished
    other = run_fingerprint({"lr": 1e-3, "steps": 12, "model": {"hidden": 32}}, method="protonet", seed=0)
    with pytest.raises(ValueError, match=r"different run \(recipe\.model\.hidden: 16 -> 32\).*delete"):
        fit(ProtoNet(hidden=16), _sampler(test_classes), 6, run_dir=tmp_path, progress=False, fingerprint=other)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        fit(ProtoNet(hidden=8), _sampler(test_classes), 1, progress=False, fingerprint={"f": object()})
    # rewording the recipe's deviations trains nothing: a checkpoint whose fingerprint still carries the old
    # prose (as checkpoints did before run_fingerprint left it out) resumes
    worded = {**fp, "recipe": {**fp["recipe"], "deviations": {"lr": "an older wording of why"}}}
    c = ProtoNet(hidden=16)
    c.load_state_dict(a.state_dict())
    fit(c, _sampler(test_classes), 2, lr=1e-3, run_dir=tmp_path / "worded", progress=False, fingerprint=worded)
    rc = fit(c, _sampler(test_classes), 3, lr=1e-3, run_dir=tmp_path / "worded", progress=False,
             fingerprint=run_fingerprint({"lr": 1e-3, "steps": 12, "model": {"hidden": 16},
                                          "deviations": {"lr": "a new wording"}}, method="protonet", seed=0))
    assert rc.resumed_from == 2 and rc.steps == 3
    # a schedule planned over the run (linear anneal) makes its length part of the run's identity
    assert "steps" not in fp["recipe"]
    assert run_fingerprint({"steps": 12, "lr_final": 0.0})["recipe"]["steps"] == 12


def test_a_speed_only_setting_does_not_orphan_a_run_but_another_extra_does(test_classes, tmp_path):
    """recipe.extra's channels_last changes the convolutions' memory layout, not what a step computes: a checkpoint
    written without it resumes with it (and back); any other extra setting is part of the run and is refused."""
    from mlcore.engine import run_fingerprint

    plain = run_fingerprint({"lr": 1e-3, "model": {"hidden": 8}, "extra": {}}, method="protonet", seed=0)
    nhwc = run_fingerprint({"lr": 1e-3, "model": {"hidden": 8}, "extra": {"channels_last": True}},
                           method="protonet", seed=0)
    net = ProtoNet(hidden=8)
    fit(net, _sampler(test_classes), 2, lr=1e-3, run_dir=tmp_path, progress=False, fingerprint=plain)
    r = fit(net.to(memory_format=torch.channels_last), _sampler(test_classes), 3, lr=1e-3, run_dir=tmp_path,
            progress=False, fingerprint=nhwc)
    assert r.resumed_from == 2 and r.steps == 3
    r = fit(net.to(memory_format=torch.contiguous_format), _sampler(test_classes), 4, lr=1e-3, run_dir=tmp_path,
            progress=False, fingerprint=plain)
    assert r.resumed_from == 3 and r.steps == 4
    other = run_fingerprint({"lr": 1e-3, "model": {"hidden": 8}, "extra": {"channels_last": True, "augment": 1}},
                            method="protonet", seed=0)
    with pytest.raises(ValueError, match=r"different run \(recipe\.extra(\.augment)?: "):
        fit(net, _sampler(test_classes), 5, lr=1e-3, run_dir=tmp_path, progress=False, fingerprint=other)


def test_checkpoint_without_fingerprint_resumes_with_a_warning(test_classes, tmp_path):
    fit(ProtoNet(hidden=8), _sampler(test_classes), 2, run_dir=tmp_path, progress=False)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["fingerprint"] is None
    with pytest.warns(UserWarning, match="no fingerprint"):
        r = fit(ProtoNet(hidden=8), _sampler(test_classes), 3, run_dir=tmp_path, progress=False, fingerprint={"a": 1})
    assert r.resumed_from == 2
    # ... and from then on the checkpoint carries it
    assert json.loads(torch.load(tmp_path / "last.pt", weights_only=True)["fingerprint"]) == {"a": 1}


def test_checkpoint_loads_with_weights_only(test_classes, tmp_path):
    """Every part of a training checkpoint (optimizer, scheduler, sampler, RNG, history, fingerprint) is plain data."""
    m = ProtoNet(hidden=8)
    fit(m, _sampler(test_classes), 4, lr_step=2, run_dir=tmp_path, progress=False, log_every=2,
        val_fn=lambda lrn: {"accuracy": 0.5}, val_every=2, fingerprint={"recipe": {"lr": 1e-3}, "seed": 0})
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["step"] == 4 and state["scheduler"]["last_epoch"] == 4
    assert state["history"][-1]["val_accuracy"] == 0.5 and isinstance(state["sampler"]["generator"], torch.Tensor)
    # SGD with a LambdaLR linear anneal (the Reptile recipe's schedule) saves plain data too, and resumes
    m = ProtoNet(hidden=8)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 8)
    fit(m, _sampler(test_classes), 3, optimizer=opt, scheduler=sched, run_dir=tmp_path / "sgd", progress=False)
    opt2 = torch.optim.SGD(m.parameters(), lr=0.1)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1 - s / 8)
    r = fit(m, _sampler(test_classes), 4, optimizer=opt2, scheduler=sched2, run_dir=tmp_path / "sgd", progress=False)
    assert r.resumed_from == 3 and sched2.last_epoch == 4


def test_results_dir_comes_from_argument_env_cwd_then_package(tmp_path, monkeypatch):
    from mlcore import results

    monkeypatch.delenv(results.RESULTS_ENV, raising=False)
    book = tmp_path / "book"
    save_record(Record(name="r", method="protonet", dataset="omniglot"), book / "results")
    (tmp_path / "book" / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "book" / "benchmarks" / "results" / "t.json").write_text('{"timeline": []}')  # not a record
    monkeypatch.chdir(book / "benchmarks")
    assert results.results_dir() == (book / "results").resolve()  # walked up past benchmarks/results
    assert load_record("r").name == "r"
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path / "elsewhere"))
    assert results.results_dir() == tmp_path / "elsewhere"
    assert results.results_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv(results.RESULTS_ENV)
    monkeypatch.chdir(tmp_path)  # no results/ with records above: the package's own (editable install)
    empty = tmp_path / "results"
    empty.mkdir()
    assert results.results_dir() == results._PACKAGE_RESULTS
    assert isinstance(results.RESULTS_DIR, type(tmp_path))


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("pretend: the disk filled up mid-write")


def test_atomic_writes_leave_no_partial_file_or_temp(tmp_path, monkeypatch):
    import os

    from mlcore import results

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(results.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    target = tmp_path / "ck.pt"
    with pytest.raises(RuntimeError, match="mid-write"):  # big tensor written, then the pickle fails
        atomic_torch_save({"w": torch.zeros(100_000), "z": _Unpicklable()}, target)
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(target, "old")
    assert synced and oct(target.stat().st_mode & 0o777) == "0o644"

    def half(f):
        f.write(b"half of the new text")
        raise OSError("pretend: no space left on device")

    with pytest.raises(OSError, match="no space"):
        results.atomic_write(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


_LOADED_CODE = []


def _side_effect():
    _LOADED_CODE.append("ran")
    return {}


class _Payload:
    def __reduce__(self):
        return _side_effect, ()


def test_resume_refuses_a_checkpoint_that_would_run_code(test_classes, tmp_path):
    """fit loads its checkpoint with weights_only=True: a pickled callable is rejected, never called."""
    import pickle

    torch.save({"model": _Payload(), "step": 1}, tmp_path / "last.pt")
    with pytest.raises(pickle.UnpicklingError):
        fit(ProtoNet(hidden=8), _sampler(test_classes), 2, run_dir=tmp_path, progress=False)
    assert _LOADED_CODE == []


def test_bfloat16_precision_runs_the_encoder_in_bf16_and_keeps_float32_weights(test_classes):
    torch.manual_seed(0)
    a, b = ProtoNet(hidden=16), ProtoNet(hidden=16)
    b.load_state_dict(a.state_dict())
    seen = []
    conv = next(m for m in b.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    ra = fit(a, _sampler(test_classes), 20, lr=1e-3, progress=False, log_every=20)
    rb = fit(b, _sampler(test_classes), 20, lr=1e-3, progress=False, log_every=20, precision="bfloat16")
    assert set(seen) == {torch.bfloat16}  # autocast reached the convolutions...
    assert all(p.dtype == torch.float32 for p in b.parameters())  # ...not the weights or their Adam state
    # the same episodes and start: the mixed-precision run follows the float32 one closely, not exactly
    assert rb.history[-1]["loss"] == pytest.approx(ra.history[-1]["loss"], rel=0.1)
    assert rb.history[-1]["loss"] != ra.history[-1]["loss"]
    assert max((p - q).abs().max() for p, q in zip(a.parameters(), b.parameters())) > 0


def test_fit_refuses_a_precision_it_cannot_apply(test_classes):
    with pytest.raises(ValueError, match=r"precision must be one of \('float32', 'bfloat16'\), got 'float16'"):
        fit(ProtoNet(hidden=8), _sampler(test_classes), 1, progress=False, precision="float16")

    class OwnUpdate(ProtoNet):
        def train_step(self, batch, optimizer, step):
            raise AssertionError("not reached")

    with pytest.raises(ValueError, match="OwnUpdate does its own update"):
        fit(OwnUpdate(hidden=8), _sampler(test_classes), 1, progress=False, precision="bfloat16")


def test_recipe_fingerprint_ignores_how_a_model_is_scored():
    from mlcore.learner import Recipe
    from mlcore.runs import recipe_fingerprint

    base = Recipe(5, 1, steps=12, lr=1e-3, test_ways=5)
    assert recipe_fingerprint(base, "protonet", 0) == recipe_fingerprint(Recipe(5, 1, steps=12, lr=1e-3, test_ways=20),
                                                                         "protonet", 0)
    assert recipe_fingerprint(base, "protonet", 0) != recipe_fingerprint(Recipe(5, 1, steps=12, lr=3e-3, test_ways=5),
                                                                         "protonet", 0)
    assert recipe_fingerprint(base, "protonet", 0) != recipe_fingerprint(base, "protonet", 1)
    assert "test_ways" not in recipe_fingerprint(base, "protonet", 0)["recipe"]


def test_a_stop_file_ends_training_with_a_checkpoint_and_is_consumed(test_classes, tmp_path):
    """``touch run_dir/STOP``: the run stops after the step that sees it, checkpointed, and the next call resumes."""
    from mlcore.engine import STOP_FILE

    torch.manual_seed(0)
    a, b = ProtoNet(hidden=16), ProtoNet(hidden=16)
    b.load_state_dict(a.state_dict())
    (tmp_path / STOP_FILE).touch()
    r = fit(a, _sampler(test_classes), 50, lr=1e-3, lr_step=5, run_dir=tmp_path, progress=False)
    assert r.steps == 1 and r.stopped == "stop requested after 1 of 50 steps"
    assert not (tmp_path / STOP_FILE).exists()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 1
    # resumed, it trains on to the end; the same two steps uninterrupted give the same weights
    r2 = fit(a, _sampler(test_classes), 2, lr=1e-3, lr_step=5, run_dir=tmp_path, progress=False)
    assert r2.resumed_from == 1 and r2.steps == 2 and r2.stopped is None
    fit(b, _sampler(test_classes), 2, lr=1e-3, lr_step=5, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
