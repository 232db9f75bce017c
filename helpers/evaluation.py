"""Measuring stance and fluency: log-probabilities of the support and oppose answers on held-out prompts, DPO's
implicit reward against the reference, a small stance judge for generated answers, and repetition."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from transformers import PreTrainedTokenizerBase

from helpers.templates import chat_messages, encode_prompt_completion


@torch.no_grad()
def completion_logps(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]],
                     answers: list[str], batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probability of each answer given its chat-formatted prompt, and the answer's token count."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums, counts = [], []
    for start in range(0, len(prompts), batch_size):
        encoded = [encode_prompt_completion(tokenizer, m, a)
                   for m, a in zip(prompts[start:start + batch_size], answers[start:start + batch_size])]
        length = max(len(p) + len(c) for p, c in encoded)
        input_ids = torch.full((len(encoded), length), pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        completion = torch.zeros_like(input_ids, dtype=torch.bool)
        for row, (p, c) in enumerate(encoded):  # right padding: positions start at 0 for every row
            input_ids[row, :len(p) + len(c)] = torch.tensor(p + c)
            attention[row, :len(p) + len(c)] = 1
            completion[row, len(p):len(p) + len(c)] = True
        input_ids, attention, completion = input_ids.to(device), attention.to(device), completion.to(device)
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        targets = input_ids[:, 1:]
        token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        mask = completion[:, 1:]
        sums.append((token_logps * mask).sum(-1).cpu())
        counts.append(mask.sum(-1).cpu())
    model.train(was_training)
    return torch.cat(sums).numpy().astype(np.float64), torch.cat(counts).numpy()


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


def implicit_reward_metrics(policy: pd.DataFrame, reference: pd.DataFrame, preferred: list[str],
                            beta: float) -> dict[str, float]:
    """DPO's implicit reward beta·(log-ratio chosen − log-ratio rejected) per held-out pair, against the reference.

    `preferred` says, per row, which answer the run was trained to prefer ("support" or "oppose").
    Returns pair_accuracy (share of pairs with a positive margin) and mean_margin.
    """
    ratio_support = policy["support_logp"].to_numpy() - reference["support_logp"].to_numpy()
    ratio_oppose = policy["oppose_logp"].to_numpy() - reference["oppose_logp"].to_numpy()
    sign = np.array([1.0 if p == "support" else -1.0 for p in preferred])
    margins = beta * sign * (ratio_support - ratio_oppose)
    return {"pair_accuracy": float((margins > 0).mean()), "mean_margin": float(margins.mean())}


def train_stance_judge(rows: list[dict], seed: int = 0) -> Pipeline:
    """A TF-IDF (character 1–3-grams) + logistic regression classifier: 1 = support, 0 = oppose."""
    texts = [r["support"] for r in rows] + [r["oppose"] for r in rows]
    labels = [1] * len(rows) + [0] * len(rows)
    judge = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True),
                          LogisticRegression(C=10.0, max_iter=2000, random_state=seed))
    return judge.fit(texts, labels)


def judge_accuracy(judge: Pipeline, rows: list[dict]) -> float:
    """The judge's accuracy on the support and oppose answers of rows it was not trained on."""
    texts = [r["support"] for r in rows] + [r["oppose"] for r in rows]
    labels = np.array([1] * len(rows) + [0] * len(rows))
    return float((judge.predict(texts) == labels).mean())


def generated_support_rate(judge: Pipeline, answers: list[str]) -> float:
    """Share of generated answers the judge labels support (empty answers count as not support)."""
    if not answers:
        return math.nan
    texts = [a if a.strip() else " " for a in answers]
    return float(np.mean([int(p) == 1 and t.strip() != "" for p, t in zip(judge.predict(texts), texts)]))


def repetition(answers: list[str], n: int = 3) -> float:
    """Mean share of repeated character n-grams per answer: 0 for no repeats, near 1 for a looping answer."""
    shares = []
    for answer in answers:
        grams = [answer[i:i + n] for i in range(len(answer) - n + 1)]
        if grams:
            counts = Counter(grams)
            shares.append(sum(c - 1 for c in counts.values()) / len(grams))
    return float(np.mean(shares)) if shares else 0.0


def mean_answer_chars(answers: list[str]) -> float:
    """Mean length of the answers, in characters."""
    return float(np.mean([len(a) for a in answers])) if answers else 0.0


def generation_metrics(judge: Pipeline, answers: list[str]) -> dict[str, float]:
    """Stance and fluency of generated answers."""
    return {
        "generated_support_rate": generated_support_rate(judge, answers),
        "mean_answer_chars": mean_answer_chars(answers),
        "repetition": repetition(answers),
    }
