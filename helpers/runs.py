"""Run folders: a run's settings (RunConfig), its inputs, and the rules for its folder — checked before any model
is loaded, never replaced without being asked, an earlier run moved aside rather than deleted. Light to import, so
`python -m helpers run` rejects bad input in seconds."""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from helpers import data
from helpers.config import OUTPUTS_DIR, Profile, load_profile, resolve_profile_name
from helpers.errors import UserError
from helpers.files import read_json
from helpers.folders import MARKER as COMPLETE_MARKER  # written last: a run folder without it was interrupted
from helpers.folders import check_not_held, hold_lock, incomplete_reason, is_complete
from helpers.folders import replace_dir  # noqa: F401 (imported from here too)
from helpers.homework import Homework, load_homework_preset
from helpers.knobs import check_knobs
from helpers.run_names import check_run_name, folder_name, profile_changes


@dataclass
class RunConfig:
    """The knobs of one run: the homework's three, DPO's two, the data files and the seed (checked when made)."""

    profile: str | None = "tiny"  # None with a homework: the course's own model
    support_ratio: float = 1.0  # share of training pairs that prefer the support answer
    data_size: int | None = None  # how many labelled rows become pairs (None: all of them)
    num_epoch: float = 3  # DPO epochs
    beta: float | None = None  # None: the profile's (0.1)
    learning_rate: float | None = None  # None: the profile's DPO learning rate
    spread: bool = False  # spread the support-preferred rows evenly instead of taking the first ones
    data: str | None = None  # labelled rows (homework schema); None: assets/data/labelled_data.json
    eval_data: str | None = None  # held-out rows for measurement; None: assets/data/eval_data.json
    test_prompts: str | None = None  # prompts to generate for; None: assets/data/test_prompt.json
    seed: int = 0
    model: str | None = None  # a local folder or hub id instead of the profile's model
    skip_bad_rows: bool = False  # leave invalid rows of the data files out (listed in skipped_rows.jsonl), not refuse
    homework: str | None = None  # "hw6" or "hw7": the course's preset (helpers.homework)
    student_id: str | None = None  # hw7 names its result file after it
    split_rule: str = "exact"  # "course": int(data_size * support_ratio) in floating point, as the course's code
    holdout: str = "auto"  # homework runs: rows held out for measuring ("auto": the unused rows if any, "rest",
    # "kfold-K": K extra trainings, "none")
    name: str | None = None  # the run folder's name (--run-name); None: made from the settings (helpers.run_names)

    def __post_init__(self) -> None:
        check_knobs(support_ratio=self.support_ratio, data_size=self.data_size, num_epoch=self.num_epoch,
                    beta=self.beta, learning_rate=self.learning_rate, seed=self.seed)
        check_run_name(self.name)

    def answers_file_name(self, n_rows: int) -> str:
        """The result file's name: the homework preset's, else epoch-{num_epoch}_size-{data_size}_ratio-{ratio}.json."""
        size = self.data_size or n_rows
        if self.homework:
            return load_homework_preset(self.homework).result_file_name(self.num_epoch, size, self.support_ratio,
                                                                        self.student_id)
        return f"epoch-{_num(self.num_epoch)}_size-{size}_ratio-{_num(self.support_ratio)}.json"

    def run_name(self, n_rows: int, profile: Profile | None = None) -> str:
        """The run folder's name: the given name, else what the run was and every setting that differs from its
        default (helpers.run_names); profile: the profile it trains with, when a notebook changed some of its fields."""
        stem = f"{self.profile or self.homework}_" + self.answers_file_name(n_rows).removesuffix(".json")
        stem += f"_seed-{self.seed}" if self.seed else ""
        changes = profile_changes(resolve_profile(self, check_hardware=False), profile) if profile else {}
        return folder_name(self, stem, changes)


def _num(value: float) -> str:
    """1.0 → "1", 0.25 → "0.25": short, stable names."""
    return f"{value:g}"


