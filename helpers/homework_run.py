"""The homework notebook's steps (notebooks/00_homework.ipynb): a preflight before any download, the course's run
exactly, its answers printed as the course prints them, the result file written, shown, checked and handed to the
student (Colab's download, Kaggle's output folder, Google Drive if asked), and the three report questions on request.

A run on another model than the course's is a rehearsal: every output says so in capitals, and nothing offers its
file for download.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import textwrap
from pathlib import Path

from helpers.errors import UserError
from helpers.runs import RunConfig, is_rehearsal, load_homework_preset, resolve_profile

REHEARSAL = "REHEARSAL ON {model}, NOT THE COURSE'S MODEL: THIS FILE IS NOT A SUBMISSION"
NO_GPU = ("no GPU in this runtime, and the course's model ({model}) needs one: Colab: Runtime → Change runtime type → "
          "T4 GPU; Kaggle: Settings → Accelerator → GPU T4 x2; or rehearse the whole path on this CPU with "
          'profile_name = "tiny", or for hw6 with a real model that answers in Traditional Chinese profile_name = '
          '"gemma3-270m" (its file is then not for submission)')
# The course's own figure for its run (ML2025 HW7's notebook, with unsloth on a 16 GB GPU); HW6 states none.
COURSE_TIMES = {"hw7": "the course's notebook reports about 70 s of training for 21 steps on a 16 GB GPU with "
                       "unsloth (this project does not use unsloth: expect longer)"}


def where() -> str:
    """"colab", "kaggle" or "local": where the notebook runs."""
    if "google.colab" in sys.modules:
        return "colab"
    return "kaggle" if "KAGGLE_KERNEL_RUN_TYPE" in os.environ else "local"


def banner(config: RunConfig) -> str | None:
    """The capitals line every output of a rehearsal carries (None for the course's model)."""
    if not is_rehearsal(config):
        return None
    return REHEARSAL.format(model=resolve_profile(config, check_hardware=False).model_name.upper())


def training_steps(config: RunConfig, profile) -> int:
    """Optimizer steps of the course's run: ⌈pairs ÷ (batch × accumulation)⌉ per epoch, times the epochs."""
    pairs = config.data_size or load_homework_preset(config.homework).rows
    return math.ceil(pairs / (profile.batch_size * profile.grad_accum)) * math.ceil(config.num_epoch)


def preflight(config: RunConfig) -> dict:
    """What this run will use and need, read before anything is downloaded: the GPU and its compute capability, the
    precision, free memory beside the estimate for this exact run, the trainings and steps, the data's source, and
    the result file. Without a GPU the course's model is refused in one line (a rehearsal goes on)."""
    from helpers.hardware import gpu_capability, gpu_memory_gib, gpu_name, precision_name
    from helpers.holdout import holdout_plan
    from helpers.memory import T4_CAPABILITY, estimate_peak_memory, memory_note

    preset = load_homework_preset(config.homework)
    profile = resolve_profile(config, check_hardware=False)
    capability = gpu_capability()
    if capability is None and profile.needs_gpu:
        raise UserError(NO_GPU.format(model=profile.model_name))
    plan = holdout_plan(config, config.data_size or preset.rows)
    extra = plan.get("folds", 0) if plan["method"] == "kfold" else 0
    facts = {"homework": preset.course, "model": profile.model_name, "rehearsal": banner(config) or "no: the course's "
             "model, its settings, split rule and seed", "GPU": "none (this CPU)" if capability is None else
             f"{gpu_name()}, compute capability {capability[0]}.{capability[1]}", "precision": precision_name()}
    if capability is not None and profile.needs_gpu:
        free, total = gpu_memory_gib()
        estimate = estimate_peak_memory(profile, gpu=capability or T4_CAPABILITY)
        need = estimate["gib"]["total"] if estimate else float("nan")
        facts["memory"] = (f"{free:.1f} of {total:.1f} GiB free; this run needs ~{need:.1f} GiB (estimate, attention "
                           f"{estimate['attention'] if estimate else '?'}): "
                           + ("fits" if need <= free else "does NOT fit: restart the runtime to free the GPU"))
    else:
        facts["memory"] = memory_note(profile)
    facts["trainings"] = (f"{1 + extra} DPO training{'s' if extra else ''} (no SFT stage"
                          + (f"; {extra} for the k-fold measurement you asked for)" if extra else ", no k-fold), "
                             "as the course trains once"))
    facts["steps"] = f"{training_steps(config, profile)} optimizer steps of {profile.batch_size} × " \
                     f"{profile.grad_accum} pairs ({config.num_epoch:g} epoch(s))"
    facts["time"] = COURSE_TIMES.get(preset.name, "not measured on a T4 by this project") if profile.needs_gpu \
        else "about a minute on 2 CPU cores (the run below prints its own time)"
    facts["data"] = (f"{_shown(config.data)} and {_shown(config.test_prompts)}" if config.data else
                     f"the course's files, cloned from {preset.data_url} on the next step")
    facts["held out"] = plan["note"]
    facts["result file"] = config.answers_file_name(preset.rows)
    return facts


def _shown(path) -> str:
    """A path inside the project as the project sees it (assets/…), any other as given."""
    from helpers.config import PROJECT_ROOT

    path = Path(path).resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def run_homework(config: RunConfig, echo=print) -> tuple[Path, dict]:
    """The course's run (base measured, DPO trained, answers generated, the result file written) in
    outputs/runs/NAME, or the saved run with exactly these settings; returns (folder, metrics.json)."""
    from helpers.config import OUTPUTS_DIR
    from helpers.files import read_json
    from helpers.pipeline import run_pipeline
    from helpers.runs import is_same_run, load_inputs, make_room

    folder = OUTPUTS_DIR / "runs" / config.run_name(len(load_inputs(config).train_rows))
    if is_same_run(folder, config):
        echo(f"the saved run in outputs/runs/{folder.name} has exactly these settings: reused, nothing trained")
        return folder, read_json(folder / "metrics.json")
    make_room(folder, echo)
    metrics = run_pipeline(config, folder, overwrite=True, echo=echo)
    return folder, metrics


def course_answers(config: RunConfig, folder: Path, width: int = 100) -> str:
    """Every test prompt with both answers, whole, as the course's notebook prints them."""
    from helpers.files import read_json

    lines = [f"*** {text} ***" for text in [banner(config)] if text]
    for row in read_json(folder / "answers.json"):
        for label, text in (("Question", row["prompt"]), ("Response from original model", row["base"]),
                            ("Response from trained model", row["dpo"])):
            lines.append(textwrap.fill(f"{label}: {text}", width, subsequent_indent="    ", break_long_words=True,
                                       replace_whitespace=False))
        lines.append("")
    return "\n".join(lines)


def stance_table(folder: Path):
    """Per test prompt, the judge's reading of each answer (support, oppose, or abstained on text it cannot read)
    before and after training, and whether it changed."""
    import pandas as pd

    from helpers.files import read_json
    from helpers.row_values import load_row_values

    tables = load_row_values(folder)
    names = {1.0: "support", 0.0: "oppose"}

    def labels(stage: str) -> list[str]:
        return [names.get(v, "abstained") for v in tables[stage]["answers"]["judge"]]

    table = pd.DataFrame({"question": [a["prompt"] for a in read_json(folder / "answers.json")],
                          "original model": labels("base"), "trained model": labels("dpo")})
    table["changed"] = (table["original model"] != table["trained model"]).map({True: "← changed", False: ""})
    return table


def deliver_result(config: RunConfig, folder: Path, save_to_drive: bool = False, echo=print) -> Path:
    """Show the result file whole, check it (helpers.homework_check), say where it is, and hand it over: Colab's
    download (not for a rehearsal), Kaggle's output folder, and a copy to Google Drive when asked (Colab only)."""
    from helpers.homework_check import check_result_file, summary_line

    path = (folder / config.answers_file_name(load_homework_preset(config.homework).rows)).resolve()
    warning = banner(config)
    echo(f"*** {warning} ***" if warning else f"the file to submit: {path.name}")
    place = where()
    from helpers.config import PROJECT_ROOT

    shown = f"{os.path.relpath(path)} (from this notebook's folder)" if path.is_relative_to(PROJECT_ROOT) else path
    echo(f"path: {shown}" + (f"; full path: {path}" if place in ("colab", "kaggle") else ""))
    echo(path.read_text(encoding="utf-8"))
    echo("homework check: " + summary_line(check_result_file(path, config.homework)).replace(str(path), path.name))
    if place == "colab" and not warning:
        from google.colab import files  # type: ignore[import-not-found]

        files.download(str(path))
        echo("Colab's download of the file has started (or look in the Files panel on the left)")
    elif place == "kaggle":
        echo("Kaggle keeps everything under /kaggle/working as this notebook's output: Save Version, then Output")
    if save_to_drive:
        if place != "colab":
            echo("save_to_drive copies to Google Drive on Colab only; here the file stays at the path above")
        else:
            from google.colab import drive  # type: ignore[import-not-found]

            drive.mount("/content/drive")
            target = Path("/content/drive/MyDrive/dpo-notebooks") / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            echo(f"copied to Google Drive: {target}")
    return path


REPORT_QUESTIONS = {  # the report's three comparisons, each at the course's other settings
    "support_ratio 0 vs 1": {"ratio 0": dict(support_ratio=0, num_epoch=3, data_size=50),
                             "ratio 1": dict(support_ratio=1, num_epoch=3, data_size=50)},
    "num_epoch 1 vs 3": {"1 epoch": dict(support_ratio=1, num_epoch=1, data_size=50),
                         "3 epochs": dict(support_ratio=1, num_epoch=3, data_size=50)},
    "data_size 10 vs 50": {"10 pairs": dict(support_ratio=1, num_epoch=3, data_size=10),
                           "50 pairs": dict(support_ratio=1, num_epoch=3, data_size=50)},
}


def report_cost(config: RunConfig, run_seconds: float) -> str:
    """What the report questions cost: their distinct runs, in units of the run just made."""
    distinct = {tuple(sorted(side.items())) for sides in REPORT_QUESTIONS.values() for side in sides.values()}
    return (f"{len(distinct)} more runs (each like the one above, about {run_seconds:.0f} s here), "
            f"about {len(distinct) * run_seconds / 60:.0f} min in all")


def report_questions(config: RunConfig, echo=print):
    """The three report questions as runs (saved ones reused), compared on the judge's reading of the answers to the
    test prompts: both means, the difference with its 95 % interval over the prompts, and a verdict."""
    import dataclasses

    from helpers.config import OUTPUTS_DIR
    from helpers.seeds import compare_questions

    shared = {k: v for k, v in dataclasses.asdict(config).items()
              if k not in ("support_ratio", "num_epoch", "data_size", "seed")}
    return compare_questions(REPORT_QUESTIONS, [config.seed], OUTPUTS_DIR / "runs",
                             metrics=("generated_support_rate",), echo=echo, **shared)
