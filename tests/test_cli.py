"""The CLI contract later chapters rely on: train -> record -> eval / mlcore.load."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import mlcore


@pytest.fixture(scope="module")
def smoke_record(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec")
    cmd = [sys.executable, "-m", "mlcore", "train", "protonet", "--ways", "5", "--shots", "1", "--budget", "smoke",
           "--out", str(out), "--steps", "20"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=out, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    path = json.loads(res.stdout.strip().splitlines()[-1])["record"]
    return path


def test_train_writes_a_complete_record(smoke_record):
    rec = mlcore.load_record(smoke_record)
    assert rec.method == "protonet" and rec.ways == 5 and rec.shots == 1 and rec.budget == "smoke"
    # 20 smoke steps reach about 0.63 on 5-way 1-shot (chance 0.2): a floor well above chance, below that
    assert rec.episodes == 100 and rec.accuracy > 0.45 and 0 < rec.ci95 < 0.1
    assert len(rec.metrics["per_episode"]) == 100
    assert abs(sum(rec.metrics["per_episode"]) / 100 - rec.accuracy) < 1e-4  # rounded to 4 places per episode
    for key in ("hardware", "config", "git_commit", "wall_s", "checkpoint", "seed"):
        assert getattr(rec, key) not in (None, "", {}), key
    assert rec.config["recipe"]["steps"] == 20


def test_eval_rescored_on_fresh_episodes(smoke_record, capsys):
    """`eval` on the record's own test episodes (its eval seed and count) gives the record's number exactly;
    on fresh episodes the trained net is well above chance (1/5) and the line names the record it scored."""
    from mlcore import cli

    rec = mlcore.load_record(smoke_record)
    assert cli.main(["eval", smoke_record, "--seed", str(rec.config["eval_seed"]),
                     "--episodes", str(rec.episodes)]) == 0
    same = json.loads(capsys.readouterr().out.strip())
    assert (same["accuracy"], same["ci95"], same["episodes"]) == (rec.accuracy, rec.ci95, rec.episodes)
    assert (same["reference_accuracy"], same["reference_ci95"]) == (rec.accuracy, rec.ci95)
    res = subprocess.run([sys.executable, "-m", "mlcore", "eval", smoke_record, "--seed", "123", "--episodes", "50"],
                         capture_output=True, text=True, check=False, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip())
    assert out["record"] == rec.name and out["seed"] == 123 and out["episodes"] == 50
    assert (out["ways"], out["shots"]) == (5, 1)
    assert out["accuracy"] > 0.2 + 2 * out["ci95"], out
    assert out["accuracy"] != rec.accuracy  # other episodes


def test_load_predicts_on_preprocessed_raw_images(smoke_record):
    learner = mlcore.load(smoke_record)
    raw = mlcore.data.load_raw()
    rows = np.array([0, 20, 40, 60, 80, 1, 21, 41, 61, 81])  # drawer 1 and 2 of five characters
    x = mlcore.preprocess(raw.unpack(rows))
    logits = learner.predict(x[:5], torch.arange(5), x[5:])
    assert logits.shape == (5, 5) and torch.isfinite(logits).all()
    # ProtoNet's logits are minus squared distances to the prototypes: a support image asked as a query is at
    # distance 0 from its own (1-shot) prototype, so it gets its own label, whatever that label is
    own = learner.predict(x[:5], torch.arange(5), x[:5])
    assert own.argmax(-1).tolist() == [0, 1, 2, 3, 4] and torch.allclose(own.diagonal(), torch.zeros(5), atol=1e-3)
    perm = torch.tensor([3, 0, 4, 1, 2])  # relabelling the support set permutes the columns accordingly
    relabelled = learner.predict(x[:5], perm, x[5:])
    assert torch.allclose(relabelled[:, perm], logits, atol=1e-4)


def test_cli_rejects_bad_arguments():
    res = subprocess.run([sys.executable, "-m", "mlcore", "train", "protonet", "--ways", "0", "--shots", "1"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "positive integer" in res.stderr
    res = subprocess.run([sys.executable, "-m", "mlcore", "train", "nosuch", "--ways", "5", "--shots", "1"],
                         capture_output=True, text=True, check=False)
    # a user's mistake is one line, "error: ...", exit status 2: no traceback
    assert res.returncode == 2 and res.stderr.startswith("error: unknown method 'nosuch'")
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = subprocess.run([sys.executable, "-m", "mlcore", "reproduce", "--only", "nosuch"], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 2 and res.stderr.startswith("error: unknown reproduction")
    res = subprocess.run([sys.executable, "-m", "mlcore", "eval", "results/nosuch.json"], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 2 and res.stderr.startswith("error: no record at") and "Traceback" not in res.stderr


def test_shared_training_scores_the_same_weights(tmp_path, monkeypatch):
    """ProtoNet's 20-way record re-uses the 5-way record's training (same recipe but the test fields)."""
    from mlcore.runs import same_training, train_and_record

    monkeypatch.chdir(tmp_path)
    kw = {"budget": "smoke", "out_dir": tmp_path, "progress": False, "test_episodes": 10,
          "recipe_overrides": {"steps": 3}}
    five = mlcore.load_record(train_and_record("protonet", 5, 1, name="p5", **kw))
    twenty = mlcore.load_record(train_and_record("protonet", 20, 1, name="p20", shared_training="p5", **kw))
    assert twenty.config["weights_from"] == "p5" and twenty.ways == 20 and five.ways == 5
    assert twenty.config["training_hardware"] == five.hardware
    assert same_training(five.config["recipe"], twenty.config["recipe"])
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("p5", "p20"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert twenty.train_wall_s == five.train_wall_s
    # a different training recipe (more steps) is not shared: it trains, and says nothing about p5
    kw["recipe_overrides"] = {"steps": 4}
    other = mlcore.load_record(train_and_record("protonet", 20, 1, name="p20b", shared_training="p5", **kw))
    assert "weights_from" not in other.config and other.config["recipe"]["steps"] == 4


def test_reproduce_passes_steps_to_reproduction_functions(tmp_path):
    """--steps reaches a reproduction function that takes a step count (here the sinusoid one)."""
    res = subprocess.run([sys.executable, "-m", "mlcore", "reproduce", "--only", "maml_sinusoid", "--budget", "smoke",
                          "--steps", "7", "--out", str(tmp_path)], capture_output=True, text=True, check=False,
                         cwd=tmp_path,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "does not apply" not in res.stderr
    rec = mlcore.load_record(tmp_path / "maml_sinusoid_smoke.json")
    assert rec.config["steps"] == 7
    assert rec.metrics["mse_robust"]["maml_k5"]["steps=0"]["worse"] == 0


def test_git_commit_is_the_one_a_run_started_from(tmp_path, monkeypatch, capsys):
    """A commit made while a run is going does not change the commit its record carries.

    ``python -m mlcore train`` runs in this process against a scratch repository (mlcore's own location is
    pointed into it); a commit is made there in the middle of training. The record names the commit the run
    started from, and a fresh read of the repository shows the commit that came later.
    """
    from mlcore import cli, runs, runtime

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": os.environ["PATH"]}
    repo = tmp_path / "repo"
    (repo / "mlcore").mkdir(parents=True)

    def commit(msg):
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", msg], cwd=repo, env=env, check=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()

    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    first = commit("start")
    made_during_run = []
    real_fit = runs.fit

    def fit_with_a_commit(*args, **kwargs):
        made_during_run.append(commit("while running"))
        return real_fit(*args, **kwargs)

    monkeypatch.chdir(tmp_path)  # the run's resumable checkpoints go to ./runs
    monkeypatch.setattr(runtime, "__file__", str(repo / "mlcore" / "runtime.py"))
    monkeypatch.setattr(runs, "fit", fit_with_a_commit)
    runtime.git_commit.cache_clear()
    try:
        assert cli.main(["train", "protonet", "--ways", "5", "--shots", "1", "--budget", "smoke",
                         "--out", str(tmp_path / "out"), "--steps", "1"]) == 0
        fresh = runtime.git_commit.__wrapped__()
    finally:
        runtime.git_commit.cache_clear()  # later tests read mlcore's own repository again
    rec = mlcore.load_record(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["record"])
    assert rec.git_commit == first
    assert made_during_run and fresh == made_during_run[0] != first


def test_time_limit_writes_an_honest_record(tmp_path):
    """`--time-limit` stops training early; the record's recipe says the steps that ran, and the plan."""
    res = subprocess.run([sys.executable, "-m", "mlcore", "train", "protonet", "--ways", "5", "--shots", "1",
                          "--budget", "smoke", "--out", str(tmp_path), "--steps", "100000", "--time-limit", "3"],
                         capture_output=True, text=True, check=False, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rec = mlcore.load_record(json.loads(res.stdout.strip().splitlines()[-1])["record"])
    note = rec.config["time_limited"]
    assert note["planned_steps"] == 100000 and 1 <= note["steps_run"] < 100000
    assert rec.config["recipe"]["steps"] == note["steps_run"]
    bad = subprocess.run([sys.executable, "-m", "mlcore", "reproduce", "--time-limit", "-5"], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2 and "positive, finite number of seconds" in bad.stderr


def test_time_limit_travels_as_an_argument(tmp_path, monkeypatch, capsys):
    """`train --time-limit` reaches train_and_record as time_limit_s; `reproduce --time-limit` gives every
    reproduction one shared deadline (and says which cannot take one); nothing goes through the environment."""
    import time

    from mlcore import cli, registry, runs, runtime

    seen = {}
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: False)
    monkeypatch.setattr(runs, "train_and_record", lambda *a, **kw: seen.update(train=kw) or tmp_path / "r.json")
    before = dict(os.environ)
    assert cli.main(["train", "protonet", "--ways", "5", "--shots", "1", "--time-limit", "7.5"]) == 0
    assert seen["train"]["time_limit_s"] == 7.5 and "deadline" not in seen["train"]

    def takes(budget, seed, out_dir, device, deadline=None):
        seen["takes"] = deadline
        return []

    def ignores(budget, seed, out_dir, device):
        return []

    table = {"takes": {"fn": "x:takes"}, "ignores": {"fn": "x:ignores"},
             "plain": {"method": "protonet", "ways": 5, "shots": 1}}
    monkeypatch.setattr(registry, "reproductions", lambda: table)
    monkeypatch.setattr(registry, "resolve", lambda target: {"x:takes": takes, "x:ignores": ignores}[target])
    t0 = time.time()
    assert cli.main(["reproduce", "--only", "takes", "--only", "ignores", "--only", "plain",
                     "--budget", "smoke", "--time-limit", "100"]) == 0
    assert t0 + 100 <= seen["takes"] <= time.time() + 100
    assert seen["train"]["deadline"] == seen["takes"] and seen["train"].get("time_limit_s") is None
    assert "--time-limit does not apply to ignores" in capsys.readouterr().err
    assert dict(os.environ) == before


def test_eval_fn_for_finds_the_rescoring_function_of_non_classifiers():
    from mlcore import registry

    # a reproduction that names its own function
    assert registry.eval_fn_for("rl2_bandit_n10_k5", "rl2") == "mlcore.experiments.rl2_records:eval_record"
    # a record trained outside the table (renamed copy) is matched by its method
    assert registry.eval_fn_for("rl2_bandit_lr1e-3", "rl2") == "mlcore.experiments.rl2_records:eval_record"
    # few-shot classifiers are re-scored by mlcore.runs.reevaluate
    assert registry.eval_fn_for("protonet_omniglot_5w1s", "protonet") is None