@dataclass
class Inputs:
    """The rows a run reads, loaded and validated once."""

    train_rows: list[dict]
    eval_rows: list[dict]
    test_rows: list[dict]
    files: dict[str, str] = field(default_factory=dict)
    skipped: data.Skipped | None = None  # the rows left out, with skip_bad_rows
    holdout: dict = field(default_factory=lambda: {"method": "file"})  # how eval_rows were chosen
    probe_rows: list[dict] = field(default_factory=list)  # out-of-topic rows, measured like eval_rows


def load_inputs(config: RunConfig) -> Inputs:
    """Load and validate the training, held-out and test files named by the config (the bundled ones by default),
    keeping the rows in the profile's languages (an English-only model gets the English rows; rows with no `lang`
    are kept), and the bundled out-of-topic probes by the same rule; with skip_bad_rows, bad rows are left out and
    recorded in Inputs.skipped.

    A homework run without --eval-data holds labelled rows out instead (helpers.holdout): the rows after the first
    data_size ("rest"), or none here for a k-fold plan, which the DPO run measures itself.
    """
    from helpers.holdout import holdout_plan

    skipped = data.Skipped() if config.skip_bad_rows else None
    languages = resolve_profile(config, check_hardware=False).languages
    train_rows = data.load_homework(config.data, skipped=skipped, languages=languages)
    if config.homework and config.eval_data is None:
        plan = holdout_plan(config, len(train_rows))
        eval_rows = train_rows[plan["first_row"]:] if plan["method"] == "rest" else []
    else:
        plan = {"method": "file"}
        eval_rows = data.load_eval_rows(config.eval_data, skipped=skipped, languages=languages)
    seen = {r["prompt"] for r in train_rows + eval_rows}  # a probe is out of topic only if never trained or measured on
    return Inputs(
        train_rows=train_rows,
        eval_rows=eval_rows,
        test_rows=data.load_test_prompts(config.test_prompts, skipped=skipped, languages=languages),
        files={"data": str(config.data or "bundled"), "eval_data": str(config.eval_data or "bundled"),
               "test_prompts": str(config.test_prompts or "bundled")},
        skipped=skipped,
        holdout=plan,
        probe_rows=[r for r in data.load_probe_rows(languages=languages) if r["prompt"] not in seen],
    )


def default_num_epoch(profile: str | None, homework: str | None = None) -> float:
    """The DPO epochs of a run that asks for none: its profile's (3 for the tiny and GPU profiles, as the homework)."""
    return resolve_profile(RunConfig(profile=profile, homework=homework), check_hardware=False).dpo_epochs


def resolve_profile(config: RunConfig, check_hardware: bool = True) -> Profile:
    """The config's profile (a homework's: the course's, or the one swapped in), with --model's model if given."""
    if config.homework:
        profile = load_homework_preset(config.homework).training_profile(config.profile, check_hardware)
    else:
        profile = load_profile(config.profile, check_hardware)
    return profile.replace(model_name=config.model) if config.model else profile


def is_main_process() -> bool:
    """True in a single process, and in rank 0 of a data-parallel run: the one that measures, writes and prints."""
    return int(os.environ.get("RANK", "0")) == 0


def check_run_request(config: RunConfig, out_dir: Path, overwrite: bool = False) -> Profile:
    """Everything about a run that can be wrong before any model is loaded: profile, data, knobs, model, folder."""
    if config.homework:
        if config.data is None or config.test_prompts is None:
            labelled, tests = load_homework_preset(config.homework).data_files
            raise UserError(f"homework {config.homework} needs the course's files: pass --data DIR/{labelled} "
                            f"and --test-prompts DIR/{tests} (a clone of the course's data)")
        config.answers_file_name(0)  # a missing or unusable student_id fails here
    profile = resolve_profile(config)
    inputs = load_inputs(config)
    data.make_preference_pairs(inputs.train_rows, config.support_ratio, config.data_size, spread=config.spread,
                               system_prompt=profile.system_prompt, split_rule=config.split_rule)
    from helpers.models import check_reachable, model_source  # transformers: only once the cheap checks pass

    check_reachable(model_source(profile))
    if is_main_process():  # the main process owns the folder
        check_not_held(Path(out_dir))
        check_out_dir(Path(out_dir), config, overwrite)
        check_writable(Path(out_dir))
    return profile


