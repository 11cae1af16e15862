"""The measuring tools of chapter 8: memory accounting, checkpointing = plain gradient, vmap limits, determinism."""
import pytest
import torch

from mlcore.book import engineering as E


def test_graph_saved_bytes_counts_what_backward_needs():
    a = torch.randn(1000, requires_grad=True)
    assert E.graph_saved_bytes(a.exp()) == 1000 * 4  # exp saves its result, float32
    b = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    y = (b * b).sum()  # mul saves both inputs: the same storage, counted once
    assert E.graph_saved_bytes(y) == 1000 * 8


def tiny_maml(meta_batch=2):
    learner, ep = E.maml_setup(ways=3, shots=1, queries=2, meta_batch=meta_batch, hidden=4, image_size=10)
    return learner.double(), type(ep)(ep.support_x.double(), ep.support_y, ep.query_x.double(), ep.query_y,
                                      ep.ways, ep.shots, ep.queries)


def test_second_order_graph_grows_with_inner_steps_and_exceeds_first_order():
    learner, ep = tiny_maml()
    saved = {(s, fo): E.graph_saved_bytes(E.maml_meta_step(learner, ep, inner_steps=s, first_order=fo)())
             for s in (1, 2, 3) for fo in (False, True)}
    assert saved[(1, False)] < saved[(2, False)] < saved[(3, False)]
    for s in (1, 2, 3):
        assert saved[(s, True)] < saved[(s, False)]


def test_checkpointed_meta_loss_gives_the_same_gradient_and_keeps_less():
    learner, ep = tiny_maml(meta_batch=3)
    grads = {}
    for ck in (False, True):
        learner.zero_grad(set_to_none=True)
        loss = E.maml_meta_step(learner, ep, inner_steps=2, checkpoint=ck)()
        if ck:
            assert E.graph_saved_bytes(loss) < E.graph_saved_bytes(E.maml_meta_step(learner, ep, inner_steps=2)())
        loss.backward()
        grads[ck] = torch.cat([p.grad.flatten() for p in learner.net.parameters()])
    assert torch.allclose(grads[True], grads[False], rtol=1e-10, atol=1e-12)


def test_checkpoint_compatibility_records_each_variant(monkeypatch):
    """Each variant is tried on a real MAML task loss: 'ok', or the exception's type and message on one line.

    The re-entrant variant is the one ``checkpointed_meta_loss`` uses, so it must work; a failure is recorded
    (type, message with whitespace collapsed, cut at 300 characters), not raised.
    """
    out = E.checkpoint_compatibility()
    assert set(out) == {"use_reentrant=False", "use_reentrant=True"} and out["use_reentrant=True"] == "ok"
    import torch.utils.checkpoint as ck

    real = ck.checkpoint

    def refuse_non_reentrant(fn, *args, use_reentrant, **kw):
        if not use_reentrant:
            raise RuntimeError("first line\n   second   line " + "x" * 400)
        return real(fn, *args, use_reentrant=use_reentrant, **kw)

    monkeypatch.setattr(ck, "checkpoint", refuse_non_reentrant)
    out = E.checkpoint_compatibility()
    assert out["use_reentrant=True"] == "ok"
    assert out["use_reentrant=False"] == "RuntimeError: " + ("first line second line " + "x" * 400)[:300]


def test_vmap_limits_name_a_workaround_for_each_and_the_workarounds_batch():
    out = E.vmap_limits()
    assert len(out) == 4
    for name, v in out.items():
        assert v["workaround"], name
        assert v["error"] and "\n" not in v["error"] and v["error"].split(": ")[0].isidentifier(), (name, v)
    # the workarounds the chapter prints give, under vmap, what a loop over the batch gives
    from torch.func import vmap

    xs = torch.randn(4, 3)
    for batched, one in [(lambda x: x * x.sum(), lambda x: x * x.sum().item()),
                         (lambda x: torch.where(x.sum() > 0, x, -x), lambda x: x if x.sum() > 0 else -x),
                         (lambda x: torch.zeros(3) + x, lambda x: torch.zeros(3).add_(x))]:
        assert torch.equal(vmap(batched)(xs), torch.stack([one(x) for x in xs]))


