"""mlcore.experiments.protocol_scores on a small real checkpoint: the book's protocol re-scores the record's own
episodes, reuses the record's score only where the record kept its per-episode accuracies, and writes the scores
into the record."""
from __future__ import annotations

import json

import pytest

import mlcore
from mlcore.experiments.protocol_scores import protocol_scores
from mlcore.runs import train_and_record


@pytest.fixture(scope="module")
def tiny_protonet(tmp_path_factory):
    """A ProtoNet trained for 3 steps and scored on the book's 1,000 test episodes (real Omniglot)."""
    out = tmp_path_factory.mktemp("protonet")
    return train_and_record("protonet", 5, 1, budget="smoke", out_dir=out, progress=False, test_episodes=1000,
                            name="protonet_tiny", recipe_overrides={"steps": 3})


def test_book_protocol_reuses_a_score_that_kept_its_episodes(tiny_protonet):
    rec = mlcore.load_record(tiny_protonet)
    out = protocol_scores(tiny_protonet)
    assert "paper" not in out or out["paper"]["protocol"] != out["book"]["protocol"]
    book = out["book"]
    assert book["reused_record_score"] is True
    assert book["accuracy"] == rec.accuracy and len(book["per_episode"]) == 1000
    written = json.loads(tiny_protonet.read_text())["metrics"]["protocols"]
    assert written["book"]["accuracy"] == rec.accuracy


def test_a_record_without_per_episode_accuracies_is_scored_again_and_gets_the_same_number(tiny_protonet):
    """Older records kept only their mean: paired tests need the episodes, so the book's protocol scores anew."""
    raw = json.loads(tiny_protonet.read_text())
    accuracy = raw["accuracy"]
    raw["metrics"].pop("per_episode", None)
    raw["metrics"].pop("protocols", None)
    tiny_protonet.write_text(json.dumps(raw))
    book = protocol_scores(tiny_protonet)["book"]
    assert "reused_record_score" not in book and "git_commit" in book
    assert len(book["per_episode"]) == 1000
    assert book["accuracy"] == pytest.approx(accuracy, abs=1e-6)  # the same seeded episodes, the same weights
    assert json.loads(tiny_protonet.read_text())["metrics"]["protocols"]["book"]["per_episode"] == \
        book["per_episode"]


def test_a_record_keeps_the_training_curve_of_its_whole_run(tiny_protonet):
    curve = json.loads(tiny_protonet.read_text())["metrics"]["train_curve"]
    assert curve and curve[-1]["step"] == 3 and "loss" not in curve[-1]


def test_thin_curve_keeps_the_last_row_and_at_most_about_the_asked_number():
    from mlcore.runs import thin_curve

    rows = [{"step": s, "loss": 1.0 / s, "acc": s / 1001} for s in range(1, 1001)]
    thin = thin_curve(rows, most=200)
    assert len(thin) <= 201 and thin[0]["step"] == 1 and thin[-1]["step"] == 1000
    assert all(set(r) == {"step", "acc"} for r in thin)
