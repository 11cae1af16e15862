"""The measuring tools of chapter 8: memory accounting, checkpointing = plain gradient, vmap limits, determinism."""
import pytest
import torch
import torch.nn.functional as F

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


def test_checkpoint_variants_recorded():
    out = E.checkpoint_compatibility()
    assert out["use_reentrant=True"] == "ok"
    assert "saved tensor hooks" in out["use_reentrant=False"]  # the torch.func limitation the chapter names


def test_vmap_limits_each_raise():
    out = E.vmap_limits()
    assert len(out) == 4
    assert all(v["error"] for v in out.values()), out


def test_time_interleaved_reports_every_variant():
    t = E.time_interleaved({"a": lambda: torch.ones(10).sum(), "b": lambda: torch.ones(100).sum()}, repeats=3)
    assert set(t) == {"a", "b"} and all(v["min_ms"] <= v["median_ms"] for v in t.values())


def test_autocast_protonet_reports_accuracy_and_agreement(test_classes):
    from mlcore.data import EpisodeSampler
    from mlcore.memory.protonet import ProtoNet

    torch.manual_seed(0)
    learner = ProtoNet(hidden=8)
    eps = list(EpisodeSampler(test_classes, 5, 1, 3, batch_size=4, seed=0).fixed_set(8, seed=0, chunk=4))
    r = E.autocast_protonet(learner, eps, "cpu", "bf16", repeats=1)
    with torch.no_grad():
        direct = torch.cat([(learner.predict_batch(e).argmax(-1) == e.query_y).float().flatten() for e in eps])
    assert r["accuracy_fp32"] == pytest.approx(float(direct.mean()))
    assert 0.0 <= r["accuracy_bf16"] <= 1.0 and 0.0 <= r["prediction_agreement"] <= 1.0
    assert r["max_rel_logit_diff"] > 0  # bf16 really ran: the logits changed


def test_same_seed_twice_is_bit_identical_and_another_seed_is_not():
    a = E.train_fingerprint(steps=2, seed=0)
    b = E.train_fingerprint(steps=2, seed=0)
    assert E.weights_diff(a, b) == {"bit_identical": True, "max_abs_diff": 0.0}
    assert E.fingerprint_digest(a) == E.fingerprint_digest(b)
    assert not E.weights_diff(a, E.train_fingerprint(steps=2, seed=1))["bit_identical"]
