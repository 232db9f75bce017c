"""Seeds as a knob: one run per seed, summarised per stage and measurement (mean, spread across seeds, 95 %
interval), and two settings compared seed by seed with a verdict (helpers.stats does the bootstrap).

`run --seeds 0,1,2 --out OUT` writes OUT/seed-0, OUT/seed-1, … (each a complete run) and OUT/summary.json; a seed
whose folder already holds a run with the same settings is reused. Light to import: the models load only when a
run must be made.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from helpers.errors import UserError
from helpers.files import read_json, write_json_atomic
from helpers.progress import Lap, headline_figures, progress_line
from helpers.row_values import ROW_METRICS, load_row_values, metric_rows
from helpers.runs import COMPLETE_MARKER, RunConfig, check_run_request, hold_folder, is_same_run, load_inputs
from helpers.stats import Difference, describe_seeds, paired_difference

DPO_KNOBS = ("support_ratio", "data_size", "num_epoch", "beta", "learning_rate", "spread")  # what a Prepared ignores
PRINTED = ("support_rate", "logp_gap", "probe_support_rate", "generated_support_rate", "judge_abstained",
           "pair_accuracy", "mean_margin", "repetition", "fluency")  # what `run --seeds` prints


@dataclass
class SavedRun:
    """A complete run folder, its metrics.json and its per-row tables (None for a run saved before they were kept)."""

    folder: Path
    metrics: dict
    rows: dict | None

    @classmethod
    def load(cls, folder: Path) -> "SavedRun":
        return cls(Path(folder), read_json(Path(folder) / "metrics.json"), load_row_values(folder))

    def value(self, stage: str, metric: str) -> float:
        return float(self.metrics["stages"].get(stage, {}).get(metric, math.nan))

    def per_row(self, stage: str, metric: str) -> pd.Series | None:
        return metric_rows(self.rows[stage], metric) if self.rows and stage in self.rows else None


# --- making the runs -----------------------------------------------------------------------------------------


def seed_folder(out_dir: Path, seed: int) -> Path:
    """Where `run --seeds` writes one seed's run."""
    return Path(out_dir) / f"seed-{seed}"


