"""Answering prompts: batched, left-padded, greedy by default; plus the one-prompt-at-a-time loop for comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from helpers.templates import chat_messages, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate_with_ends(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                       system_prompt: str | None = None, max_new_tokens: int = 128, batch_size: int = 8,
                       do_sample: bool = False, temperature: float = 0.7,
                       progress: bool = True) -> tuple[list[str], list[bool]]:
    """Answers to the prompts, generated in left-padded batches (greedy unless do_sample), and for each whether it
    ended by itself (an end-of-turn token) before max_new_tokens cut it off."""
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens must follow the prompt directly, so padding goes in front
    stops = model.generation_config.eos_token_id
    stops = set(stops if isinstance(stops, list) else [stops if stops is not None else tokenizer.eos_token_id])
    answers: list[str] = []
    ended: list[bool] = []
    batches = range(0, len(prompts), batch_size)
    try:
        for start in tqdm(batches, desc="generating", unit="batch", disable=not progress, leave=False):
            texts = [render_prompt(tokenizer, chat_messages(p, system_prompt)) for p in prompts[start:start + batch_size]]
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(_device_of(model))
            sampling = dict(do_sample=True, temperature=temperature) if do_sample else dict(do_sample=False)
            # fp32 even where measuring uses CPU bf16 autocast: bf16's rounding flips near-tied greedy choices, so
            # answers would change with the batch's padding (bench: `generation … bf16 autocast`)
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                    **sampling)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            answers.extend(a.strip() for a in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
            ended.extend(bool(any(int(t) in stops for t in row)) for row in new_tokens)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return answers, ended


def generate_answers(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                     system_prompt: str | None = None, max_new_tokens: int = 128, batch_size: int = 8,
                     do_sample: bool = False, temperature: float = 0.7, progress: bool = True) -> list[str]:
    """Answers to the prompts, generated in left-padded batches (greedy unless do_sample)."""
    return generate_with_ends(model, tokenizer, prompts, system_prompt, max_new_tokens, batch_size, do_sample,
                              temperature, progress)[0]


def generate_one_by_one(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                        system_prompt: str | None = None, max_new_tokens: int = 128) -> list[str]:
    """The slow loop many tutorials use: one prompt per generate call (for tests and the benchmark)."""
    return [generate_answers(model, tokenizer, [p], system_prompt, max_new_tokens, batch_size=1, progress=False)[0]
            for p in prompts]


# A chain-of-thought prompt: the question in a template that asks for reasoning, and the start of the answer given,
# so the model continues from "Let's think step by step." instead of answering at once.
COT_TEMPLATE = "Question: {question}\nThink it through step by step, then give your view in one sentence."
COT_ANSWER_START = "Let's think step by step."


def text_pipeline(model_dir: str, device: str | int | None = None):
    """A transformers text-generation pipeline over a saved model folder (e.g. an export): on the GPU in the saved
    precision when there is one, else on the CPU in float32."""
    from transformers import pipeline

    from helpers.config import has_gpu

    if device is None:
        device = 0 if has_gpu() else "cpu"
    on_gpu = str(device) not in ("cpu", "-1")
    return pipeline("text-generation", model=str(model_dir), device=device,
                    dtype="auto" if on_gpu else torch.float32)


def pipeline_answers(pipe, questions: list[str], template: str = "{question}", system_prompt: str | None = None,
                     answer_start: str | None = None, max_new_tokens: int = 128, batch_size: int = 8) -> list[str]:
    """Answers from a text-generation pipeline: each question put in the template, as a chat; greedy.

    With answer_start, the assistant's turn begins with that text and the model continues it (the returned answer
    includes it).
    """
    conversations = []
    for question in questions:
        messages = chat_messages(template.format(question=question), system_prompt)
        if answer_start:
            messages.append({"role": "assistant", "content": answer_start})
        conversations.append(messages)
    outputs = pipe(conversations, max_new_tokens=max_new_tokens, do_sample=False, return_full_text=False,
                   continue_final_message=bool(answer_start), batch_size=batch_size)
    answers = [output[0]["generated_text"].strip() for output in outputs]
    return [f"{answer_start} {a}" if answer_start else a for a in answers]
