"""The double-BOS trap: the courses' notebooks render the chat template to text (which starts with BOS) and tokenize
that text again (which adds another). On a tokenizer that adds BOS, like Llama 3's and Breeze's, our paths must give
exactly one: DPO training (TRL's tokenization of conversational pairs), generation, and the stance measurement."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from helpers import data
from helpers.config import load_profile
from helpers.generation import generate_answers
from helpers.templates import chat_messages, encode_prompt_completion, render_prompt
from helpers.training import dpo_trainer

# A Llama-3-like template: BOS first, then headers per turn; the tokenizer itself also adds BOS to any text.
TEMPLATE = ("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"
            "{% if add_generation_prompt %}[assistant] {% endif %}")
SYSTEM = "Your entire response must be 100 characters or less."


@pytest.fixture(scope="module")
def bos_tokenizer():
    """A small BPE tokenizer that adds <s> to every encoded text, as Llama's and Breeze's do (no download)."""
    rows = data.load_homework()
    texts = [r[k] for r in rows for k in ("prompt", "support", "oppose")] + [SYSTEM, "[system] [user] [assistant]"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>",
                                                                                       "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", chat_template=TEMPLATE)
    tokenizer.padding_side = "left"
    return tokenizer


@pytest.fixture()
def llama(bos_tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(bos_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         bos_token_id=bos_tokenizer.bos_token_id, eos_token_id=bos_tokenizer.eos_token_id,
                         pad_token_id=bos_tokenizer.pad_token_id)
    return LlamaForCausalLM(config)


def test_the_trap_is_real_here(bos_tokenizer):
    """Tokenizing the rendered prompt again, as the courses' notebooks do, gives two BOS tokens."""
    text = render_prompt(bos_tokenizer, chat_messages("Is AI art a tribute?", SYSTEM))
    ids = bos_tokenizer(text)["input_ids"]
    assert ids[:2] == [bos_tokenizer.bos_token_id] * 2


def test_dpo_training_tokenizes_one_bos(bos_tokenizer, llama, tmp_path):
    profile = load_profile("tiny").replace(max_length=128)
    pairs = data.make_preference_pairs(data.load_homework(), 0.5, 4, system_prompt=SYSTEM, split_rule="course")
    trainer = dpo_trainer(llama, bos_tokenizer, pairs, profile, tmp_path, num_epochs=1)
    bos = bos_tokenizer.bos_token_id
    for row in trainer.train_dataset:
        sequence = row["prompt_ids"] + row["chosen_ids"]
        assert sequence[0] == bos and sequence.count(bos) == 1
        assert (row["prompt_ids"] + row["rejected_ids"]).count(bos) == 1


def test_generation_feeds_one_bos(bos_tokenizer, llama):
    seen = []
    original = llama.generate

    def spy(**kwargs):
        seen.append(kwargs["input_ids"])
        return original(**kwargs)

    llama.generate = spy
    prompts = ["Is AI art a tribute?", "Should museums show AI-generated art next to the originals?"]
    generate_answers(llama, bos_tokenizer, prompts, SYSTEM, max_new_tokens=2, batch_size=2, progress=False)
    (batch,) = seen
    for ids in batch.tolist():
        real = [i for i in ids if i != bos_tokenizer.pad_token_id]  # left padding comes first
        assert real[0] == bos_tokenizer.bos_token_id and real.count(bos_tokenizer.bos_token_id) == 1


def test_stance_measurement_encodes_one_bos(bos_tokenizer):
    prompt_ids, completion_ids = encode_prompt_completion(bos_tokenizer, chat_messages("Is AI art a tribute?", SYSTEM),
                                                          "Yes, it is.")
    assert (prompt_ids + completion_ids).count(bos_tokenizer.bos_token_id) == 1
    assert prompt_ids[0] == bos_tokenizer.bos_token_id