def check_seeds_request(config: RunConfig, seeds: list[int], out_dir: Path, overwrite: bool = False) -> None:
    """Everything `run --seeds` can refuse before a model loads: OUT holding a single run, and each seed's request
    (a seed folder with a run of the same settings is fine: it is reused)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"seeds (--seeds) is {seeds!r}; allowed: distinct whole numbers, comma-separated (0,1,2)")
    if (Path(out_dir) / COMPLETE_MARKER).exists():
        raise UserError(f"{out_dir} holds a single run; --seeds writes one folder per seed inside --out: "
                        "choose another --out")
    for seed in seeds:
        seeded = dataclasses.replace(config, seed=seed)
        if overwrite or not is_same_run(seed_folder(out_dir, seed), seeded):
            check_run_request(seeded, seed_folder(out_dir, seed), overwrite)


def run_seeds(config: RunConfig, seeds: list[int], out_dir: Path, overwrite: bool = False, resume: bool = False,
              echo=print) -> pd.DataFrame:
    """One run of config per seed in OUT/seed-N (reused when saved with the same settings), then OUT/summary.json:
    per stage and measurement the mean, the spread across seeds and the 95 % interval. Returns the summary table."""
    from helpers.pipeline import run_pipeline

    out_dir = Path(out_dir)
    with hold_folder(out_dir):
        check_seeds_request(config, seeds, out_dir, overwrite or resume)
        folders = {}
        for seed in seeds:
            seeded, folders[seed] = dataclasses.replace(config, seed=seed), seed_folder(out_dir, seed)
            if not overwrite and is_same_run(folders[seed], seeded):
                echo(f"seed {seed}: the saved run in {folders[seed]} has these settings: reused")
                continue
            echo(f"seed {seed}: training into {folders[seed]}")
            run_pipeline(seeded, folders[seed], overwrite=overwrite, echo=lambda _: None, resume=resume)
        summary = summarize_runs(folders)
        write_json_atomic(out_dir / "summary.json", {
            "seeds": list(seeds), "runs": {str(s): f.name for s, f in folders.items()},
            "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "seed"},
            "summary": json_records(summary)})
    return summary


def _prepare_key(config: RunConfig) -> RunConfig:
    """The config with the DPO knobs at their defaults: runs that share it share one Prepared (base, SFT, judge)."""
    return dataclasses.replace(config, **{k: getattr(RunConfig(), k) for k in DPO_KNOBS})


def ensure_runs(configs: list[RunConfig], runs_dir: Path, overwrite: bool = False, echo=print,
                report=None) -> list[tuple[RunConfig, Path, dict, bool]]:
    """(config, folder, metrics, reused) per config: a complete run in runs_dir with the same settings is loaded,
    the others are made from one Prepared per seed (base and SFT measured once, SFT from its cache), made only when
    a run is missing, and freed before the next seed's. As each one is ready, echo gets one progress line (which of
    how many, its knobs, the seconds it took, its DPO support rates) and report(config, folder, metrics, reused) is
    called."""
    from helpers.pipeline import ensure_dpo_run, prepare

    found, current, n_rows, lap = {}, (None, None), {}, Lap()
    order = sorted(range(len(configs)), key=lambda i: configs[i].seed)  # one seed's runs, then the next's
    for done, index in enumerate(order, 1):
        config = configs[index]
        key = _prepare_key(config)
        if repr(key) not in n_rows:  # how many labelled rows the run's name counts
            n_rows[repr(key)] = len(load_inputs(key).train_rows)
        folder = Path(runs_dir) / config.run_name(n_rows[repr(key)])
        if not overwrite and is_same_run(folder, config):
            found[index] = (config, folder, read_json(folder / "metrics.json"), True)
        else:
            if current[0] != key:
                current = (None, None)  # free the last seed's models first
                current = (key, prepare(key, echo=lambda _: None))
            found[index] = (config, folder, *ensure_dpo_run(current[1], config, folder, overwrite=overwrite, echo=echo))
        echo(run_progress_line(done, len(configs), *found[index], seconds=lap()))
        if report is not None:
            report(*found[index])
    return [found[i] for i in range(len(configs))]


def run_progress_line(done: int, total: int, config: RunConfig, folder: Path, metrics: dict, reused: bool,
                      seconds: float) -> str:
    """One run's progress line: its knobs, the seconds it took (loading or training) and its DPO support rates."""
    name = (f"ratio {config.support_ratio:g} epochs {config.num_epoch:g} size {metrics.get('n_train_pairs', '?')} "
            f"seed {config.seed}")
    return progress_line(done, total, name, seconds, headline_figures(metrics["stages"].get("dpo", {})),
                         "saved run, loaded" if reused else "")


# --- summarising and comparing -------------------------------------------------------------------------------


