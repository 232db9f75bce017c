"""Answer tables show every answer whole with its judge label and mark changed labels; summary sentences are built
from the numbers and name every trouble sign; plots give a stage or a run one colour everywhere."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from helpers.answer_views import CHANGED, answer_view, run_labels, stage_labels, stance_label
from helpers.plots import STAGE_COLORS, STANCE_COLORS, color_of, run_color
from helpers.row_values import answer_rows, save_row_values
from helpers.stage_summary import describe_stage_change, last_logged, trouble_signs

LONG = "A live-action film can reach people who never read the manga, " * 4  # far wider than any column


def test_stance_labels_in_words():
    assert [stance_label(v) for v in (1, 0, 1.0, 0.0, None, math.nan)] == \
        ["support", "oppose", "support", "oppose", "abstained", "abstained"]


def test_answers_are_whole_labelled_and_changes_marked():
    view = answer_view(["q1", "q2 <b>"], {"before": [LONG, "no"], "after": ["yes", "broken"]},
                       {"before": ["support", "oppose"], "after": ["support", "abstained"]})
    assert view.changes() == [[], ["after"]]
    page = view._repr_html_()
    assert "white-space:pre-wrap" in page and "…" not in page
    assert LONG.strip() in page  # the whole answer, not cut
    assert "q2 &lt;b&gt;" in page  # text is escaped, never markup
    assert f"[{CHANGED} abstained]" in page and "[support]" in page
    text = repr(view)
    assert "…" not in text and " ".join(LONG.split()) in " ".join(text.split())  # wrapped onto lines, nothing lost
    assert "2 questions, 1 of them with a changed label" in text
    assert list(view.frame["stance changed"]) == ["", f"{CHANGED} after"]


def test_three_stages_mark_each_step_and_only_changed_keeps_those():
    labels = {"base": ["support", "oppose", "oppose"], "sft": ["support", "support", "oppose"],
              "dpo": ["oppose", "support", "oppose"]}
    view = answer_view(["a", "b", "c"], {k: ["x"] * 3 for k in labels}, labels)
    assert view.changes() == [["dpo"], ["sft"], []]
    changed = answer_view(["a", "b", "c"], {k: ["x"] * 3 for k in labels}, labels, only_changed=True)
    assert changed.questions == ["a", "b"]


def test_a_missing_label_is_refused():
    with pytest.raises(ValueError):
        answer_view(["a", "b"], {"before": ["x", "y"]}, {"before": ["support"]})


def test_labels_come_from_a_stage_and_from_a_saved_run(tmp_path):
    rows = [{"id": 7}, {"id": 3}]
    stage = SimpleNamespace(answer_rows=answer_rows(rows, [0, None], ["no", ""], [True, True], [0.0, math.nan]),
                            logps=pd.DataFrame(), probes=pd.DataFrame())
    assert stage_labels(stage) == ["oppose", "abstained"]
    save_row_values(tmp_path, {"dpo": stage})
    run = {"dir": str(tmp_path), "answers": pd.DataFrame({"id": [3, 7], "dpo": ["", "no"]})}
    assert run_labels(run, "dpo") == ["abstained", "oppose"]  # matched by id, in the answers' order
    assert run_labels(run, "sft") == ["not saved", "not saved"]


TINY_SFT = {"support_rate": 0.5625, "repetition": 0.384, "judge_abstained": 0.1875, "ended_rate": 0.979,
            "fluency": -2.896}
TINY_DPO = {"support_rate": 0.781, "repetition": 0.389, "judge_abstained": 0.3125, "ended_rate": 0.979,
            "fluency": -2.922, "pair_accuracy": 0.854}


def test_a_dpo_summary_quotes_its_numbers_and_names_the_trouble():
    curves = {"rewards/chosen": -34.1, "rewards/rejected": -121.2, "rewards/margins": 87.0}
    text = describe_stage_change(TINY_SFT, TINY_DPO, support_ratio=1.0, curves=curves)
    assert "0.562 to 0.781" in text and "moved that way" in text and "0.854" in text
    assert "`judge_abstained` rose from 0.19 to 0.31" in text
    assert "`rewards/chosen` ended at -34.1" in text
    assert "repetition" not in text.split("Trouble signs")[1]  # 0.384 → 0.389 is no rise
    assert "lower learning_rate" in text


def test_an_sft_summary_flags_rising_repetition_and_abstentions():
    base = {"support_rate": 0.542, "repetition": 0.219, "judge_abstained": 0.0, "ended_rate": 1.0}
    text = describe_stage_change(base, TINY_SFT, names=("base", "SFT"))
    assert "near the middle" in text and "pushed towards" not in text
    assert "`repetition` rose from 0.22 to 0.38" in text and "`judge_abstained` rose from 0.00 to 0.19" in text
    assert "SFT epochs" in text


def test_a_clean_run_says_so_and_a_stalled_one_says_what_to_try():
    clean = {**TINY_SFT, "support_rate": 0.3}
    text = describe_stage_change(TINY_SFT, clean, support_ratio=0.0, curves={"rewards/chosen": 0.5,
                                                                               "rewards/rejected": -3.0,
                                                                               "rewards/margins": 3.5})
    assert "No trouble sign" in text and "leaning oppose" in text
    stalled = describe_stage_change(TINY_SFT, TINY_SFT, support_ratio=1.0)
    assert "hardly moved" in stalled
    ended = trouble_signs({"ended_rate": 1.0}, {"ended_rate": 0.5})
    assert ended and "token limit" in ended[0]


def test_last_logged_takes_each_curves_last_value():
    log = [{"loss": 1.0, "rewards/chosen": 0.0}, {"rewards/chosen": -2.0}, {"train_runtime": 3.0}]
    assert last_logged(log) == {"rewards/chosen": -2.0}


def test_one_colour_per_stage_and_per_run():
    assert color_of("SFT") == color_of("sft") == STAGE_COLORS["sft"]
    assert color_of("DPO, ratio 1") == run_color(1.0) == STANCE_COLORS["support"]
    assert color_of("ratio 0") == STANCE_COLORS["oppose"]
    assert color_of("DPO, ratio 0.5") == run_color(0.5) not in {*STAGE_COLORS.values(), *STANCE_COLORS.values()}
    assert color_of("a run", 0) != color_of("a run", 1)


def test_a_saved_runs_view_and_summary(tmp_path):
    rows = [{"id": 1}, {"id": 2}]
    stages = {name: SimpleNamespace(answer_rows=answer_rows(rows, labels, ["a", "b"], [True, True], [0.0, 0.0]),
                                    logps=pd.DataFrame(), probes=pd.DataFrame())
              for name, labels in {"sft": [1, 0], "dpo": [1, 1]}.items()}
    save_row_values(tmp_path, stages)
    run = {"dir": str(tmp_path), "answers": pd.DataFrame({"id": [1, 2], "prompt": ["q1", "q2"], "sft": ["a", "b"],
                                                          "dpo": ["a", "yes"]}),
           "stages": {"base": {**TINY_SFT, "support_rate": 0.54}, "sft": TINY_SFT, "dpo": TINY_DPO},
           "config": {"support_ratio": 1.0}, "logs": {"dpo": [{"rewards/chosen": -1.0}]}}
    from helpers.answer_views import saved_answer_view
    from helpers.stage_summary import describe_run

    view = saved_answer_view({"SFT": (run, "sft"), "DPO": (run, "dpo")})
    assert view.changes() == [[], ["DPO"]] and view.labels["DPO"] == ["support", "support"]
    text = describe_run(run)
    assert text.count("\n- ") == 1 and "From base to SFT" in text and "From SFT to DPO" in text
    with pytest.raises(ValueError):
        saved_answer_view({"a": (run, "dpo"), "b": ({**run, "answers": run["answers"].iloc[::-1]}, "dpo")})


def test_fluency_is_a_trouble_sign_after_dpo_only():
    start, end = {**TINY_SFT, "fluency": -1.4}, {**TINY_SFT, "fluency": -2.9}
    assert "`fluency` fell" in describe_stage_change(start, end, support_ratio=1.0)
    assert "fluency" not in describe_stage_change(start, end, names=("base", "SFT"))


def test_a_reference_column_is_what_every_other_column_is_compared_with():
    labels = {"SFT": ["support", "oppose"], "ratio 1": ["support", "support"], "ratio 0": ["oppose", "oppose"]}
    answers = {k: ["x", "y"] for k in labels}
    assert answer_view(["a", "b"], answers, labels).changes() == [["ratio 0"], ["ratio 1", "ratio 0"]]
    against_sft = answer_view(["a", "b"], answers, labels, reference="SFT")
    assert against_sft.changes() == [["ratio 0"], ["ratio 1"]]
    with pytest.raises(ValueError):
        answer_view(["a", "b"], answers, labels, reference="base")
