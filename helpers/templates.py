"""Chat templates: turning messages into the exact text and tokens a model sees, prompt and completion apart."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def chat_messages(prompt: str, system_prompt: str | None = None) -> list[dict]:
    """A single-turn conversation: an optional system message, then the user's prompt."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": prompt}]


def _as_ids(encoded) -> list[int]:
    """apply_chat_template(tokenize=True) returns a list in some versions and a BatchEncoding in others."""
    if hasattr(encoded, "keys") and "input_ids" in encoded:
        encoded = encoded["input_ids"]
    return list(encoded)


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> str:
    """The prompt text, ending with the assistant header the model answers after."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def split_prompt_completion(tokenizer: PreTrainedTokenizerBase, messages: list[dict],
                            answer: str) -> tuple[str, str]:
    """The templated prompt and the completion text (the answer plus the template's end-of-turn), as TRL splits them."""
    prompt_text = render_prompt(tokenizer, messages)
    full_text = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template renders the prompt differently with and without the answer; "
                         "prompt/completion masks would be wrong")
    return prompt_text, full_text[len(prompt_text):]


def encode_prompt_completion(tokenizer: PreTrainedTokenizerBase, messages: list[dict],
                             answer: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the completion, tokenized apart (no second BOS: the template adds its own)."""
    prompt_text, completion_text = split_prompt_completion(tokenizer, messages, answer)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
    return prompt_ids, completion_ids


def token_texts(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[str]:
    """Each token's text. A byte-level token can hold part of a character (a Chinese character is 3 bytes): it shows
    as "" and the character appears with the token that completes it, instead of as "\ufffd"."""
    texts, shown = [], ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end])
        if text.endswith("\ufffd") or not text.startswith(shown):
            texts.append("" if text.endswith("\ufffd") else tokenizer.decode(ids[end - 1:end]))
            continue
        texts.append(text[len(shown):])
        shown = text
    return texts


def token_table(tokenizer: PreTrainedTokenizerBase, messages: list[dict], answer: str) -> pd.DataFrame:
    """One row per token: its id, its text, and whether it is prompt (no loss) or completion (trained on)."""
    prompt_ids, completion_ids = encode_prompt_completion(tokenizer, messages, answer)
    rows = [(i, "prompt") for i in prompt_ids] + [(i, "completion") for i in completion_ids]
    return pd.DataFrame({
        "token_id": [i for i, _ in rows],
        "text": token_texts(tokenizer, [i for i, _ in rows]),
        "part": [part for _, part in rows],
        "special": [i in tokenizer.all_special_ids for i, _ in rows],
    })