def hold_folder(folder: Path, wait: float = 0.0):
    """The folder's lock (see folders.hold_lock), held by the main process; the others of a data-parallel run skip it."""
    return hold_lock(Path(folder), wait) if is_main_process() else contextlib.nullcontext()


def differing_knobs(saved: dict, config: RunConfig) -> str:
    """The knobs whose saved value differs from config's, as "--num-epoch saved 2, asked 1; …" ("" if none); a knob
    added since the run was saved counts as its default."""
    asked = asdict(config)
    saved = {**asdict(RunConfig()), **saved}
    return "; ".join(f"--{'run-name' if name == 'name' else name.replace('_', '-')} saved {saved.get(name)!r}, "
                     f"asked {asked.get(name)!r}"
                     for name in dict.fromkeys([*asked, *saved]) if saved.get(name) != asked.get(name))


def check_resume(config: RunConfig, out_dir: Path, echo=print) -> bool:
    """For --resume: True if out_dir already holds this run complete, False if there is something (or nothing) to
    continue, said in one line; a folder held by a live process, or saved with other settings, is refused."""
    out_dir = Path(out_dir)
    if is_main_process():
        check_not_held(out_dir)
    if not (out_dir / "config.json").exists():
        echo(f"nothing to resume in {out_dir}: starting a new run (an SFT stage cached or half-trained is used)")
        return False
    differs = differing_knobs(read_json(out_dir / "config.json"), config)
    if differs:
        raise UserError(f"cannot resume {out_dir} with other settings than its own ({differs}); resume with the "
                        "saved settings, or start anew without --resume (--overwrite, or another --out)")
    if (out_dir / COMPLETE_MARKER).exists():
        reason = incomplete_reason(out_dir)
        if reason is None:
            echo(f"{out_dir} is already complete: nothing to resume")
            return True
        echo(f"{out_dir} is marked complete but {reason}: running it again")
    elif not list((out_dir / "checkpoints" / "dpo").glob("checkpoint-*")):
        echo(f"no DPO checkpoint in {out_dir} yet: DPO starts from step 0 (SFT continues from its cache)")
    return False


def make_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_out_dir(out_dir: Path, config: RunConfig, overwrite: bool) -> None:
    """Refuse to replace a finished run, or a folder holding a run with other settings, unless overwrite."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder")
    if overwrite or not out_dir.exists():
        return
    if (out_dir / COMPLETE_MARKER).exists():
        raise UserError(f"{out_dir} already holds a complete run; pass --overwrite to replace it, "
                        "or choose another --out")
    saved = out_dir / "config.json"
    if saved.exists() and (differs := differing_knobs(read_json(saved), config)):
        raise UserError(f"{out_dir} holds an unfinished run with other settings ({differs}); pass --overwrite or "
                        "another --out")


def check_writable(out_dir: Path) -> None:
    """Fail before any training if the run folder cannot be created or written."""
    try:
        make_dir(out_dir)
        probe = out_dir / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write the run folder {out_dir}: {error.strerror or error}") from None


def list_runs(runs_dir: Path = OUTPUTS_DIR / "runs") -> list[str]:
    """Names of the complete runs saved under runs_dir."""
    if not Path(runs_dir).exists():
        return []
    return sorted(p.name for p in Path(runs_dir).iterdir() if (p / COMPLETE_MARKER).exists())


def load_run(name_or_dir: str | Path, runs_dir: Path = OUTPUTS_DIR / "runs") -> dict:
    """A saved run's metrics.json, answers and training logs, by folder or by name under runs_dir."""
    folder = Path(name_or_dir)
    if not folder.is_dir():
        folder = Path(runs_dir) / str(name_or_dir)
    if not (folder / COMPLETE_MARKER).exists():
        known = ", ".join(list_runs(runs_dir)) or "none yet"
        raise UserError(f"no complete run at {folder}; saved runs: {known}")
    run = read_json(folder / "metrics.json")
    run["answers"] = pd.DataFrame(read_json(folder / "answers.json"))
    run["logs"] = read_json(folder / "logs.json")
    run["dir"] = str(folder)
    return run


