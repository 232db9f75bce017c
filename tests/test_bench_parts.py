"""The bench's side-by-side passes on the tiny model: measuring in both precisions; the reference pass in both batch
sizes; each switch of the earlier path is one a run reads and the README names."""

from __future__ import annotations

import pytest

from helpers import data
from helpers.bench_passes import measuring, reference_pass
from helpers.bench_runs import earlier_path
from helpers.config import load_profile
from helpers.trainer_args import dpo_arguments, ref_batch_size


def test_measuring_reports_the_fp32_path_only_where_autocast_is_used(tiny):
    from helpers.hardware import AUTOCAST_MARK

    model, tokenizer = tiny
    profile = load_profile("tiny")
    report = measuring(profile, model, tokenizer, data.load_homework()[:8])
    assert report["rows"] == 8 and report["seconds"] > 0
    assert "speedup_bf16_vs_fp32" not in report  # the tiny profile measures in fp32
    setattr(model, AUTOCAST_MARK, True)  # as a model loaded for CPU bf16 autocast
    report = measuring(profile, model, tokenizer, data.load_homework()[:8])
    assert report["fp32_seconds"] > 0 and report["same_preferred_share"] >= 0.75


def test_reference_pass_in_both_batches(tiny):
    from helpers.training import prepare_for_dpo

    model, tokenizer = tiny
    profile = load_profile("tiny")
    report = reference_pass(profile, prepare_for_dpo(model, profile), tokenizer, data.load_homework()[:12])
    assert (report["batch"], report["training_batch"]) == (16, profile.batch_size)
    assert report["pairs"] == 12 and report["seconds"] > 0 and report["training_batch_seconds"] > 0


def test_the_earlier_paths_switches_are_read(monkeypatch):
    profile = load_profile("smollm2-135m")
    switches = earlier_path(profile)
    assert set(switches) == {"DPO_CPU_BF16", "DPO_CPU_EAGER_ATTENTION", "DPO_CPU_LABELLED_HEAD", "DPO_MEASURE_CACHE",
                             "DPO_REF_BATCH"}
    assert ref_batch_size(profile) == 16 == dpo_arguments(profile, "x")["precompute_ref_batch_size"]
    monkeypatch.setenv("DPO_REF_BATCH", switches["DPO_REF_BATCH"])
    assert dpo_arguments(profile, "x")["precompute_ref_batch_size"] == profile.batch_size == 4
    monkeypatch.setenv("DPO_REF_BATCH", "zero")
    assert ref_batch_size(profile) == 16  # not a positive number: the default


@pytest.mark.parametrize("name", ["DPO_CPU_BF16", "DPO_CPU_EAGER_ATTENTION", "DPO_CPU_LABELLED_HEAD",
                                  "DPO_MEASURE_CACHE", "DPO_REF_BATCH"])
def test_each_switch_is_documented_in_the_readme(name):
    from pathlib import Path

    assert name in (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_stance_table_puts_todays_mean_against_the_earlier_seed_range():
    from helpers.bench_runs import EARLIER, STANCE_FIGURES, TODAY, stance_spread_table

    values = {TODAY: [0.55, 0.65, 0.6], EARLIER: [0.5, 0.6, 0.7]}  # every figure but ended_rate
    ended = {TODAY: [1.0, 0.958, 1.0], EARLIER: [1.0, 1.0, 1.0]}  # a range of zero width: one cut answer falls out
    rows = [{"seed": seed, "support_ratio": 1.0, "path": path,
             **{f: (ended if f == "ended_rate" else values)[path][seed] for f in STANCE_FIGURES}}
            for path in (TODAY, EARLIER) for seed in range(3)]
    table = stance_spread_table(rows).set_index("figure")
    within = table["within the earlier path's seed range"]
    assert within.drop("ended_rate").all() and not within["ended_rate"]
    assert table.loc["support_rate", f"{TODAY}: seeds"] == "0.550 / 0.650 / 0.600"
    assert table.loc["ended_rate", f"{TODAY}: mean"] == 0.986
