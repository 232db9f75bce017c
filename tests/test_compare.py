"""compare_runs on two saved run folders (written here, no training): only the settings that differ, every
measurement with b − a paired by row, what cannot be paired said, and the answers whose stance changed, whole."""

from __future__ import annotations

import json
from dataclasses import asdict

import pandas as pd
import pytest

from helpers.compare import compare_runs
from helpers.errors import UserError
from helpers.folders import mark_complete
from helpers.runs import RunConfig
from helpers.row_values import save_row_values
from helpers.stats import interval

LONG = "A long answer that goes on and on about live-action films, " * 4  # longer than pandas' 50-character cut


class Stage:
    """What save_row_values reads of a stage: its held-out table and its answers' table."""

    def __init__(self, leans: list[bool], labels: list[float]):
        self.logps = pd.DataFrame({"id": [f"e{i}" for i in range(len(leans))],
                                   "support_mean_logp": [-1.0 if lean else -2.0 for lean in leans],
                                   "oppose_mean_logp": [-1.5] * len(leans)})
        self.probes = pd.DataFrame()
        self.answer_rows = pd.DataFrame({"id": ["t0", "t1", "t2"], "judge": labels, "chars": [10.0, 20.0, 30.0]})


def write_run(folder, config: RunConfig, leans: list[bool], labels: list[float], answers: list[str],
              eval_ids: list[str] | None = None) -> None:
    stage = Stage(leans, labels)
    if eval_ids:
        stage.logps["id"] = eval_ids
    rate = sum(leans) / len(leans)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(asdict(config)))
    (folder / "metrics.json").write_text(json.dumps({
        "stages": {"dpo": {"support_rate": rate, "mean_answer_chars": 20.0}},
        "intervals": {"dpo": {"support_rate": list(interval([[float(v) for v in leans]]))}},
        "n_train_pairs": 50}))
    (folder / "answers.json").write_text(json.dumps(
        [{"id": f"t{i}", "prompt": f"question {i}?", "dpo": a} for i, a in enumerate(answers)]))
    save_row_values(folder, {"dpo": stage})
    mark_complete(folder)


@pytest.fixture()
def runs(tmp_path):
    runs_dir = tmp_path / "runs"
    write_run(runs_dir / "low", RunConfig(beta=0.1), [True, False, False, True] * 5, [1.0, 0.0, 1.0],
              ["first", "second", "third"])
    write_run(runs_dir / "high", RunConfig(beta=0.2), [True, True, False, True] * 5, [1.0, float("nan"), 0.0],
              ["first again", "second again", LONG])
    return runs_dir


def test_settings_show_only_what_differs(runs):
    found = compare_runs("low", "high", runs_dir=runs)
    assert (found.a, found.b) == ("low", "high")
    assert found.settings.to_dict("index") == {"beta": {"a": "0.1", "b": "0.2"}}


def test_each_measurement_has_both_values_and_the_paired_difference(runs):
    table = compare_runs("low", "high", runs_dir=runs).measurements.set_index("metric")
    assert set(table.index) == {"support_rate", "mean_answer_chars"}
    rate = table.loc["support_rate"]
    assert (rate["a"], rate["b"], rate["b − a"]) == pytest.approx((0.5, 0.75, 0.25))
    assert rate["paired"] == "by row" and rate["a 95 %"].startswith("[")
    low, high = (float(v) for v in rate["b − a 95 %"].strip("[]").split(","))
    assert 0 < low <= 0.25 <= high  # b leans support on 5 more rows of 20, always the same rows: the interval excludes 0
    assert table.loc["mean_answer_chars", "b − a"] == 0 and table.loc["mean_answer_chars", "a 95 %"] == "unavailable"


def test_runs_measured_on_other_rows_are_said_not_paired(tmp_path, runs):
    write_run(runs / "other-rows", RunConfig(beta=0.3), [True] * 20, [1.0, 0.0, 1.0], ["a", "b", "c"],
              eval_ids=[f"x{i}" for i in range(20)])
    found = compare_runs("low", runs / "other-rows", runs_dir=runs)  # a name and a folder
    rate = found.measurements.set_index("metric").loc["support_rate"]
    assert rate["paired"].startswith("not paired") and "support_rate" in " ".join(found.notes)


def test_stance_changes_are_listed_with_the_answers_whole(runs):
    changes = compare_runs("low", "high", runs_dir=runs).stance_changes
    assert list(changes.columns) == ["question", "a stance", "a", "b stance", "b"]
    assert changes.to_dict("records") == [
        {"question": "question 1?", "a stance": "oppose", "a": "second", "b stance": "abstained", "b": "second again"},
        {"question": "question 2?", "a stance": "support", "a": "third", "b stance": "oppose", "b": LONG}]


def test_an_unknown_run_names_the_saved_ones(runs):
    with pytest.raises(UserError, match="no complete run at .*missing.*saved runs: high, low"):
        compare_runs("low", "missing", runs_dir=runs)
