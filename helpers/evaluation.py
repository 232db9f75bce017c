"""Measuring stance and fluency: log-probabilities of the support and oppose answers on held-out prompts, DPO's
implicit reward against the reference, a small stance judge for generated answers, and repetition."""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from helpers.hardware import autocast_for
from helpers.judge import StanceJudge
from helpers.templates import chat_messages, encode_prompt_completion, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@torch.no_grad()
def _scored(model: torch.nn.Module, encoded: list[tuple[list[int], list[int]]], pad_id: int,
            batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probability of each completion (token ids) after its prompt (token ids), and its token count.

    A token's log-probability is its logit minus the log-sum-exp of its row, taken one sequence at a time in fp32:
    never a full-vocabulary fp32 copy of the batch's logits (6 GB for Llama 3's 128k vocabulary at batch 16). Batches
    hold at most EVAL_LOGIT_VALUES logits (helpers.memory counts the same).
    """
    from helpers.memory import EVAL_LOGIT_VALUES

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    vocab = model.get_output_embeddings().weight.shape[0]
    sums, counts = [], []
    start = 0
    while start < len(encoded):
        length = max(len(p) + len(c) for p, c in encoded[start:start + batch_size])
        rows = max(1, min(batch_size, EVAL_LOGIT_VALUES // (length * vocab)))
        batch = encoded[start:start + rows]
        start += rows
        length = max(len(p) + len(c) for p, c in batch)
        input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        completion = torch.zeros_like(input_ids, dtype=torch.bool)
        for row, (p, c) in enumerate(batch):  # right padding: positions start at 0 for every row
            input_ids[row, :len(p) + len(c)] = torch.tensor(p + c)
            attention[row, :len(p) + len(c)] = 1
            completion[row, len(p):len(p) + len(c)] = True
        input_ids, attention, completion = input_ids.to(device), attention.to(device), completion.to(device)
        with autocast_for(model):  # bf16 products on a CPU with bf16 units (the sums below stay fp32)
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
        targets = input_ids[:, 1:]
        picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).float()
        norms = torch.stack([torch.logsumexp(row.float(), dim=-1) for row in logits])
        mask = completion[:, 1:]
        sums.append(((picked - norms) * mask).sum(-1).cpu())
        counts.append(mask.sum(-1).cpu())
        del logits
    model.train(was_training)
    return torch.cat(sums).numpy().astype(np.float64), torch.cat(counts).numpy()


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def completion_logps(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]],
                     answers: list[str], batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probability of each answer (with the template's end of turn) given its chat-formatted prompt, and
    the answer's token count."""
    encoded = [encode_prompt_completion(tokenizer, m, a) for m, a in zip(prompts, answers)]
    return _scored(model, encoded, _pad_id(tokenizer), batch_size)


def answer_fluency(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                   answers: list[str], system_prompt: str | None = None, batch_size: int = 16) -> np.ndarray:
    """Per answer: its mean per-token log-probability under `model` (NaN for an empty answer); see fluency."""
    encoded = [(tokenizer(render_prompt(tokenizer, chat_messages(p, system_prompt)), add_special_tokens=False)
                ["input_ids"], tokenizer(a, add_special_tokens=False)["input_ids"]) for p, a in zip(prompts, answers)]
    values = np.full(len(encoded), math.nan)
    kept = [i for i, (_, c) in enumerate(encoded) if c]  # an empty answer has no tokens to score
    if kept:
        sums, counts = _scored(model, [encoded[i] for i in kept], _pad_id(tokenizer), batch_size)
        values[kept] = sums / counts
    return values


def fluency(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str], answers: list[str],
            system_prompt: str | None = None, batch_size: int = 16) -> float:
    """Mean per-token log-probability of generated answers under `model` (pass the untrained base model): how natural
    the text reads to the model it started from. Only the answer's own tokens are scored, not an end of turn, so a cut
    answer is not penalised here (`ended_rate` sees that). A looping answer can score high: read `repetition` too."""
    values = answer_fluency(model, tokenizer, prompts, answers, system_prompt, batch_size)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def stance_logps(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, rows: list[dict],
                 system_prompt: str | None = None, batch_size: int = 16) -> pd.DataFrame:
    """Per held-out row: summed and mean per-token log-probs of its support and of its oppose answer."""
    prompts = [chat_messages(r["prompt"], system_prompt) for r in rows]
    table = pd.DataFrame({"id": [r["id"] for r in rows]})
    for stance in ("support", "oppose"):
        sums, counts = completion_logps(model, tokenizer, prompts, [r[stance] for r in rows], batch_size)
        table[f"{stance}_logp"] = sums
        table[f"{stance}_tokens"] = counts
        table[f"{stance}_mean_logp"] = sums / np.maximum(counts, 1)
    return table


def support_rate(table: pd.DataFrame) -> float:
    """Share of held-out prompts where the support answer has the higher mean per-token log-probability."""
    return float((table["support_mean_logp"] > table["oppose_mean_logp"]).mean())


def logp_gap(table: pd.DataFrame) -> float:
    """Mean over held-out rows of (support − oppose) mean per-token log-probability, in nats per token: how far, and
    which way, the model leans; unlike support_rate it also moves when no row changes side."""
    return float((table["support_mean_logp"] - table["oppose_mean_logp"]).mean())


