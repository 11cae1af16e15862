"""mlcore.book.faq: the tables of chapter 10, from records' metrics."""
import pytest

from mlcore.book import faq
from mlcore.results import Record


def test_pct_with_and_without_ci():
    assert faq.pct(0.9786) == "97.9 %"
    assert faq.pct(0.5, 0.0123) == "50.0 % ± 1.2"


def test_budget_line_reads_recipe_steps_time_and_hardware_and_leaves_out_what_is_missing():
    hw = {"device": "cpu", "threads": 1}
    rec = Record(name="r", method="maml", dataset="sinusoid", config={"recipe": {"steps": 70000}},
                 train_wall_s=634.6, hardware=hw)
    line = faq.budget_line(rec)
    assert line.startswith("[r: 70,000 steps, 635 s training, ") and line.endswith("]")
    assert faq.budget_line(rec.to_dict()) == line  # a record's dict reads the same
    bare = Record(name="b", method="x", dataset="y", config={"steps": 12}, hardware=hw)
    assert faq.budget_line(bare).startswith("[b: 12 steps, ") and "training" not in faq.budget_line(bare)
    assert "steps" not in faq.budget_line(Record(name="c", method="x", dataset="y", hardware=hw))


def test_sinusoid_rows_beside_the_paper():
    mse = {f"{who}_k5": {f"steps={n}": [n + 0.123, 0.01] for n in (0, 1, 5, 10)} for who in ("maml", "pretrained")}
    rows = faq.sinusoid_rows(mse, {"maml": {1: 0.6, 5: 0.5, 10: 0.45}})
    assert [r["model"] for r in rows] == ["maml", "pretrained"]
    assert rows[0]["s5"] == "5.12 ± 0.01" and rows[0]["paper"] == "0.6 / 0.5 / 0.45"
    assert rows[1]["paper"] == "–"
    assert {k for k, _ in faq.SINUSOID_COLUMNS} == set(rows[0])


def _domain(learner, pixels):
    return {"learner": {"accuracy": learner, "ci95": 0.01}, "pixels": {"accuracy": pixels, "ci95": 0.02},
            "gain_over_pixels": learner - pixels}


def test_domain_shift_rows_and_gains():
    metrics = {"1shot": {"omniglot": _domain(0.97, 0.45), "digits": _domain(0.60, 0.643)},
               "5shot": {"omniglot": _domain(0.99, 0.6), "digits": _domain(0.8, 0.8)},
               "source_record": "protonet_omniglot_5w1s"}  # not a setting: skipped
    rows = faq.domain_shift_rows(metrics)
    assert [(r["setting"], r["domain"]) for r in rows] == [("5-way 1-shot", "omniglot"), ("5-way 1-shot", "digits"),
                                                           ("5-way 5-shot", "omniglot"), ("5-way 5-shot", "digits")]
    assert rows[0]["learner"] == "97.0 % ± 1.0" and rows[0]["gain"] == "+52.0" and rows[1]["gain"] == "-4.3"
    assert {k for k, _ in faq.DOMAIN_SHIFT_COLUMNS} == set(rows[0])
    assert faq.domain_shift_gains(metrics) == ("1-shot: the meta-learned embedding adds +52.0 points over pixels "
                                               "on Omniglot\n        and -4.3 on digits.")


def test_ablation_rows_variants_then_the_classic_baselines_in_order():
    variants = {"full": {"mean_total_reward": 6.62, "ci95": 0.14},
                "no reward": {"mean_total_reward": 5.0, "ci95": 0.16,
                              "paired_vs_full": {"mean_difference": -1.62, "ci95": 0.2}}}
    baselines = {"Gittins": {"mean_total_reward": 6.7, "ci95": 0.1}, "random": {"mean_total_reward": 5.0, "ci95": 0.1},
                 "Thompson": {"mean_total_reward": 6.6, "ci95": 0.1}}
    rows = faq.ablation_rows(variants, baselines)
    assert [r["agent"] for r in rows] == ["full", "no reward", "random (classic baseline)",
                                          "Gittins (classic baseline)"]
    assert rows[0]["diff"] == "–" and rows[1]["diff"] == "-1.62 ± 0.20" and rows[1]["total"] == "5.00 ± 0.16"
    assert len(faq.ablation_rows(variants)) == 2
    assert {k for k, _ in faq.ABLATION_COLUMNS} == set(rows[0])


@pytest.mark.parametrize("diff, ci, said", [(-1.5, 0.2, "a real loss"), (0.5, 0.2, "a real gain"),
                                            (-0.1, 0.2, "no detectable difference"),
                                            (0.2, 0.2, "no detectable difference")])
def test_verdict(diff, ci, said):
    assert faq.verdict({"mean_difference": diff, "ci95": ci}) == said
