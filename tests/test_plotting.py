"""mlcore.book.plotting: one colour and marker per method, found under the names records and tables use."""
import pytest

from mlcore.book.plotting import METHOD_STYLES, colour, marker, style
from mlcore.registry import learners


def test_no_two_methods_look_alike():
    seen: dict[tuple[str, str], str] = {}
    for method, look in METHOD_STYLES.items():
        if method == "pretrained_linear":  # the pretrained classifier with its default (linear) probe
            assert look == METHOD_STYLES["pretrained"]
            continue
        assert look not in seen, f"{method} and {seen.get(look)} are both drawn as {look}"
        seen[look] = method


def test_every_registered_method_has_a_style():
    assert set(learners()) <= set(METHOD_STYLES)


@pytest.mark.parametrize("name, key", [("UCB1", "ucb1"), ("epsilon-greedy", "epsilon_greedy"),
                                       ("RL²", "rl2"), ("Matching FCE", "matching_fce"), ("ProtoNet", "protonet")])
def test_names_from_records_and_tables_are_found(name, key):
    assert style(name) == {"color": METHOD_STYLES[key][0], "marker": METHOD_STYLES[key][1]}
    assert (colour(name), marker(name)) == METHOD_STYLES[key]


def test_unknown_method_says_where_to_add_it():
    with pytest.raises(ValueError, match="METHOD_STYLES"):
        style("my_new_method")
