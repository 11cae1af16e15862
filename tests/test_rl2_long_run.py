"""benchmarks/rl2_long_run.py: bad settings and variants refused with one line, and a tiny real run that resumes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv, message", [
    (["mdp_n11"], "unknown setting 'mdp_n11'; choose one of"),
    (["mdp_n10", "--set", "lr=0.001"], "give the variant a --name"),
    (["mdp_n10", "--set", "learning_rate=0.001", "--name", "v"], "cannot override learning_rate"),
    (["mdp_n10", "--set", 'spec={"env": "mdp"}', "--name", "v"], "cannot override spec"),
])
def test_bad_arguments_are_refused_before_anything_runs(argv, message, capsys, benchmark_script, tmp_path,
                                                       monkeypatch):
    monkeypatch.setenv("MLCORE_RUNS", str(tmp_path / "runs"))
    with pytest.raises(SystemExit) as err:
        benchmark_script("rl2_long_run").main(argv)
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_named_variant_trains_records_and_resumes_in_its_own_run_directory(tmp_path):
    # a subprocess: main() sets process-wide state (one thread, glibc's malloc) that must not leak into the tests
    env = {**os.environ, "MLCORE_RUNS": str(tmp_path / "runs")}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "rl2_long_run.py"), "mdp_n10", "--budget", "smoke",
           "--set", "updates=2", "--set", "hidden=8", "--name", "tiny_rl2", "--out", str(tmp_path / "out")]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
    record = json.loads((tmp_path / "out" / "tiny_rl2.json").read_text())
    assert record["name"] == "tiny_rl2" and record["config"]["rl2"]["hidden"] == 8
    assert record["metrics"]["updates_done"] == 2 and (tmp_path / "out" / "tiny_rl2.pt").exists()
    checkpoint = tmp_path / "runs" / "tiny_rl2_smoke" / "last.pt"
    written = checkpoint.stat().st_mtime_ns
    # the same command again resumes the finished run: no update is trained, so the checkpoint is not rewritten
    # and the curve, with its wall-clock seconds, is the first call's
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
    again = json.loads((tmp_path / "out" / "tiny_rl2.json").read_text())
    assert checkpoint.stat().st_mtime_ns == written
    assert again["metrics"]["learning_curve"] == record["metrics"]["learning_curve"]
