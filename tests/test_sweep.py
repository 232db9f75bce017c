"""The sweep: one DPO run per point from one SFT model, saved points reused, nothing destroyed."""

from __future__ import annotations

import json

import pytest

from helpers.sweep import parse_numbers, run_sweep


@pytest.fixture(scope="module")
def first_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    table = run_sweep("tiny", [0.0, 1.0], out, num_epochs=[1], data_sizes=[8], echo=lambda _: None)
    return out, table


def _metrics_files(out):
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}


def test_sweep_writes_one_run_per_point(first_sweep):
    out, table = first_sweep
    assert list(table["support_ratio"]) == [0.0, 1.0] and not table["reused"].any()
    assert sorted(_metrics_files(out)) == ["tiny_epoch-1_size-8_ratio-0", "tiny_epoch-1_size-8_ratio-1"]
    saved = json.loads((out / "sweep.json").read_text())
    assert [p["support_ratio"] for p in saved["points"]] == [0.0, 1.0]
    assert (table["sft_support_rate"] == table["sft_support_rate"].iloc[0]).all()  # one SFT model for all points


def test_a_second_sweep_reuses_saved_points(first_sweep):
    out, table = first_sweep
    before = _metrics_files(out)
    again = run_sweep("tiny", [0.0, 1.0], out, num_epochs=[1], data_sizes=[8], echo=lambda _: None)
    assert again["reused"].all()
    assert list(again["dpo_support_rate"]) == list(table["dpo_support_rate"])
    assert _metrics_files(out) == before  # nothing was retrained or rewritten


def test_overwrite_retrains_and_other_settings_are_kept_aside(first_sweep):
    out, _ = first_sweep
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
