"""Export: the merged standalone model answers exactly like the adapter model; pushing fails clearly offline."""

from __future__ import annotations

import json

import pytest

from helpers.errors import UserError
from helpers.config import load_profile
from helpers.export import check_can_push, export_run
from helpers.generation import COT_ANSWER_START, COT_TEMPLATE, pipeline_answers, text_pipeline
from helpers.pipeline import RunConfig, run_pipeline


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    run_pipeline(RunConfig(support_ratio=1.0, data_size=16, num_epoch=1), out, echo=lambda _: None)
    return out


@pytest.mark.slow
def test_export_round_trip(small_run, tmp_path):
    report = export_run(small_run, tmp_path / "model", echo=lambda _: None)
    assert report["same_greedy_answers"] is True
    files = set(report["files"])
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= files
    assert not [f for f in files if f.endswith(".bin")]
    assert json.loads((tmp_path / "model" / "export.json").read_text())["same_greedy_answers"] is True

    # Served by transformers.pipeline, the exported model gives the run's own DPO answers to the test prompts.
    answers = json.loads((small_run / "answers.json").read_text())
    profile = load_profile("tiny")
    served = pipeline_answers(text_pipeline(tmp_path / "model"), [a["prompt"] for a in answers],
                              system_prompt=profile.system_prompt, max_new_tokens=profile.max_new_tokens)
    assert served == [a["dpo"] for a in answers]
    cot = pipeline_answers(text_pipeline(tmp_path / "model"), [answers[0]["prompt"]], template=COT_TEMPLATE,
                           answer_start=COT_ANSWER_START, max_new_tokens=8)
    assert cot[0].startswith(COT_ANSWER_START)

    # Exporting the same run again replaces its export; any other non-empty folder is refused unless overwrite.
    export_run(small_run, tmp_path / "model", echo=lambda _: None)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an export of"):
        export_run(small_run, tmp_path / "other", echo=lambda _: None)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_push_refuses_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE") as error:
        check_can_push()
    assert "hf_" not in str(error.value), "the token must never appear in a message"


def test_push_needs_a_token(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(UserError, match="no token"):
        check_can_push()


def test_export_with_push_offline_writes_nothing(small_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError):
        export_run(small_run, tmp_path / "model", push_to_hub="someone/model", echo=lambda _: None)
    assert not (tmp_path / "model").exists()


def test_export_refuses_a_run_without_its_sft_adapter(small_run, tmp_path):
    """The DPO adapter sits on the SFT model: exporting it onto the bare base model would be a different model."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    shutil.rmtree(run / "sft_adapter")
    with pytest.raises(UserError, match="no sft_adapter"):
        export_run(run, tmp_path / "model", echo=lambda _: None)
    assert not (tmp_path / "model").exists()