def summarize_runs(folders: dict[int, Path], stages: tuple[str, ...] | None = None,
                   metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per stage and measurement over the seeds' runs: n_seeds, mean, sd, min, max, the 95 % interval
    (low, high; how it was found, or why it is unavailable) and the per-seed values."""
    runs = {seed: SavedRun.load(folder) for seed, folder in folders.items()}
    first = next(iter(runs.values())).metrics["stages"]
    rows = []
    for stage in [s for s in stages or first if s in first]:  # a profile without SFT has no "sft" stage
        measured = [m for m in metrics or first[stage]
                    if any(m in r.metrics["stages"].get(stage, {}) for r in runs.values())]
        for metric in measured:
            if metric.split("/", 1)[0] not in ROW_METRICS:  # a measurement with no per-row values
                continue
            described = describe_seeds({s: r.value(stage, metric) for s, r in runs.items()},
                                       {s: r.per_row(stage, metric) for s, r in runs.items()})
            rows.append({"stage": stage, "metric": metric, **described})
    return pd.DataFrame(rows)


def json_records(table: pd.DataFrame) -> list[dict]:
    """A summary table as JSON records, NaN as null."""
    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        return value
    return [{k: clean(v) for k, v in row.items()} for row in table.to_dict("records")]


def compare_seeded_runs(a: dict[int, Path], b: dict[int, Path], metric: str = "support_rate", stage: str = "dpo",
                 names: tuple[str, str] = ("a", "b")) -> Difference:
    """Setting b minus setting a on one measurement of one stage, each given as seed → run folder: paired by seed,
    and by row where both runs measured the same rows; the interval is unavailable (NaN) when a run has no per-row
    values."""
    return _difference(*({s: SavedRun.load(f) for s, f in side.items()} for side in (a, b)), metric, stage, names)


def _difference(a: dict[int, SavedRun], b: dict[int, SavedRun], metric: str, stage: str,
                names: tuple[str, str]) -> Difference:
    rows = [{s: r.per_row(stage, metric) for s, r in side.items()} for side in (a, b)]
    if any(v is None for side in rows for v in side.values()):
        means = [_mean(side, stage, metric) for side in (a, b)]
        return Difference(metric, *names, means[1] - means[0], math.nan, math.nan, len(set(a) & set(b)),
                          bool(set(a) & set(b)), False,
                          note="a run was saved without per-row values; rerun it (overwrite) to get an interval")
    return paired_difference(rows[0], rows[1], metric, names)


def _mean(runs: dict[int, SavedRun], stage: str, metric: str) -> float:
    """The mean over seeds of one saved measurement."""
    return sum(r.value(stage, metric) for r in runs.values()) / len(runs)


def compare_questions(questions: dict[str, dict[str, dict]], seeds: list[int], runs_dir: Path,
                      metrics: tuple[str, ...] = ("support_rate",), stage: str = "dpo", overwrite: bool = False,
                      echo=print, **shared) -> pd.DataFrame:
    """Each question names two settings ({"1 epoch": {knobs}, "3 epochs": {knobs}}); both are run for every seed
    (saved runs reused) and compared: one row per question and measurement with both means over the seeds, the
    difference (second minus first), its 95 % interval and the verdict sentence. shared: the RunConfig fields every
    run has (profile, …)."""
    keys = [(q, name, seed) for q, sides in questions.items() for name in sides for seed in seeds]
    made = ensure_runs([RunConfig(seed=seed, **shared, **questions[q][name]) for q, name, seed in keys],
                       runs_dir, overwrite, echo)
    loaded = {key: SavedRun.load(folder) for key, (_, folder, _, _) in zip(keys, made)}
    rows = []
    for question, sides in questions.items():
        first, second = list(sides)
        runs = [{s: loaded[question, name, s] for s in seeds} for name in (first, second)]
        for metric in metrics:
            found = _difference(*runs, metric, stage, (first, second))
            rows.append({"question": question, "metric": metric, "first": first, "second": second,
                         "first_mean": _mean(runs[0], stage, metric), "second_mean": _mean(runs[1], stage, metric),
                         "difference": found.difference, "low": found.low, "high": found.high,
                         "n_seeds": found.n_seeds, "paired_rows": found.paired_rows,
                         "tells_apart": found.tells_apart, "verdict": found.verdict()})
    return pd.DataFrame(rows)


def summary_table(summary: pd.DataFrame, metrics: tuple[str, ...] = PRINTED, digits: int = 3) -> pd.DataFrame:
    """A summary as a table to read: per stage and measurement the mean, sd across seeds, the 95 % interval and the
    per-seed values."""
    rows = summary[summary["metric"].isin(metrics)]

    def interval_text(row) -> str:
        return "unavailable" if pd.isna(row["low"]) else f"{row['low']:.{digits}f} to {row['high']:.{digits}f}"

    return pd.DataFrame({
        "stage": rows["stage"], "metric": rows["metric"], "mean": rows["mean"].round(digits),
        "sd across seeds": rows["sd"].round(digits), "95 % interval": rows.apply(interval_text, axis=1),
        "per seed": rows["per_seed"].map(lambda v: " / ".join(f"{x:.{digits}f}" for x in v.values())),
    }).set_index(["stage", "metric"])


def seed_table(folders: dict[int, Path], metric: str = "support_rate", stage: str = "dpo") -> pd.DataFrame:
    """One measurement of one setting: a row per seed (its value and 95 % interval over rows), then the mean over
    the seeds with the two-level interval."""
    rows = {}
    for seed, folder in sorted(folders.items()):
        described = summarize_runs({seed: folder}, (stage,), (metric,)).iloc[0]
        rows[f"seed {seed}"] = {"value": described["mean"], "low": described["low"], "high": described["high"],
                                "interval": described["interval"]}
    together = summarize_runs(folders, (stage,), (metric,)).iloc[0]
    rows[f"mean of {len(folders)} seeds"] = {"value": together["mean"], "low": together["low"],
                                             "high": together["high"], "interval": together["interval"]}
    return pd.DataFrame(rows).T
