"""How sure a number is: 95 % bootstrap intervals for a measurement that is a mean over rows (held-out prompts,
probes, test prompts), over one seed or several, and the difference of two settings with a one-sentence verdict.

- One seed: the rows are resampled (with replacement); the interval says how much the number would move with
  other prompts of the same kind. It does not see training noise: another seed may land elsewhere.
- Several seeds: a two-level bootstrap; each draw picks seeds with replacement, then rows within each picked seed.
  With 2–3 seeds the seed level is coarse (few distinct draws): treat the interval as a rough guide.
- Two settings: paired by seed (the same seed shares the SFT model and the data order) and, where both runs measured
  the same rows, by row (the same resampled prompts on both sides), which takes the prompts' own difficulty out.
The bootstrap generator is seeded (BOOTSTRAP_SEED): the same saved runs give the same intervals, every time.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

BOOTSTRAP_SEED = 0
N_BOOT = 2000
LEVEL = 0.95


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean leaving NaN out (NaN when nothing is left), without NumPy's warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    draws = draws[~np.isnan(draws)]
    if not len(draws):
        return math.nan, math.nan
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _row_means(values: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """The mean of `draws` resamples of the rows (each the rows' count, with replacement)."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return np.full(draws, math.nan)
    return _nanmean(values[rng.integers(0, len(values), size=(draws, len(values)))], axis=1)


def _seed_draws(per_seed: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Two-level bootstrap draws of the mean over seeds: seeds with replacement, then rows within each (one seed:
    rows only)."""
    choice = rng.integers(0, len(per_seed), size=(n_boot, len(per_seed)))
    means = np.empty(choice.shape)
    for s, values in enumerate(per_seed):
        picked = choice == s
        means[picked] = _row_means(values, int(picked.sum()), rng)
    return _nanmean(means, axis=1)


def interval(per_seed: list[np.ndarray], n_boot: int = N_BOOT, seed: int = BOOTSTRAP_SEED,
             level: float = LEVEL) -> tuple[float, float]:
    """The 95 % interval of a mean over rows, averaged over seeds: rows resampled within each seed, and seeds
    resampled when there are several. per_seed holds each seed's per-row values (NaN rows are left out)."""
    if not per_seed:
        return math.nan, math.nan
    return _percentiles(_seed_draws([np.asarray(v, dtype=float) for v in per_seed], n_boot,
                                    np.random.default_rng(seed)), level)


def describe_seeds(values: dict[int, float], rows: dict[int, pd.Series | None], n_boot: int = N_BOOT,
                   seed: int = BOOTSTRAP_SEED) -> dict:
    """One measurement over seeds: mean, spread (sd, min, max), the per-seed values and the 95 % interval (None when
    some seed has no per-row values, e.g. a run saved before they were kept)."""
    kept = {s: float(v) for s, v in sorted(values.items()) if v is not None and not math.isnan(float(v))}
    numbers = np.array(list(kept.values()))
    missing = [s for s in kept if rows.get(s) is None]
    low, high = (math.nan, math.nan) if missing or not kept else interval(
        [rows[s].to_numpy(dtype=float) for s in kept], n_boot, seed)
    return {"n_seeds": len(kept), "mean": float(numbers.mean()) if len(numbers) else math.nan,
            "sd": float(numbers.std(ddof=1)) if len(numbers) > 1 else math.nan,
            "min": float(numbers.min()) if len(numbers) else math.nan,
            "max": float(numbers.max()) if len(numbers) else math.nan,
            "low": low, "high": high, "per_seed": kept,
            "interval": ("unavailable: no per-row values saved for seed " + ", ".join(map(str, missing))) if missing
            else "no value" if not kept else "rows" if len(kept) == 1 else "seeds and rows"}


@dataclass
class Difference:
    """Setting b minus setting a on one measurement, with its 95 % interval and how the two were paired."""

    metric: str
    a: str
    b: str
    difference: float
    low: float
    high: float
    n_seeds: int
    paired_seeds: bool
    paired_rows: bool
    note: str = ""

    @property
    def tells_apart(self) -> bool:
        """True only when the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def verdict(self) -> str:
        """One plain sentence: the difference, its interval, and whether this data can tell the settings apart."""
        if math.isnan(self.low):
            return (f"{self.b} minus {self.a}, {self.metric}: {self.difference:+.3f}; no interval ({self.note}), "
                    "so no verdict.")
        span = (f"{self.b} minus {self.a}, {self.metric}: {self.difference:+.3f} "
                f"(95 % interval {self.low:+.3f} to {self.high:+.3f})")
        caveat = " One seed only: the interval covers which prompts were asked, not training noise." \
            if self.n_seeds == 1 else ""
        if self.tells_apart:
            way = "higher" if self.difference > 0 else "lower"
            return f"{span}: this data can tell the two settings apart ({self.metric} is {way} with {self.b}).{caveat}"
        reaches = "reaches" if 0.0 in (self.low, self.high) else "includes"
        return f"{span}: this data cannot tell the two settings apart (the interval {reaches} 0).{caveat}"

    def as_dict(self) -> dict:
        return {**asdict(self), "tells_apart": self.tells_apart, "verdict": self.verdict()}


def _same_rows(a: pd.Series, b: pd.Series) -> bool:
    return len(a) == len(b) and set(a.index) == set(b.index) and a.index.is_unique


def _pair_draws(a: pd.Series, b: pd.Series, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of mean(b) − mean(a) for one seed: the same resampled rows on both sides when they measured the same
    rows, else each side resampled on its own."""
    if _same_rows(a, b):
        b = b.reindex(a.index)
        index = rng.integers(0, len(a), size=(draws, len(a)))
        return _nanmean(b.to_numpy(float)[index], axis=1) - _nanmean(a.to_numpy(float)[index], axis=1)
    return _row_means(b.to_numpy(float), draws, rng) - _row_means(a.to_numpy(float), draws, rng)


def paired_difference(a: dict[int, pd.Series], b: dict[int, pd.Series], metric: str = "value",
                      names: tuple[str, str] = ("a", "b"), n_boot: int = N_BOOT,
                      seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> Difference:
    """b minus a, each given as seed → per-row values (a Series indexed by row id): the mean over seeds of the
    difference of the row means, and its 95 % bootstrap interval. The seeds both sides have are paired (others are
    left out); with no seed in common each side is bootstrapped on its own."""
    def mean(values: pd.Series) -> float:
        return float(_nanmean(values.to_numpy(float)))

    rng = np.random.default_rng(seed)
    common = sorted(set(a) & set(b))
    if common:
        choice = rng.integers(0, len(common), size=(n_boot, len(common)))
        diffs = np.empty(choice.shape)
        for slot, s in enumerate(common):
            picked = choice == slot
            diffs[picked] = _pair_draws(a[s], b[s], int(picked.sum()), rng)
        low, high = _percentiles(_nanmean(diffs, axis=1), level)
        left_out = sorted(set(a) ^ set(b))
        return Difference(metric, *names, float(np.mean([mean(b[s]) - mean(a[s]) for s in common])), low, high,
                          len(common), True, all(_same_rows(a[s], b[s]) for s in common),
                          note=f"seeds {left_out} are on one side only and left out" if left_out else "")
    draws = [_seed_draws([v.to_numpy(float) for v in side.values()], n_boot, rng) for side in (a, b)]
    low, high = _percentiles(draws[1] - draws[0], level)
    point = float(np.mean([mean(v) for v in b.values()]) - np.mean([mean(v) for v in a.values()]))
    return Difference(metric, *names, point, low, high, min(len(a), len(b)), False, False,
                      note="no seed in common: the two sides are not paired")
