"""The per-row values behind every measurement of a run, saved beside metrics.json as per_row.json: each stage's
held-out table (log-probs of the support and oppose answers, DPO's implicit reward margin), its table on the
out-of-topic probes, and per test prompt the judge's label, the answer's length, repetition, end and fluency.

Every measurement in metrics.json is the mean of one column of these (NaN rows left out), so an interval can be
recomputed from a saved run at any time (helpers.stats). Runs saved before per_row.json existed have none:
load_row_values returns None for them and their intervals are reported as unavailable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.files import read_json, write_json_atomic

FILE = "per_row.json"
VERSION = 1


def _leans_support(table: pd.DataFrame) -> np.ndarray:
    return (table["support_mean_logp"] > table["oppose_mean_logp"]).to_numpy(dtype=float)


def _gap(table: pd.DataFrame) -> np.ndarray:
    return (table["support_mean_logp"] - table["oppose_mean_logp"]).to_numpy(dtype=float)


def _column(name: str, transform: Callable[[np.ndarray], np.ndarray] = lambda v: v) -> Callable:
    def values(table: pd.DataFrame) -> np.ndarray:
        return transform(table[name].to_numpy(dtype=float)) if name in table else np.full(len(table), math.nan)
    return values


def _positive(values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), np.nan, (values > 0).astype(float))


def _label_is(label: float | None) -> Callable[[np.ndarray], np.ndarray]:
    """1.0 where the judge's label is `label` (None: it abstained), else 0.0; every answer counts."""
    return (lambda v: np.isnan(v).astype(float)) if label is None else (lambda v: (v == label).astype(float))


# metric → (which rows it is measured on, its per-row values); metrics.json's value is the NaN-free mean of these.
# probe_support_rate/TOPIC is probe_support_rate on one topic's rows.
ROW_METRICS: dict[str, tuple[str, Callable[[pd.DataFrame], np.ndarray]]] = {
    "support_rate": ("heldout", _leans_support),
    "logp_gap": ("heldout", _gap),
    "pair_accuracy": ("heldout", _column("margin", _positive)),
    "mean_margin": ("heldout", _column("margin")),
    "probe_support_rate": ("probes", _leans_support),
    "probe_logp_gap": ("probes", _gap),
    "generated_support_rate": ("answers", _column("judge", _label_is(1.0))),
    "judge_abstained": ("answers", _column("judge", _label_is(None))),
    "mean_answer_chars": ("answers", _column("chars")),
    "repetition": ("answers", _column("repetition")),
    "ended_rate": ("answers", _column("ended")),
    "fluency": ("answers", _column("fluency")),
}


def probe_metrics(table: pd.DataFrame) -> dict[str, float]:
    """probe_support_rate and probe_logp_gap over all probe rows, and probe_support_rate/TOPIC per topic."""
    if table.empty:
        return {}
    metrics = {"probe_support_rate": float(_leans_support(table).mean()), "probe_logp_gap": float(_gap(table).mean())}
    for topic, rows in table.groupby("topic", sort=False):
        metrics[f"probe_support_rate/{topic}"] = float(_leans_support(rows).mean())
    return metrics


def metric_rows(tables: dict[str, pd.DataFrame], metric: str) -> pd.Series | None:
    """One stage's per-row values of a metric, indexed by row id (None if the stage has no such rows)."""
    family, values = ROW_METRICS[metric.split("/", 1)[0]]
    table = tables.get(family)
    if table is None or table.empty:
        return None
    if "/" in metric:  # a probe topic: its rows only
        table = table[table["topic"] == metric.split("/", 1)[1]]
        if table.empty:
            return None
    return pd.Series(values(table), index=table["id"].to_list(), name=metric)


def _records(table: pd.DataFrame | None) -> list[dict]:
    """A table as JSON records, NaN written as null."""
    if table is None or table.empty:
        return []
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in table.astype(object).to_dict("records")]


def answer_rows(rows: list[dict], labels: list[int | None], answers: list[str], ended: list[bool] | None,
                repetition: list[float]) -> pd.DataFrame:
    """Per test prompt: the judge's label (1 support, 0 oppose, NaN abstained), length, repetition, whether it ended."""
    return pd.DataFrame({"id": [r["id"] for r in rows],
                         "judge": [math.nan if label is None else float(label) for label in labels],
                         "chars": [float(len(a)) for a in answers], "repetition": repetition,
                         "ended": [float(e) for e in ended] if ended is not None else math.nan})


def save_row_values(folder: Path, stages: dict) -> Path:
    """Write per_row.json: per stage (a StageResult), its held-out, probe and answer tables."""
    return write_json_atomic(Path(folder) / FILE, {"version": VERSION, "stages": {
        name: {"heldout": _records(stage.logps), "probes": _records(stage.probes),
               "answers": _records(stage.answer_rows)} for name, stage in stages.items()}})


def load_row_values(folder: Path) -> dict[str, dict[str, pd.DataFrame]] | None:
    """A saved run's per-row tables, stage → {"heldout", "probes", "answers"} → DataFrame; None if it has none."""
    path = Path(folder) / FILE
    if not path.is_file():
        return None
    saved = read_json(path)
    return {stage: {family: pd.DataFrame(records, dtype=object).infer_objects() if records else pd.DataFrame()
                    for family, records in tables.items()}
            for stage, tables in saved["stages"].items()}


def stage_tables(stage) -> dict[str, pd.DataFrame]:
    """A StageResult's per-row tables, in load_row_values' form."""
    return {"heldout": stage.logps, "probes": stage.probes, "answers": stage.answer_rows}


def row_intervals(tables: dict[str, dict[str, pd.DataFrame]], metrics: dict[str, dict]) -> dict[str, dict]:
    """Per stage, the 95 % interval over rows (helpers.stats) of every measurement that has per-row values."""
    from helpers.stats import interval

    found: dict[str, dict] = {}
    for stage, values in metrics.items():
        for metric in values:
            rows = metric_rows(tables.get(stage, {}), metric) if metric.split("/", 1)[0] in ROW_METRICS else None
            if rows is not None:
                found.setdefault(stage, {})[metric] = [round(v, 6) for v in interval([rows.to_numpy(float)])]
    return found