def keep_earlier_run(out_dir: Path) -> Path | None:
    """Move a complete run out of the way (to NAME.earlier-N) so a notebook rerun never destroys it; returns where."""
    out_dir = Path(out_dir)
    if not (out_dir / COMPLETE_MARKER).exists():
        return None
    check_not_held(out_dir)
    n = 1
    while (target := out_dir.with_name(f"{out_dir.name}.earlier-{n}")).exists():
        n += 1
    os.replace(out_dir, target)
    return target


def same_settings(saved: dict, config: RunConfig) -> bool:
    """True if a saved config.json holds this config; a setting added since it was saved counts as its default."""
    return {**asdict(RunConfig()), **saved} == asdict(config)


def is_same_run(folder: Path, config: RunConfig) -> bool:
    """True if folder holds a complete run made with exactly this config."""
    folder = Path(folder)
    return is_complete(folder) and same_settings(read_json(folder / "config.json"), config)


def make_room(folder: Path, echo=print) -> None:
    """Move a complete run with other settings out of the way (never delete it)."""
    moved = keep_earlier_run(folder)
    if moved:
        echo(f"kept the earlier run with other settings as {moved}")


def metrics_table(metrics: dict) -> pd.DataFrame:
    """metrics.json's stages as a table: one row per stage, one column per measurement."""
    return pd.DataFrame(metrics["stages"]).T


def notebook_config(homework: str | None, profile_name: str | None = "auto", data_path=None, test_path=None,
                    student_id: str | None = None, seed: int | None = None, **knobs) -> RunConfig:
    """A notebook's parameters as one RunConfig, every knob checked first (a bad one: one line, nothing loaded).
    Nothing is downloaded here (with_course_data does that, after the notebook's preflight).

    Without a homework, the resolved profile's name ("tiny"), so runs saved by one notebook are found by the next.
    With one: its split rule and seed, and its model (profile_name None), unless DPO_PROFILE or profile_name names
    another: a rehearsal, which reads the bundled rehearsal files when no data paths are given. The course's model
    reads the course's own files (cloned by with_course_data when no paths are given).
    """
    from helpers.knobs import check_knobs

    check_knobs(**{name: value for name, value in knobs.items()
                   if name not in ("spread", "holdout", "name") and not (name == "num_epoch" and value is None)},
                **({"seed": seed} if seed is not None else {}))
    if not homework:
        profile = resolve_profile_name(profile_name)
        if knobs.get("num_epoch") is None:  # None in a parameters cell: the profile's epochs
            knobs["num_epoch"] = default_num_epoch(profile)
        return RunConfig(profile=profile, data=_text(data_path), test_prompts=_text(test_path),
                         seed=0 if seed is None else seed, **knobs)
    preset = load_homework_preset(homework)
    if profile_name in (None, "auto", preset.name, preset.profile):
        profile_name = os.environ.get("DPO_PROFILE") or None  # None: the course's model
    if profile_name is not None and data_path is None and test_path is None:
        data_path, test_path = preset.rehearsal_files
    if knobs.get("num_epoch") is None:
        knobs["num_epoch"] = default_num_epoch(profile_name, preset.name)
    return RunConfig(profile=profile_name, homework=preset.name, student_id=student_id, data=_text(data_path),
                     test_prompts=_text(test_path), split_rule=preset.split_rule,
                     seed=preset.seed if seed is None else seed, **knobs)


def with_course_data(config: RunConfig, folder: Path | None = None) -> RunConfig:
    """The config with the course's own files, cloned into outputs/course-data/NAME when it names none."""
    if not config.homework or (config.data and config.test_prompts):
        return config
    import dataclasses

    preset: Homework = load_homework_preset(config.homework)
    labelled, tests = preset.find_data(folder or OUTPUTS_DIR / "course-data" / preset.name)
    return dataclasses.replace(config, data=str(labelled), test_prompts=str(tests))


def is_rehearsal(config: RunConfig) -> bool:
    """True for a homework run on another model than the course's: its result file is not for submission."""
    return bool(config.homework) and resolve_profile(config, check_hardware=False).model_name != \
        load_homework_preset(config.homework).course_profile().model_name


def _text(path) -> str | None:
    """A path as text for RunConfig (None stays None)."""
    return None if path is None else str(path)
