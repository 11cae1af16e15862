

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
