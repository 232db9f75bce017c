"""Run folder names that say what differs: the homework's knobs and the seed as always
(`tiny_epoch-3_size-50_ratio-1`), then every other setting that is not its default, in a fixed order
(`tiny_epoch-3_size-50_ratio-1_beta-0.2_lr-0.001`), so two runs with other settings never share a folder and
switching back to a setting finds its saved run. A name the user gives (RunConfig.name, `--run-name`, the notebooks'
`run_name`) replaces the whole rule; it is checked here. Only the folder is named so: the answers file keeps the
course's name (RunConfig.answers_file_name)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.config import Profile
from helpers.homework import load_homework_preset
from helpers.knobs import KnobError

if TYPE_CHECKING:
    from helpers.runs import RunConfig

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
MAX_PART = 32  # longer values (paths, hub ids, module lists) become a readable stem and a short hash

# Profile fields a run can change (a notebook's profile.replace(...)), by their short name in a folder name.
PROFILE_KEYS = {"beta": "beta", "dpo_learning_rate": "lr", "dpo_epochs": "epochs", "dpo_loss_type": "loss",
                "dpo_loss_weights": "weights", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout",
                "lora_target_modules": "targets", "model_name": "model", "sft_epochs": "sft-epochs",
                "sft_learning_rate": "sft-lr", "system_prompt": "system", "max_length": "max-length",
                "max_new_tokens": "max-new-tokens", "batch_size": "batch", "grad_accum": "accum",
                "warmup_ratio": "warmup", "run_sft": "sft"}
SKIPPED_PROFILE_FIELDS = ("name", "memory", "extra")  # words about the profile, not settings of the run


def check_run_name(name: object) -> str | None:
    """A run name the user gives: 1 to 100 letters, digits, ., _, + or -, starting with a letter or digit (None: the
    name is made from the settings); anything else is a KnobError naming the knob."""
    if name is None:
        return None
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or ".earlier-" in name:
        raise KnobError(f"run_name (--run-name) is {name!r}; allowed: 1 to 100 letters, digits, '.', '_', '+' or '-', "
                        "starting with a letter or digit and without '.earlier-' (or None: named from the settings)")
    return name


def show_value(value: object) -> str:
    """A setting's value as a short, filesystem-safe piece of a name: 0.2 → "0.2", ("sigmoid", "sft") →
    "sigmoid+sft", a path → "stem-1a2b3c" (a short hash of its text)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float | int):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        text = "+".join(show_value(v) for v in value)
    else:
        text = str(value)
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._")
    if safe == text and len(text) <= MAX_PART:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(text).stem if ("/" in text or "\\" in text) else text).strip("_")
    return f"{stem[:MAX_PART - 8]}-{digest}" if stem else digest


def _is_course_file(path: str | None, course_name: str) -> bool:
    """True for a homework's own file (the course's clone or the bundled rehearsal copy): it has the course's name."""
    return path is not None and Path(path).name == course_name


def config_parts(config: RunConfig) -> list[str]:
    """The config's settings that are not their defaults, as name parts, in RunConfig's field order; the knobs
    already in the name (profile, epochs, size, ratio, seed) and the name itself are left out."""
    defaults = {f.name: f.default for f in fields(config)}
    course = ("", "")
    if config.homework:
        preset = load_homework_preset(config.homework)
        defaults["split_rule"] = preset.split_rule
        course = preset.data_files
    parts = []
    keys = {"beta": "beta", "learning_rate": "lr", "spread": "spread", "data": "data", "eval_data": "eval",
            "test_prompts": "tests", "model": "model", "skip_bad_rows": "skip-bad-rows", "split_rule": "split",
            "holdout": "holdout"}
    for name, key in keys.items():
        value = getattr(config, name)
        if value == defaults[name] or (name == "data" and _is_course_file(value, course[0])) \
                or (name == "test_prompts" and _is_course_file(value, course[1])):
            continue
        parts.append(key if isinstance(value, bool) else f"{key}-{show_value(value)}")
    return parts


def profile_changes(default: Profile, profile: Profile | None) -> dict:
    """The fields of profile that differ from the config's own (default), as JSON values: {"dpo_loss_type":
    ["sigmoid"], …} ({} for None or the same profile)."""
    if profile is None:
        return {}
    changes = {}
    for f in fields(Profile):
        old, new = getattr(default, f.name), getattr(profile, f.name)
        if f.name not in SKIPPED_PROFILE_FIELDS and old != new:
            changes[f.name] = list(new) if isinstance(new, tuple) else new
    return changes


def profile_parts(changes: dict) -> list[str]:
    """profile_changes as name parts: "loss-sigmoid", "r-8", "targets-q_proj+v_proj"."""
    return [f"{PROFILE_KEYS.get(name, name.replace('_', '-'))}-{show_value(value)}"
            for name, value in changes.items()]


def folder_name(config: RunConfig, stem: str, changes: dict | None = None) -> str:
    """The run's folder name: the user's name if given, else stem (profile, epochs, size, ratio, seed) and every
    other setting that differs, profile changes last."""
    if config.name:
        return config.name
    name = "_".join([stem, *config_parts(config), *profile_parts(changes or {})])
    if len(name) > 200:  # still unique and safe, and the start still readable
        name = f"{name[:180]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name
