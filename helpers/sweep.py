"""Sweeping the homework's knobs: SFT once per seed, then one DPO run per point, collected in sweep.json/sweep.png;
with several seeds, each point is summarised over them (mean, spread, 95 % interval: helpers.seeds)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pandas as pd

from helpers.files import write_json_atomic
from helpers.homework import load_homework_preset
from helpers.pipeline import RunConfig, ensure_dpo_run, hold_folder
from helpers.seeds import ensure_runs, json_records, summarize_runs

STAGE_COLUMNS = ("support_rate", "generated_support_rate", "probe_support_rate", "pair_accuracy", "mean_margin",
                 "mean_answer_chars", "repetition", "judge_abstained", "ended_rate")
KNOB_COLUMNS = ("num_epoch", "data_size", "support_ratio")  # what makes a point; its seeds are summarised together
SUMMARY_METRICS = ("support_rate", "generated_support_rate", "probe_support_rate", "pair_accuracy", "repetition")


def sweep_record(config: RunConfig, metrics: dict, reused: bool = False) -> dict:
    """One flat row per point: the knobs, then every stage's measurements as stage_measurement."""
    record = {"support_ratio": config.support_ratio, "num_epoch": config.num_epoch,
              "data_size": metrics["n_train_pairs"], "seed": config.seed, "reused": reused}
    for stage, values in metrics["stages"].items():
        record.update({f"{stage}_{name}": values[name] for name in STAGE_COLUMNS if name in values})
    record["dpo_seconds"] = metrics["timings"].get("dpo")
    return record


def run_sweep(profile: str | None, ratios: list[float], out_dir: Path, num_epochs: list[float] = (3,),
              data_sizes: list[int | None] = (None,), seeds: list[int] | None = None, beta: float | None = None,
              overwrite: bool = False, runs_dir: Path | None = None, echo=print, homework: str | None = None,
              student_id: str | None = None, data: str | None = None, test_prompts: str | None = None) -> pd.DataFrame:
    """Every combination of the knobs; the SFT stage is trained (or loaded) once per seed and reused by all points.

    Each point is a run folder in runs_dir (default out_dir/runs); a point whose folder already holds a complete run
    with the same settings is reused, not retrained, unless overwrite. With a homework, every point is that course's
    run (its split, seed, held-out rows and result file; profile None: the course's model). echo gets one line per
    run as it is ready: which of how many, its knobs, its seconds and its DPO support rates.
    """
    out_dir = Path(out_dir)
    with hold_folder(out_dir):  # a second sweep into out_dir is refused while this one runs
        return _run_sweep(ratios, out_dir, num_epochs, data_sizes, seeds, beta, overwrite,
                          Path(runs_dir) if runs_dir is not None else out_dir / "runs", echo,
                          dict(profile=profile if homework else (profile or "auto"), homework=homework,
                               student_id=student_id, data=data, test_prompts=test_prompts,
                               split_rule="course" if homework else "exact"))


def _run_sweep(ratios: list[float], out_dir: Path, num_epochs: list[float], data_sizes: list[int | None],
               seeds: list[int] | None, beta: float | None, overwrite: bool, runs_dir: Path, echo,
               shared: dict) -> pd.DataFrame:
    """run_sweep's loop, once out_dir is held; `shared` holds the RunConfig fields every point has in common."""
    if seeds is None:  # a homework trains with its course's seed
        seeds = [load_homework_preset(shared["homework"]).seed if shared["homework"] else 0]
    start = time.perf_counter()
    configs = [RunConfig(support_ratio=ratio, num_epoch=epochs, data_size=size, beta=beta, seed=seed, **shared)
               for seed in seeds for epochs, size, ratio in itertools.product(num_epochs, data_sizes, ratios)]

    records = [{**sweep_record(config, metrics, reused), "run": folder.name}
               for config, folder, metrics, reused in ensure_runs(configs, runs_dir, overwrite, echo)]
    table = pd.DataFrame(records)
    summary = sweep_summary(table, runs_dir)
    write_json_atomic(out_dir / "sweep.json", {"points": records, "summary": json_records(summary),
                                               "seconds": round(time.perf_counter() - start, 1)})
    return table


def sweep_summary(table: pd.DataFrame, runs_dir: Path, stages: tuple[str, ...] = ("sft", "dpo"),
                  metrics: tuple[str, ...] = SUMMARY_METRICS) -> pd.DataFrame:
    """Per point (num_epoch, data_size, support_ratio), stage and measurement: the mean over the point's seeds, the
    spread, and the 95 % interval (over rows for one seed; over seeds and rows for several)."""
    parts = []
    for knobs, group in table.groupby(list(KNOB_COLUMNS), sort=False):
        summary = summarize_runs(dict(zip(group["seed"], (Path(runs_dir) / name for name in group["run"]))),
                                 stages, metrics)
        parts.append(summary.assign(**dict(zip(KNOB_COLUMNS, knobs))))
    columns = [*KNOB_COLUMNS, "stage", "metric", "n_seeds", "mean", "sd", "min", "max", "low", "high", "interval",
               "per_seed"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def point_table(summary: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """One stage's summary as a table to read: a row per point, a column per measurement, "mean [low, high]"."""
    def cell(row) -> str:
        interval = "" if pd.isna(row["low"]) else f" [{row['low']:.{digits}f}, {row['high']:.{digits}f}]"
        return f"{row['mean']:.{digits}f}{interval}"

    cells = summary.assign(cell=summary.apply(cell, axis=1)) if len(summary) else summary.assign(cell=[])
    return cells.pivot_table(index=list(KNOB_COLUMNS), columns="metric", values="cell", aggfunc="first", sort=False)


def parse_numbers(text: str, kind: type = float) -> list:
    """"0,0.25,1" → [0.0, 0.25, 1.0]."""
    return [kind(part) for part in text.split(",") if part.strip()]


def compare_settings(prepared, out_dir: Path, runs: dict[str, dict],
                     columns: tuple[str, ...] = ("support_rate", "generated_support_rate", "repetition")) -> pd.DataFrame:
    """Named DPO runs that differ in a knob, all from the same prepared SFT model: one row each, the DPO measurements.

    A run already saved in out_dir with the same settings is reused.
    """
    rows = {}
    for name, settings in runs.items():
        config = RunConfig(profile=prepared.profile.name, **settings)
        folder = Path(out_dir) / config.run_name(len(prepared.inputs.train_rows))
        metrics, _ = ensure_dpo_run(prepared, config, folder, echo=lambda _: None)
        rows[name] = {column: metrics["stages"]["dpo"][column] for column in columns}
    return pd.DataFrame(rows).T
