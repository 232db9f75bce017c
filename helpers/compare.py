"""Two saved runs side by side, by name or folder: the settings that differ, every measurement of every stage with its
95 % interval and the difference b − a with its own (paired by row where both runs measured the same rows), and the
test answers whose stance label changed, shown whole. (helpers.seeds.compare_seeded_runs compares one measurement over
several seeds; this is the whole picture for two runs.)"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from helpers.answer_views import stance_label
from helpers.config import OUTPUTS_DIR
from helpers.errors import UserError
from helpers.files import read_json
from helpers.folders import is_complete
from helpers.runs import RunConfig, list_runs, resolve_profile
from helpers.seeds import SavedRun
from helpers.stats import paired_difference


@dataclass
class RunComparison:
    """compare_runs' answer: the two runs' names and three tables, plus what could not be compared or paired."""

    a: str
    b: str
    settings: pd.DataFrame  # one row per setting that differs: its value in a and in b
    measurements: pd.DataFrame  # one row per stage and measurement: a, b, b − a, each with its 95 % interval
    stance_changes: pd.DataFrame  # one row per test prompt whose answer's stance label changed: question, a, b
    notes: list[str] = field(default_factory=list)


def find_run(name_or_dir: str | Path, runs_dir: Path = OUTPUTS_DIR / "runs") -> Path:
    """A complete run folder, given as a folder or as a name under runs_dir; otherwise a UserError listing the runs."""
    folder = Path(name_or_dir)
    if not folder.is_dir():
        folder = Path(runs_dir) / str(name_or_dir)
    if not is_complete(folder):
        known = ", ".join(list_runs(runs_dir)) or "none yet"
        raise UserError(f"no complete run at {folder}; saved runs: {known}")
    return folder


def run_settings(run: SavedRun) -> dict[str, object]:
    """A saved run's settings as it trained with them: a None that means "the profile's" resolved and marked so, and
    the profile fields a notebook changed (metrics.json's profile_changes)."""
    config = RunConfig(**{**asdict(RunConfig()), **read_json(run.folder / "config.json")})
    profile = resolve_profile(config, check_hardware=False)
    settings: dict[str, object] = asdict(config)
    for name, value in (("beta", profile.beta), ("learning_rate", profile.dpo_learning_rate)):
        if settings[name] is None:
            settings[name] = f"{value:g} (the profile's)"
    if settings["data_size"] is None:
        settings["data_size"] = f"all ({run.metrics.get('n_train_pairs', '?')})"
    for name in ("data", "eval_data", "test_prompts"):
        settings[name] = settings[name] or "bundled"
    changes = run.metrics.get("profile_changes", {})
    return {**settings, **{f"profile.{name}": value for name, value in changes.items()}}


def settings_table(a: SavedRun, b: SavedRun) -> pd.DataFrame:
    """The settings that differ between two runs (a profile field one run changed: the other's is the profile's)."""
    sides = [run_settings(a), run_settings(b)]
    for mine, other, run in ((sides[0], sides[1], a), (sides[1], sides[0], b)):
        profile = resolve_profile(RunConfig(**read_json(run.folder / "config.json")), check_hardware=False)
        for name in [n for n in other if n.startswith("profile.") and n not in mine]:
            value = getattr(profile, name.removeprefix("profile."))
            mine[name] = list(value) if isinstance(value, tuple) else value
    rows = {name: {"a": str(sides[0][name]), "b": str(sides[1][name])} for name in dict.fromkeys([*sides[0], *sides[1]])
            if sides[0].get(name) != sides[1].get(name)}
    return pd.DataFrame(list(rows.values()), index=pd.Index(list(rows), name="setting"), columns=["a", "b"])


def _span(low: float | None, high: float | None) -> str:
    """An interval as "[low, high]" ("unavailable" without one)."""
    return "unavailable" if low is None or math.isnan(low) else f"[{low:.3f}, {high:.3f}]"


def measurement_table(a: SavedRun, b: SavedRun) -> pd.DataFrame:
    """Every measurement both runs saved for a stage they both have: each run's value and 95 % interval over rows,
    and b − a with its interval, paired by row when both measured the same rows (said in `paired`)."""
    records = []
    for stage in [s for s in a.metrics["stages"] if s in b.metrics["stages"]]:
        for metric in [m for m in a.metrics["stages"][stage] if m in b.metrics["stages"][stage]]:
            values, spans = (a.value(stage, metric), b.value(stage, metric)), []
            for run in (a, b):
                saved = run.metrics.get("intervals", {}).get(stage, {}).get(metric)
                spans.append(_span(*saved) if saved else "unavailable")
            rows = a.per_row(stage, metric), b.per_row(stage, metric)
            if rows[0] is None or rows[1] is None:
                difference, diff_span, paired = values[1] - values[0], "unavailable", "no per-row values saved"
            else:
                found = paired_difference({0: rows[0]}, {0: rows[1]}, metric)
                difference, diff_span = found.difference, _span(found.low, found.high)
                paired = "by row" if found.paired_rows else "not paired: the runs measured different rows"
            records.append({"stage": stage, "metric": metric, "a": values[0], "a 95 %": spans[0],
                            "b": values[1], "b 95 %": spans[1], "b − a": difference, "b − a 95 %": diff_span,
                            "paired": paired})
    return pd.DataFrame(records)


def stance_change_table(a: SavedRun, b: SavedRun, stage: str = "dpo") -> tuple[pd.DataFrame, list[str]]:
    """The test prompts whose answer at `stage` got another stance label in b than in a, each answer whole with its
    label; and a note when labels or answers are missing."""
    columns = ["question", "a stance", "a", "b stance", "b"]
    tables = [run.rows.get(stage, {}).get("answers") if run.rows else None for run in (a, b)]
    if any(t is None or t.empty for t in tables):
        return pd.DataFrame(columns=columns), [f"stance changes: a run has no per-row answer labels at {stage!r}"]
    answers = [{row["id"]: row for row in read_json(run.folder / "answers.json")} for run in (a, b)]
    labels = [dict(zip(t["id"], t["judge"])) for t in tables]
    records = []
    for row_id in [i for i in labels[0] if i in labels[1] and i in answers[0] and i in answers[1]]:
        stances = stance_label(labels[0][row_id]), stance_label(labels[1][row_id])
        if stances[0] != stances[1]:
            records.append({"question": answers[0][row_id]["prompt"], "a stance": stances[0],
                            "a": answers[0][row_id][stage], "b stance": stances[1], "b": answers[1][row_id][stage]})
    return pd.DataFrame(records, columns=columns), []


def compare_runs(a: str | Path, b: str | Path, runs_dir: Path = OUTPUTS_DIR / "runs",
                 stage: str = "dpo") -> RunComparison:
    """Two saved runs, by name (under runs_dir) or folder: the settings that differ, every measurement with b − a,
    and the answers at `stage` whose stance label changed."""
    runs = [SavedRun.load(find_run(side, runs_dir)) for side in (a, b)]
    measurements = measurement_table(*runs)
    changes, notes = stance_change_table(*runs, stage)
    if len(measurements) and (measurements["paired"] != "by row").any():
        unpaired = measurements.loc[measurements["paired"] != "by row", "metric"].unique()
        notes.append("not paired by row: " + ", ".join(unpaired))
    return RunComparison(runs[0].folder.name, runs[1].folder.name, settings_table(*runs), measurements, changes,
                         notes)