def test_time_interleaved_alternates_variants_and_reports_their_own_times(monkeypatch):
    """On a fake clock, each variant takes a known time per call: A, B, A, B, ... after the warm-up calls."""
    clock = [0.0]
    monkeypatch.setattr(E, "time", type("FakeTime", (), {"perf_counter": staticmethod(lambda: clock[0])}))
    calls = []

    def variant(name, ms):
        def run():
            calls.append(name)
            clock[0] += ms.pop(0) / 1e3
        return run

    a_ms, b_ms = [9.0, 1.0, 3.0, 2.0], [50.0, 10.0, 30.0, 20.0]  # first entry: the warm-up call
    t = E.time_interleaved({"a": variant("a", a_ms), "b": variant("b", b_ms)}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert t["a"] == {"median_ms": pytest.approx(2.0), "min_ms": pytest.approx(1.0), "repeats": 3}
    assert t["b"] == {"median_ms": pytest.approx(20.0), "min_ms": pytest.approx(10.0), "repeats": 3}


def test_autocast_protonet_reports_accuracy_and_agreement(test_classes):
    """On a real ProtoNet, every number equals the same quantity computed here with torch.autocast directly."""
    from mlcore.data import EpisodeSampler
    from mlcore.memory.protonet import ProtoNet

    torch.manual_seed(0)
    learner = ProtoNet(hidden=8)
    eps = list(EpisodeSampler(test_classes, 5, 1, 3, batch_size=4, seed=0).fixed_set(8, seed=0, chunk=4))
    r = E.autocast_protonet(learner, eps, "cpu", "bf16", repeats=1)
    with torch.no_grad():
        fp32 = torch.cat([learner.predict_batch(e).float() for e in eps])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = torch.cat([learner.predict_batch(e).float() for e in eps])
    y = torch.cat([e.query_y for e in eps])
    assert r["episodes"] == 8 and r["dtype"] == "bf16"
    assert r["accuracy_fp32"] == pytest.approx(float((fp32.argmax(-1) == y).float().mean()))
    assert r["accuracy_bf16"] == pytest.approx(float((bf16.argmax(-1) == y).float().mean()))
    assert r["prediction_agreement"] == pytest.approx(float((fp32.argmax(-1) == bf16.argmax(-1)).float().mean()))
    assert r["max_rel_logit_diff"] == pytest.approx(float((fp32 - bf16).abs().max() / fp32.abs().max()))
    assert r["max_rel_logit_diff"] > 0  # bf16 really ran: the logits changed
    assert r["speedup"] == pytest.approx(r["time_fp32"]["median_ms"] / r["time_bf16"]["median_ms"])


class _WrongUnderAutocast(torch.nn.Module):
    """Right on every query in fp32; under autocast, wrong on the queries of class 0 (1 in ``ways``)."""

    def predict_batch(self, ep):
        y = ep.query_y
        if torch.is_autocast_enabled("cpu"):
            y = torch.where(y == 0, 1, y)
        return torch.nn.functional.one_hot(y, ep.ways).float()


def test_autocast_report_on_a_planted_difference(test_classes):
    """A planted low-precision error of known size: 1 query in 5 answered wrongly under autocast only, so
    fp32 accuracy 1, bf16 accuracy 4/5, agreement 4/5, and the logits (0 or 1) differ by 1 = their scale."""
    from mlcore.data import EpisodeSampler

    eps = list(EpisodeSampler(test_classes, 5, 1, 3, batch_size=4, seed=0).fixed_set(8, seed=0, chunk=4))
    r = E.autocast_protonet(_WrongUnderAutocast(), eps, "cpu", "bf16", repeats=1)
    assert r["accuracy_fp32"] == 1.0
    assert r["accuracy_bf16"] == pytest.approx(0.8) and r["prediction_agreement"] == pytest.approx(0.8)
    assert r["max_rel_logit_diff"] == 1.0


def test_same_seed_twice_is_bit_identical_and_another_seed_is_not():
    a = E.train_fingerprint(steps=2, seed=0)
    b = E.train_fingerprint(steps=2, seed=0)
    assert E.weights_diff(a, b) == {"bit_identical": True, "max_abs_diff": 0.0}
    assert E.fingerprint_digest(a) == E.fingerprint_digest(b)
    assert not E.weights_diff(a, E.train_fingerprint(steps=2, seed=1))["bit_identical"]


def test_autocast_training_step_times_all_four_variants_on_the_same_episode():
    r = E.autocast_training_step(ways=5, shots=1, queries=2, repeats=1)
    names = ("float32", "bfloat16", "float32_channels_last", "bfloat16_channels_last")
    assert r["images"] == 15 and all(r[n]["repeats"] == 1 and r[n]["median_ms"] > 0 for n in names)
    assert r["speedup_bfloat16"] == pytest.approx(r["float32"]["median_ms"] / r["bfloat16"]["median_ms"])
    assert "speedup_float32" not in r
