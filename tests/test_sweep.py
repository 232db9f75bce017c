"""The sweep: one DPO run per point from one SFT model, saved points reused, nothing destroyed."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from matplotlib.container import ErrorbarContainer

from helpers.plots import plot_sweep
from helpers.row_values import load_row_values, metric_rows
from helpers.seeds import compare_seeded_runs, summarize_runs
from helpers.sweep import parse_numbers, run_sweep, sweep_summary

PROBE_TOPICS = ("novels-to-film", "games-to-film", "remakes", "unrelated")


@pytest.fixture(scope="module")
def first_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    lines = []
    table = run_sweep("tiny", [0.0, 1.0], out, num_epochs=[1], data_sizes=[8], echo=lines.append)
    return out, table, lines


def _metrics_files(out):
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}


def test_sweep_writes_one_run_per_point(first_sweep):
    out, table, _ = first_sweep
    assert list(table["support_ratio"]) == [0.0, 1.0] and not table["reused"].any()
    assert sorted(_metrics_files(out)) == ["tiny_epoch-1_size-8_ratio-0", "tiny_epoch-1_size-8_ratio-1"]
    saved = json.loads((out / "sweep.json").read_text())
    assert [p["support_ratio"] for p in saved["points"]] == [0.0, 1.0]
    assert (table["sft_support_rate"] == table["sft_support_rate"].iloc[0]).all()  # one SFT model for all points


def test_each_run_prints_one_progress_line(first_sweep):
    _, table, lines = first_sweep
    progress = [line for line in lines if line.startswith("run ")]
    assert len(progress) == 2
    for done, (line, rate) in enumerate(zip(progress, table["dpo_support_rate"]), 1):
        assert line.startswith(f"run {done}/2: ratio {table['support_ratio'][done - 1]:g} epochs 1 size 8 seed 0: ")
        assert f"held-out support_rate {rate:.2f}" in line and " s, " in line


def test_a_second_sweep_reuses_saved_points(first_sweep):
    out, table, _ = first_sweep
    before = _metrics_files(out)
    lines = []
    again = run_sweep("tiny", [0.0, 1.0], out, num_epochs=[1], data_sizes=[8], echo=lines.append)
    assert again["reused"].all()
    assert len(lines) == 2 and all(line.endswith("(saved run, loaded)") for line in lines)
    assert list(again["dpo_support_rate"]) == list(table["dpo_support_rate"])
    assert _metrics_files(out) == before  # nothing was retrained or rewritten


def test_overwrite_retrains_and_other_settings_are_kept_aside(first_sweep):
    out, _, _ = first_sweep
    folder = out / "runs" / "tiny_epoch-1_size-8_ratio-1"
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "beta": 0.5}))  # as if made with another beta
    table = run_sweep("tiny", [1.0], out, num_epochs=[1], data_sizes=[8], echo=lambda _: None)
    assert not table["reused"].any()
    assert json.loads((folder / "config.json").read_text()) == config
    earlier = out / "runs" / "tiny_epoch-1_size-8_ratio-1.earlier-1"
    assert json.loads((earlier / "config.json").read_text())["beta"] == 0.5  # moved aside, not deleted
    table = run_sweep("tiny", [1.0], out, num_epochs=[1], data_sizes=[8], overwrite=True, echo=lambda _: None)
    assert not table["reused"].any()


def test_parse_numbers():
    assert parse_numbers("0, 0.25,1") == [0.0, 0.25, 1.0]
    assert parse_numbers("1,3", int) == [1, 3]


# ---------------------------------------------------------------- per-row values, intervals, old runs


def test_runs_keep_per_row_values_that_give_their_metrics(first_sweep):
    out, _, _ = first_sweep
    for folder in sorted((out / "runs").glob("tiny_epoch-1_size-8_ratio-?")):
        metrics, tables = json.loads((folder / "metrics.json").read_text()), load_row_values(folder)
        assert set(tables) == set(metrics["stages"]) == {"base", "sft", "dpo"}
        for stage, values in metrics["stages"].items():
            assert {"probe_support_rate", *(f"probe_support_rate/{t}" for t in PROBE_TOPICS)} <= set(values)
            for name, value in values.items():
                rows = metric_rows(tables[stage], name)
                assert rows.mean() == pytest.approx(value, abs=1e-9), (folder.name, stage, name)
                low, high = metrics["intervals"][stage][name]
                assert low - 1e-6 <= value <= high + 1e-6
        assert len(tables["dpo"]["heldout"]) == metrics["n_eval_rows"] and len(tables["dpo"]["probes"]) == 48


def test_sweep_summary_is_reproducible_and_the_plot_draws_intervals(first_sweep):
    out, table, _ = first_sweep
    summary = sweep_summary(table, out / "runs")
    assert summary.equals(sweep_summary(table, out / "runs"))
    rates = summary[(summary["stage"] == "dpo") & (summary["metric"] == "support_rate")]
    assert list(rates["support_ratio"]) == [0.0, 1.0] and (rates["interval"] == "rows").all()
    assert ((rates["low"] <= rates["mean"]) & (rates["mean"] <= rates["high"]) & (rates["low"] < rates["high"])).all()
    assert json.loads((out / "sweep.json").read_text())["summary"]
    figure = plot_sweep(table, summary)
    assert any(isinstance(c, ErrorbarContainer) for ax in figure.axes for c in ax.containers)


def test_a_run_saved_before_per_row_values_still_summarises(first_sweep, tmp_path):
    out, _, _ = first_sweep
    old = {}
    for ratio in ("0", "1"):
        old[ratio] = shutil.copytree(out / "runs" / f"tiny_epoch-1_size-8_ratio-{ratio}", tmp_path / ratio)
        (old[ratio] / "per_row.json").unlink()
    summary = summarize_runs({0: old["1"]})
    row = summary[(summary["stage"] == "dpo") & (summary["metric"] == "support_rate")].iloc[0]
    saved = json.loads((old["1"] / "metrics.json").read_text())["stages"]["dpo"]["support_rate"]
    assert row["mean"] == saved and math.isnan(row["low"]) and row["interval"].startswith("unavailable")
    found = compare_seeded_runs({0: old["0"]}, {0: old["1"]}, "support_rate")
    assert math.isnan(found.low) and "no verdict" in found.verdict()
    paired = compare_seeded_runs({0: out / "runs" / "tiny_epoch-1_size-8_ratio-0"},
                          {0: out / "runs" / "tiny_epoch-1_size-8_ratio-1"}, "support_rate")
    assert paired.paired_rows and paired.n_seeds == 1 and "One seed only" in paired.verdict()
    assert paired.difference == pytest.approx(found.difference)

