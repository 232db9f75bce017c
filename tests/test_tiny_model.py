"""The tiny offline model: deterministic, offline, a byte-level tokenizer with a chat template, and pretrained."""

from __future__ import annotations

import copy
import json

import pytest

from helpers import tiny_model as tm

TEXTS = ["Live action can bring a story to new viewers.", "真人版能讓更多觀眾認識原作。",
         "Costumes and wigs often look cheap on screen.", "漫畫的誇張表情很難用真人演出。"] * 40


def small_recipe() -> dict:
    """The real recipe with a short pretraining, to keep the determinism test quick."""
    recipe = copy.deepcopy(tm.RECIPE)
    recipe["pretrain"]["steps"] = 15
    return recipe


def test_build_is_deterministic(tmp_path):
    facts = [tm.build_tiny_model(tmp_path / name, TEXTS, small_recipe()) for name in ("a", "b")]
    hashes = [tm.weights_hash(tm.load_tiny(tmp_path / name)[0]) for name in ("a", "b")]
    assert hashes[0] == hashes[1]
    assert facts[0]["first_loss"] == facts[1]["first_loss"]
    assert (tmp_path / "a" / "model.safetensors").exists()
    assert json.loads((tmp_path / "a" / "tokenizer.json").read_text()) == \
        json.loads((tmp_path / "b" / "tokenizer.json").read_text())


def test_recipe_hash_changes_with_corpus_and_recipe():
    assert tm.recipe_hash(TEXTS) == tm.recipe_hash(list(TEXTS))
    assert tm.recipe_hash(TEXTS) != tm.recipe_hash(TEXTS + ["one more line"])
    assert tm.recipe_hash(TEXTS) != tm.recipe_hash(TEXTS, small_recipe())


def test_cached_model_is_reused(tiny_path):
    before = (tiny_path / "build.json").stat().st_mtime_ns
    assert tm.tiny_model_path() == tiny_path
    assert (tiny_path / "build.json").stat().st_mtime_ns == before


def test_build_needs_no_network(tmp_path, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the tiny build tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    tm.build_tiny_model(tmp_path / "offline", TEXTS, small_recipe())
    tm.load_tiny(tmp_path / "offline")


@pytest.mark.parametrize("text", [
    "Should manga be adapted into live action?",
    "動漫真人化是否有損原作形象？回覆請少於20字",
    "Emoji 🎬 and accents: café, naïve — tabs\tand\nnewlines",
    "日本語のテキストと한국어 텍스트",  # scripts the corpus never saw
])
def test_tokenizer_round_trips_without_unknown_tokens(tiny, text):
    _, tokenizer = tiny
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert not set(ids) & set(tokenizer.all_special_ids), "ordinary text must never map to a special token"


def test_reloaded_tokenizer_matches_trained_one(tiny_path):
    trained = tm.train_tokenizer(tm.corpus_texts())
    _, reloaded = tm.load_tiny(tiny_path)
    for text in tm.corpus_texts()[:50] + ["真人版 live-action 2026!"]:
        assert reloaded(text, add_special_tokens=False)["input_ids"] == \
            trained(text, add_special_tokens=False)["input_ids"]


def test_chat_template_ends_with_assistant_header(tiny):
    _, tokenizer = tiny
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "真人版好嗎？"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    without = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert not without.endswith("assistant\n")


def test_pad_is_not_eos(tiny):
    model, tokenizer = tiny
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_size_is_tiny(tiny):
    model, _ = tiny
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 <= n <= 3_000_000, n


def test_pretraining_lowers_heldout_loss(tiny):
    """Held-out text (the eval file, never in the corpus) is far more likely after the short pretraining."""
    model, tokenizer = tiny
    heldout = tm.heldout_texts()
    untrained = tm.make_model(tokenizer)
    trained_loss = tm.lm_loss(model, tokenizer, heldout)
    untrained_loss = tm.lm_loss(untrained, tokenizer, heldout)
    assert trained_loss < untrained_loss - 1.5, (trained_loss, untrained_loss)


def test_generation_never_emits_part_of_a_character(tiny):
    from helpers.generation import generate_answers

    model, tokenizer = tiny
    banned = set(model.generation_config.suppress_tokens)
    assert banned == set(tm.partial_character_tokens(tokenizer)) and banned, "the saved model bans no token"
    whole = tokenizer("真人版", add_special_tokens=False)["input_ids"]
    assert not banned & set(whole) or "\ufffd" in tokenizer.decode(whole), "a whole-character token was banned"
    prompts = ["真人版應該保留原作的服裝嗎？", "漫畫改編成真人電影好嗎？", "Should a manga keep its hair colours?"] * 4
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=40, batch_size=12, progress=False)
    assert all("\ufffd" not in a for a in answers), [a for a in answers if "\ufffd" in a][:2]
    # The ban holds even against a model that wants a partial token: push one up by +100 in every step.
    partial = sorted(banned)[-1]
    encoded = tokenizer(["漫畫改編成真人電影好嗎？"], return_tensors="pt")
    pushed = dict(max_new_tokens=6, do_sample=False, sequence_bias={(partial,): 100.0},
                  pad_token_id=tokenizer.pad_token_id)
    assert partial not in model.generate(**encoded, **pushed)[0, encoded["input_ids"].shape[1]:].tolist()
    model.generation_config.suppress_tokens = None  # without the ban the pushed token comes out: the check can fail
    assert partial in model.generate(**encoded, **pushed)[0, encoded["input_ids"].shape[1]:].tolist()
