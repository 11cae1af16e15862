

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
