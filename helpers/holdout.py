"""Held-out rows for a homework run: the courses ship no held-out data, so support_rate is measured on labelled rows
the run never trained on, and metrics.json says which ones.

  rest     the labelled rows after the first data_size (the ones the course's code leaves unused)
  kfold-K  when every row is trained on: K extra DPO trainings, each on the pairs outside one fold, each measured on
           its fold; the submitted model still trains on all the course's pairs, so its answers are unchanged
  none     no stance measurement (support_rate is left out)
  auto     rest when at least one row is left over, else none: the course trains once, and so does a homework
           run unless a k-fold measurement is asked for
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd

from helpers.errors import UserError

HOLDOUT_CHOICES = "auto, rest, kfold-K (K from 2 to data_size), or none"


def holdout_plan(config, n_rows: int) -> dict:
    """Which rows a homework run measures on: {"method", "first_row" or "folds", "rows", "note"}."""
    size = config.data_size or n_rows
    method = config.holdout
    if method == "auto":
        method = "rest" if size < n_rows else "none"
    if method == "rest":
        left = n_rows - size
        note = (f"the {left} labelled rows after the first {size} (never trained on)" if left else
                f"all {n_rows} labelled rows are trained on: nothing is left to measure on; use --holdout kfold-5")
        return {"method": "rest", "first_row": size, "rows": left, "note": note}
    if method == "none":
        note = ("no held-out stance measurement: every labelled row is trained on, as in the course (--holdout "
                "kfold-5 measures one at the cost of 5 extra trainings)" if config.holdout == "auto" else
                "no stance measurement asked for (--holdout none)")
        return {"method": "none", "rows": 0, "note": note}
    match = re.fullmatch(r"kfold-(\d+)", method)
    if not match or not 2 <= int(match.group(1)) <= size:
        raise UserError(f"holdout (--holdout) is {config.holdout!r}; allowed: {HOLDOUT_CHOICES}")
    folds = int(match.group(1))
    return {"method": "kfold", "folds": folds, "rows": size,
            "note": f"{folds}-fold over the {size} training rows: each row is measured by a model trained on the "
                    f"other folds' pairs ({folds} extra DPO trainings); the submitted model trains on all {size}"}


def fold_of(index: int, size: int, folds: int) -> int:
    """The fold of training row `index`: contiguous blocks, as even as possible."""
    return index * folds // size


def _tables(model, tokenizer, rows: list[dict], system_prompt: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Log-prob tables of the trained model and of the same network with its adapter off (the base model)."""
    from helpers.evaluation import stance_logps

    trained = stance_logps(model, tokenizer, rows, system_prompt)
    with model.disable_adapter():
        base = stance_logps(model, tokenizer, rows, system_prompt)
    return trained, base


def kfold_tables(plan: dict, rows: list[dict], pairs, tokenizer, system_prompt: str | None,
                 train_fold: Callable, release: Callable) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(trained, base, preferred) over the first len(pairs) rows, each row measured by a model trained on the pairs
    of the other folds. train_fold(fold_pairs, name) trains a fresh adapter on the start model and returns the
    trained model; release(model) takes that adapter off again once the fold is measured."""
    size, folds = len(pairs), plan["folds"]
    trained, base = [], []
    for fold in range(folds):
        inside = [i for i in range(size) if fold_of(i, size, folds) == fold]
        model = train_fold(pairs.select([i for i in range(size) if i not in inside]), f"fold-{fold}")
        fold_trained, fold_base = _tables(model, tokenizer, [rows[i] for i in inside], system_prompt)
        trained.append(fold_trained)
        base.append(fold_base)
        release(model)
        del model
    return pd.concat(trained, ignore_index=True), pd.concat(base, ignore_index=True), list(pairs["preferred"])


def rest_tables(plan: dict, rows: list[dict], model, tokenizer, system_prompt: str | None,
                preferred_of: Callable) -> tuple[pd.DataFrame, pd.DataFrame, list[str]] | None:
    """(trained, base, preferred) on the rows after the training rows; None when none are left."""
    held = rows[plan["first_row"]:]
    if not held:
        return None
    trained, base = _tables(model, tokenizer, held, system_prompt)
    return trained, base, preferred_of(held)
