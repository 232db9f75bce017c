"""A saved run found again by its settings: notebook 04 trains step by step in its own cells, and asks here first
whether outputs/runs/NAME already holds a complete run with exactly these settings; if so it loads that run's DPO
adapter and curves instead of training, so switching back to a setting trains nothing."""

from __future__ import annotations

from pathlib import Path

import torch

from helpers.config import OUTPUTS_DIR, Profile
from helpers.files import read_json
from helpers.run_names import profile_changes
from helpers.runs import RunConfig, is_same_run, resolve_profile
from helpers.training import TrainResult


def changed_profile(config: RunConfig, profile: Profile | None) -> dict:
    """The fields of the profile a notebook trains with that differ from the config's own (saved in metrics.json as
    `profile_changes`, and named in the folder)."""
    return profile_changes(resolve_profile(config, check_hardware=False), profile) if profile else {}


def saved_run(config: RunConfig, n_rows: int, profile: Profile | None = None,
              runs_dir: Path = OUTPUTS_DIR / "runs") -> tuple[Path, bool]:
    """(folder, same): the run's folder under runs_dir, and whether it holds a complete run made with exactly these
    settings and the same profile changes."""
    folder = Path(runs_dir) / config.run_name(n_rows, profile)
    same = is_same_run(folder, config) and \
        read_json(folder / "metrics.json").get("profile_changes", {}) == changed_profile(config, profile)
    return folder, same


def load_dpo_result(start_model: torch.nn.Module, folder: Path) -> TrainResult:
    """A saved run's DPO adapter on the start model, with its DPO log, as a TrainResult (0 seconds: nothing trained).
    A 4-bit start model's own SFT adapter is taken off first: the saved adapter is the one DPO trained further."""
    from peft import PeftModel

    base = start_model.unload() if isinstance(start_model, PeftModel) else start_model
    model = PeftModel.from_pretrained(base, str(Path(folder) / "adapter")).eval()
    log = read_json(Path(folder) / "logs.json")["dpo"]
    steps = max((entry.get("step", 0) for entry in log), default=0)
    return TrainResult(model=model, log_history=log, seconds=0.0, steps=steps)
