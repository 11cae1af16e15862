import pytest

from mlcore.results import Record, save_record

#: "under ~2 MB" for a committed checkpoint, with the margin the largest small ones need (2.6 MB: MANN)
COMMITTED_CHECKPOINT_LIMIT = 3 * 2 ** 20
#: over the limit and still committed, with the reason (to be replaced by a regenerate-on-demand path)
LARGE_CHECKPOINTS_KEPT = {"results/siamese_omniglot_lake.pt": "chapter 3 loads it to score Lake's trials live"}


def test_record_json_keeps_number_lists_on_one_line_and_round_trips():
    import json
    import math

    from mlcore.results import record_json

    data = {"per_episode": [1, 0.5, -3e-05, float("nan")], "matrix": [[0.1, 0.2], [0.3, 0.4]],
            "names": ["a", "b"], "empty": []}
    text = record_json(data)
    assert '"per_episode": [1, 0.5, -3e-05, NaN]' in text and "[0.1, 0.2]" in text
    assert '"names": [\n' in text  # only plain numbers are packed
    back = json.loads(text)
    assert back["matrix"] == data["matrix"] and back["names"] == data["names"] and math.isnan(back["per_episode"][3])


def test_run_record_fills_hardware_commit_and_wall_time_and_keeps_what_the_caller_gives():
    import time

    from mlcore.results import run_record
    from mlcore.runtime import git_commit, hardware

    started = time.perf_counter() - 2.5  # a run that began 2.5 s ago
    rec = run_record(started, name="r", method="m", dataset="d", accuracy=0.5)
    assert rec.hardware == hardware() and rec.git_commit == git_commit()
    assert 2.5 <= rec.wall_s < 60 and rec.accuracy == 0.5 and rec.name == "r"
    own = run_record(time.perf_counter(), name="r", method="m", dataset="d", hardware={"world_size": 4},
                     git_commit="abc1234")
    assert own.hardware == {"world_size": 4} and own.git_commit == "abc1234" and own.wall_s < 2.5


def test_hardware_names_the_cpu_model_and_its_bfloat16_features(monkeypatch, tmp_path):
    from mlcore import runtime

    info = runtime.hardware()
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert set(info["cpu_bf16_flags"]) <= set(runtime._BF16_CPU_FLAGS)
    # read from /proc/cpuinfo where there is one: a made-up one gives its model and only the flags it lists
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse avx512f amx_tile avx512_bf16\n")
    real_path = runtime.Path
    monkeypatch.setattr(runtime, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    runtime.cpu_model.cache_clear()
    try:
        assert runtime.cpu_model() == {"cpu_model": "Example CPU 9000", "cpu_bf16_flags": ["avx512_bf16", "amx_tile"]}
    finally:
        runtime.cpu_model.cache_clear()


def test_committed_checkpoints_stay_small():
    """Checkpoints over the limit are not committed (the device tool carries 64 MiB; history keeps every byte)."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs a git checkout")
    tracked = subprocess.run(["git", "ls-files", "-z", "results/*.pt"], cwd=root, capture_output=True, check=True,
                             text=True).stdout.split("\0")
    sizes = {p: (root / p).stat().st_size for p in tracked if p and (root / p).exists()}
    assert sizes, "no committed checkpoint found"
    too_big = {p: s for p, s in sizes.items() if s > COMMITTED_CHECKPOINT_LIMIT and p not in LARGE_CHECKPOINTS_KEPT}
    assert not too_big, f"over {COMMITTED_CHECKPOINT_LIMIT / 2 ** 20:.0f} MiB: {too_big}; ignore them in .gitignore"


def test_a_missing_checkpoint_names_the_command_that_regenerates_it(tmp_path):
    """The Siamese weights (40 MB) are not committed: loading one of its four records says how to get them."""
    from mlcore.runs import load

    rec = Record(name="siamese_omniglot_20w1s", method="siamese", dataset="omniglot", split="vinyals/test", ways=20,
                 shots=1, accuracy=0.5, ci95=0.01, episodes=10, checkpoint="siamese_omniglot.pt", budget="full")
    save_record(rec, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"siamese_omniglot\.pt', which is missing .*regenerate them with "
                                                r"`python -m mlcore reproduce --only siamese_omniglot_vinyals`$"):
        load(tmp_path / "siamese_omniglot_20w1s.json")
    rec.name, rec.budget = "protonet_omniglot_5w1s", "cpu"
    rec.method, rec.checkpoint = "protonet", "gone.pt"
    save_record(rec, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"--only protonet_omniglot_5w1s --budget cpu`$"):
        load(tmp_path / "protonet_omniglot_5w1s.json")
