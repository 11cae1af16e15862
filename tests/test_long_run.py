"""benchmarks/long_run.py: recipe variants by --set and --name, refused without a name, and a tiny real run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_set_values_are_read_as_json_else_as_text():
    from mlcore.runs import parse_recipe_sets

    got = parse_recipe_sets(["lr_step=10000", "grad_clip=0.5", "optimizer=sgd", 'model={"hidden": 8}'])
    assert got == {"lr_step": 10000, "grad_clip": 0.5, "optimizer": "sgd", "model": {"hidden": 8}}
    with pytest.raises(ValueError, match="key=value"):
        parse_recipe_sets(["lr_step"])


@pytest.mark.parametrize("argv, message", [
    (["protonet", "5", "1", "--set", "lr_step=10"], "give the variant a --name"),
    (["protonet", "5", "1", "--set", "lrstep=10", "--name", "v"], "unknown recipe field 'lrstep'"),
])
def test_a_variant_without_a_name_or_with_an_unknown_field_is_refused(argv, message, capsys, benchmark_script):
    with pytest.raises(SystemExit) as err:
        benchmark_script("long_run").main(argv)
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_a_named_variant_trains_in_its_own_run_directory_and_record(tmp_path):
    # a subprocess: main() sets process-wide state (one thread, glibc's malloc) that must not leak into the tests
    env = {**os.environ, "MLCORE_RUNS": str(tmp_path / "runs")}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "long_run.py"), "protonet", "5", "1", "--budget", "smoke",
                    "--set", "steps=3", "--set", 'model={"hidden": 8}', "--name", "tiny_variant",
                    "--out", str(tmp_path / "out")], check=True, env=env, cwd=ROOT, capture_output=True)
    record = json.loads((tmp_path / "out" / "tiny_variant.json").read_text())
    assert record["config"]["recipe"]["steps"] == 3 and record["config"]["recipe"]["model"] == {"hidden": 8}
    assert (tmp_path / "out" / "tiny_variant.pt").exists()
    assert (tmp_path / "runs" / "tiny_variant_smoke" / "last.pt").exists()
    assert not (tmp_path / "runs" / "protonet_omniglot_5w1s_smoke").exists()
