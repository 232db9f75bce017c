"""Intervals and verdicts on synthetic per-row values whose truth is known: reproducible, a real difference is told
apart, no difference is not, pairing by row takes the prompts' own difficulty out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from helpers import stats

IDS = list(range(1001, 1049))  # 48 held-out rows


def _runs(rate: float, seeds=(0, 1, 2), generator_seed: int = 0) -> dict[int, pd.Series]:
    """seed → 0/1 per row (the model leans support on a row with probability `rate`)."""
    rng = np.random.default_rng(generator_seed)
    return {s: pd.Series((rng.random(len(IDS)) < rate).astype(float), index=IDS) for s in seeds}


def test_intervals_are_reproducible_with_a_fixed_seed():
    per_seed = [v.to_numpy() for v in _runs(0.6).values()]
    first, again = stats.interval(per_seed), stats.interval(per_seed)
    assert first == again
    other = stats.interval(per_seed, seed=stats.BOOTSTRAP_SEED + 1)
    assert other != first and abs(other[0] - first[0]) < 0.05  # another bootstrap seed: close, not equal
    a, b = _runs(0.3), _runs(0.7, generator_seed=1)
    assert stats.paired_difference(a, b).as_dict() == stats.paired_difference(a, b).as_dict()


def test_a_known_difference_is_detected():
    a, b = _runs(0.3), _runs(0.8, generator_seed=1)
    found = stats.paired_difference(a, b, "support_rate", ("ratio 0", "ratio 1"))
    observed = np.mean([b[s].mean() - a[s].mean() for s in a])
    assert found.difference == pytest.approx(observed)
    assert 0 < found.low < observed < found.high
    assert found.tells_apart and found.n_seeds == 3 and found.paired_seeds and found.paired_rows
    assert "can tell the two settings apart (support_rate is higher with ratio 1)" in found.verdict()


@pytest.mark.parametrize("generator_seed", [1, 2, 3])
def test_no_difference_is_reported_as_cannot_tell_apart(generator_seed):
    a, b = _runs(0.6), _runs(0.6, generator_seed=generator_seed)
    found = stats.paired_difference(a, b, "support_rate")
    assert found.low < 0 < found.high and not found.tells_apart
    assert "cannot tell the two settings apart" in found.verdict()
    same = stats.paired_difference(a, a)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0) and "cannot tell" in same.verdict()


def test_pairing_by_row_takes_out_the_rows_own_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 1.0, len(IDS))  # some prompts lean one way for every model
    a = {0: pd.Series(difficulty + rng.normal(0, 0.1, len(IDS)), index=IDS)}
    b = {0: pd.Series(difficulty + 0.1 + rng.normal(0, 0.1, len(IDS)), index=IDS)}
    paired = stats.paired_difference(a, b)
    other_rows = {0: b[0].set_axis([i + 1000 for i in IDS])}  # the same values, measured on other rows
    unpaired = stats.paired_difference(a, other_rows)
    assert paired.paired_rows and not unpaired.paired_rows
    assert paired.difference == pytest.approx(unpaired.difference)
    assert paired.tells_apart and not unpaired.tells_apart
    assert (paired.high - paired.low) < (unpaired.high - unpaired.low) / 5


def test_one_seed_is_over_rows_and_several_seeds_add_their_spread():
    rows = {s: pd.Series(np.r_[np.ones(n), np.zeros(48 - n)], index=IDS) for s, n in ((0, 10), (1, 24), (2, 38))}
    alone = stats.describe_seeds({1: 0.5}, {1: rows[1]})
    together = stats.describe_seeds({s: rows[s].mean() for s in rows}, rows)
    assert alone["interval"] == "rows" and math.isnan(alone["sd"]) and alone["low"] < 0.5 < alone["high"]
    assert together["interval"] == "seeds and rows" and together["mean"] == pytest.approx(0.5)
    assert together["sd"] == pytest.approx(np.std([10 / 48, 0.5, 38 / 48], ddof=1))
    assert together["high"] - together["low"] > alone["high"] - alone["low"]  # seeds that disagree widen it
    assert stats.paired_difference({1: rows[1]}, {1: rows[2]}).verdict().endswith("not training noise.")


def test_a_seed_without_per_row_values_leaves_the_interval_unavailable():
    rows = _runs(0.5, seeds=(0,))
    described = stats.describe_seeds({0: 0.5, 1: 0.6}, {0: rows[0], 1: None})
    assert described["mean"] == pytest.approx(0.55) and math.isnan(described["low"])
    assert described["interval"] == "unavailable: no per-row values saved for seed 1"
