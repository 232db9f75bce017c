"""A start stage's measurement is kept once per model and data: a second run reads it (loading no model) and gets the
same figures; other rows, another precision, another SFT adapter or DPO_MEASURE_CACHE=off measure again; a damaged
file is remeasured."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import helpers.measure_cache as measure_cache
import helpers.pipeline as pipeline
from helpers.config import load_profile
from helpers.evaluation import train_stance_judge
from helpers.runs import RunConfig, load_inputs


@pytest.fixture()
def world(tmp_path, monkeypatch, tiny_path):
    """An empty base cache, the tiny profile, a few rows of each kind and a judge."""
    monkeypatch.setattr(measure_cache, "CACHE_DIR", tmp_path)
    monkeypatch.delenv(measure_cache.SWITCH, raising=False)
    profile = load_profile("tiny")
    inputs = load_inputs(RunConfig(support_ratio=1.0, profile="tiny"))
    inputs = dataclasses.replace(inputs, eval_rows=inputs.eval_rows[:6], probe_rows=inputs.probe_rows[:4],
                                 test_rows=inputs.test_rows[:4])
    return profile, inputs, train_stance_judge(inputs.train_rows, seed=0), tmp_path


def _loads(monkeypatch) -> list[str]:
    """Record every base model load (and still load it)."""
    loads: list[str] = []
    real = pipeline.load_model

    def counted(profile, *args, **kwargs):
        loads.append(profile.name)
        return real(profile, *args, **kwargs)

    monkeypatch.setattr(pipeline, "load_model", counted)
    return loads


def test_a_second_measurement_reads_the_first_one(world, monkeypatch):
    profile, inputs, judge, cache = world
    loads = _loads(monkeypatch)
    first = pipeline.measure_base(profile, inputs, judge)
    files = list(cache.glob("measured-*/measured.json"))
    assert loads == ["tiny"] and len(files) == 1
    second = pipeline.measure_base(profile, inputs, judge)
    assert loads == ["tiny"], "the cached measurement loaded the model again"
    assert second.metrics == pytest.approx(first.metrics, nan_ok=True)
    assert second.answers == first.answers
    pd.testing.assert_frame_equal(second.logps, first.logps)
    pd.testing.assert_frame_equal(second.probes, first.probes)
    pd.testing.assert_frame_equal(second.answer_rows, first.answer_rows)


def test_other_rows_or_precision_or_the_switch_measure_again(world, monkeypatch):
    profile, inputs, judge, cache = world
    loads = _loads(monkeypatch)
    pipeline.measure_base(profile, inputs, judge)
    pipeline.measure_base(profile, dataclasses.replace(inputs, test_rows=inputs.test_rows[:3]), judge)
    assert len(loads) == 2 and len(list(cache.glob("measured-*"))) == 2
    fp32 = measure_cache.stage_settings(profile, inputs)
    real = measure_cache.cpu_bf16_for
    monkeypatch.setattr(measure_cache, "cpu_bf16_for", lambda wanted: True)  # as on a CPU with bf16 units
    assert measure_cache.stage_settings(profile, inputs)["precision"] != fp32["precision"]
    monkeypatch.setattr(measure_cache, "cpu_bf16_for", real)
    monkeypatch.setenv(measure_cache.SWITCH, "off")
    pipeline.measure_base(profile, inputs, judge)
    assert len(loads) == 3 and len(list(cache.glob("measured-*"))) == 2  # measured again, nothing new kept
    pipeline.measure_base(profile, dataclasses.replace(inputs, test_rows=inputs.test_rows[:2]), judge)
    assert len(loads) == 4 and len(list(cache.glob("measured-*"))) == 2


def test_a_damaged_or_foreign_file_is_measured_again(world, monkeypatch):
    profile, inputs, judge, cache = world
    pipeline.measure_base(profile, inputs, judge)
    (path,) = cache.glob("measured-*/measured.json")
    path.write_text("{ not json", encoding="utf-8")
    loads = _loads(monkeypatch)
    pipeline.measure_base(profile, inputs, judge)
    assert loads == ["tiny"] and measure_cache.read_stage_outputs(path, measure_cache.stage_settings(profile, inputs))
    settings = dict(measure_cache.stage_settings(profile, inputs), max_new_tokens=1)
    assert measure_cache.read_stage_outputs(path, settings) is None  # saved for other settings: not used


def test_the_sft_stage_is_kept_by_its_adapter_folder(world, tmp_path):
    profile, inputs, judge, cache = world
    adapter = tmp_path / "sft-tiny-x"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"1234")
    base = measure_cache.stage_settings(profile, inputs)
    sft = measure_cache.stage_settings(profile, inputs, adapter)
    assert base["sft"] is None and sft["sft"]["files"] == [("adapter_model.safetensors", 4, sft["sft"]["files"][0][2])]
    (adapter / "adapter_model.safetensors").write_bytes(b"123456")  # retrained: another adapter, another key
    again = measure_cache.stage_settings(profile, inputs, adapter)
    assert measure_cache.stage_cache_file(again) != measure_cache.stage_cache_file(sft) != \
        measure_cache.stage_cache_file(base)
