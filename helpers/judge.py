"""A small stance judge for generated answers: character n-gram TF-IDF and an L2-regularised logistic regression.

The same model as scikit-learn's `TfidfVectorizer(analyzer="char_wb", sublinear_tf=True)` + `LogisticRegression`,
written with torch (which every run imports anyway) so that measuring a run does not import scikit-learn and SciPy
(several seconds). It reads any language: n-grams are taken inside each space-separated word, so a Chinese sentence
(no spaces) is one long word.
"""

from __future__ import annotations

import math
from collections import Counter

import torch


def char_ngrams(text: str, low: int = 1, high: int = 4) -> list[str]:
    """Character n-grams of each lower-cased word padded with a space (scikit-learn's "char_wb" analyzer)."""
    grams: list[str] = []
    for word in text.lower().split():
        padded = f" {word} "
        for n in range(low, high + 1):
            if len(padded) <= n:
                grams.append(padded)
                continue
            grams.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
    return grams


class StanceJudge:
    """fit(texts, labels) on answers labelled 1 (support) / 0 (oppose); predict(texts) → labels, predict_proba too."""

    def __init__(self, ngram_range: tuple[int, int] = (1, 4), C: float = 10.0, max_iter: int = 200):
        self.ngram_range, self.C, self.max_iter = ngram_range, C, max_iter
        self.vocabulary: dict[str, int] = {}
        self.idf = torch.zeros(0, dtype=torch.float64)
        self.weights = torch.zeros(0, dtype=torch.float64)
        self.bias = 0.0

    def features(self, texts: list[str]) -> torch.Tensor:
        """TF-IDF rows: sublinear term frequency (1 + ln tf) times smoothed idf, each row scaled to unit length."""
        places, values = [], []
        for i, text in enumerate(texts):
            for gram, count in Counter(char_ngrams(text, *self.ngram_range)).items():
                if gram in self.vocabulary:
                    places.append((i, self.vocabulary[gram]))
                    values.append(1.0 + math.log(count))
        rows = torch.zeros(len(texts), len(self.vocabulary), dtype=torch.float64)
        if places:
            index = torch.tensor(places).T
            rows[index[0], index[1]] = torch.tensor(values, dtype=torch.float64)
        rows *= self.idf
        return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def fit(self, texts: list[str], labels: list[int]) -> "StanceJudge":
        """Learn the vocabulary and idf from texts, then minimise ½‖w‖² + C·Σ log(1 + e^(−y·(w·x + b))) with L-BFGS."""
        documents = [set(char_ngrams(t, *self.ngram_range)) for t in texts]
        df = Counter(gram for grams in documents for gram in grams)
        self.vocabulary = {gram: i for i, gram in enumerate(sorted(df))}
        n = len(texts)
        self.idf = torch.tensor([math.log((1 + n) / (1 + df[g])) + 1 for g in sorted(df)], dtype=torch.float64)
        x = self.features(texts)
        y = torch.tensor(labels, dtype=torch.float64) * 2 - 1
        w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([w], max_iter=self.max_iter, tolerance_grad=1e-8, line_search_fn="strong_wolfe")

        def objective() -> torch.Tensor:
            optimizer.zero_grad()
            margins = y * (x @ w[:-1] + w[-1])
            loss = 0.5 * (w[:-1] ** 2).sum() + self.C * torch.nn.functional.softplus(-margins).sum()
            loss.backward()
            return loss

        optimizer.step(objective)
        self.weights, self.bias = w[:-1].detach(), float(w[-1].detach())
        return self

    def decision(self, texts: list[str]) -> torch.Tensor:
        """w·x + b per text: positive reads as support."""
        return self.features(texts) @ self.weights + self.bias

    def predict_proba(self, texts: list[str]) -> list[float]:
        """The probability that each text argues for (support)."""
        return torch.sigmoid(self.decision(texts)).tolist()

    def predict(self, texts: list[str]) -> list[int]:
        """1 (support) or 0 (oppose) per text."""
        return [int(d > 0) for d in self.decision(texts).tolist()]