def implicit_reward_margins(policy: pd.DataFrame, reference: pd.DataFrame, preferred: list[str],
                            beta: float) -> np.ndarray:
    """Per held-out pair: DPO's implicit reward margin beta·(log-ratio chosen − log-ratio rejected) against the
    reference, where `preferred` says which answer ("support" or "oppose") the run was trained to prefer."""
    ratio_support = policy["support_logp"].to_numpy() - reference["support_logp"].to_numpy()
    ratio_oppose = policy["oppose_logp"].to_numpy() - reference["oppose_logp"].to_numpy()
    sign = np.array([1.0 if p == "support" else -1.0 for p in preferred])
    return beta * sign * (ratio_support - ratio_oppose)


def implicit_reward_metrics(policy: pd.DataFrame, reference: pd.DataFrame, preferred: list[str],
                            beta: float) -> dict[str, float]:
    """pair_accuracy (share of held-out pairs with a positive implicit reward margin) and mean_margin."""
    margins = implicit_reward_margins(policy, reference, preferred, beta)
    return {"pair_accuracy": float((margins > 0).mean()), "mean_margin": float(margins.mean())}


def train_stance_judge(rows: list[dict], seed: int = 0) -> StanceJudge:
    """A character 1–4-gram TF-IDF + logistic regression judge on the rows' answers: 1 = support, 0 = oppose.

    1–4-grams were chosen over 1–3 by 5-fold cross-validation on all bundled answers (labelled and held-out, both
    languages): 0.871 against 0.861, never on generated answers. `seed` is kept for the callers: the fit is exact.
    """
    texts = [r["support"] for r in rows] + [r["oppose"] for r in rows]
    return StanceJudge(ngram_range=(1, 4)).fit(texts, [1] * len(rows) + [0] * len(rows))


def judge_accuracy(judge: StanceJudge, rows: list[dict]) -> float:
    """The judge's accuracy on the support and oppose answers of rows it was not trained on."""
    texts = [r["support"] for r in rows] + [r["oppose"] for r in rows]
    labels = np.array([1] * len(rows) + [0] * len(rows))
    return float((np.array(judge.predict(texts)) == labels).mean())


def repetition_shares(answers: list[str], n: int = 3) -> list[float]:
    """Per answer: its share of repeated character n-grams (NaN for an answer shorter than n characters)."""
    shares = []
    for answer in answers:
        grams = [answer[i:i + n] for i in range(len(answer) - n + 1)]
        shares.append(sum(c - 1 for c in Counter(grams).values()) / len(grams) if grams else math.nan)
    return shares


def repetition(answers: list[str], n: int = 3) -> float:
    """Mean share of repeated character n-grams per answer: 0 for no repeats, near 1 for a looping answer."""
    shares = [s for s in repetition_shares(answers, n) if not math.isnan(s)]
    return float(np.mean(shares)) if shares else 0.0


def looping_share(answer: str) -> float:
    """Share of repeated units in an answer: word 3-grams when it has spaces (English), else character 4-grams.
    The bundled answers score 0; "No, no, no, no, …" scores above 0.9."""
    words = answer.lower().split()
    units = [tuple(words[i:i + 3]) for i in range(len(words) - 2)] if len(words) > 3 else \
        [answer[i:i + 4] for i in range(len(answer) - 3)]
    return sum(c - 1 for c in Counter(units).values()) / len(units) if units else 0.0


def is_language(answer: str) -> bool:
    """False for what no stance can be read from: empty, broken characters, mostly non-letters, or a looping
    fragment (over 35 % of its word 3-grams / character 4-grams repeated)."""
    text = answer.strip()
    if not text or "\ufffd" in text:
        return False
    visible = [ch for ch in text if not ch.isspace()]
    letters = sum(unicodedata.category(ch).startswith("L") for ch in visible)
    return letters >= 0.5 * len(visible) and looping_share(text) <= 0.35


def judge_stances(judge: StanceJudge, answers: list[str]) -> list[int | None]:
    """Per answer: 1 (support), 0 (oppose), or None where the judge abstains (not language: see is_language)."""
    readable = [i for i, a in enumerate(answers) if is_language(a)]
    labels: list[int | None] = [None] * len(answers)
    if readable:
        for i, label in zip(readable, judge.predict([answers[i] for i in readable])):
            labels[i] = int(label)
    return labels


def generated_support_rate(judge: StanceJudge, answers: list[str]) -> float:
    """Share of generated answers the judge reads as support, out of ALL answers: one it abstains on counts as not
    support (so read judge_abstained beside it; a low rate made of abstentions is broken text, not opposition)."""
    if not answers:
        return math.nan
    return float(np.mean([label == 1 for label in judge_stances(judge, answers)]))


def judge_abstained(judge: StanceJudge, answers: list[str]) -> float:
    """Share of answers the judge abstains on (empty, broken, not letters, or looping)."""
    return float(np.mean([label is None for label in judge_stances(judge, answers)])) if answers else math.nan


def mean_answer_chars(answers: list[str]) -> float:
    """Mean length of the answers, in characters."""
    return float(np.mean([len(a) for a in answers])) if answers else 0.0


def generation_metrics(judge: StanceJudge, answers: list[str], ended: list[bool] | None = None) -> dict[str, float]:
    """Stance and form of generated answers (ended: which answers stopped before max_new_tokens)."""
    metrics = {
        "generated_support_rate": generated_support_rate(judge, answers),
        "judge_abstained": judge_abstained(judge, answers),
        "mean_answer_chars": mean_answer_chars(answers),
        "repetition": repetition(answers),
    }
    if ended is not None:
        metrics["ended_rate"] = float(np.mean(ended)) if ended else math.nan
    return metrics
