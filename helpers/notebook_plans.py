"""How much notebooks 07 and 08 run on each profile: the sweep's points and seeds, the loss variants. The tiny model
runs them all in minutes; a real model on a CPU (45 s to 1 minute a run) gets a plan that fits in about 5 minutes."""

from __future__ import annotations

import os
from dataclasses import dataclass

from helpers.config import resolve_profile_name

TINY_PROFILES = ("tiny", "tiny-4bit")  # seconds a run: the full plan
# minutes one DPO run takes (train and measure), SFT cached, 2 CPU cores: 41 to 50 s in 07 and 08 on a fresh clone
RUN_MINUTES = {"smollm2-135m": (0.75, 1.0)}
ALL_VARIANTS = ("default", "dpo", "ipo", "hinge", "robust", "sigmoid_norm", "orpo", "kto")
SHORT_VARIANTS = ("default", "dpo", "ipo", "orpo")  # the profile's recipe, plain DPO, a squared loss, no reference
QUESTION_RUNS = 2  # runs 07's questions add per seed beyond the sweep: 1 epoch and 10 pairs (at ratio 1)


@dataclass(frozen=True)
class NotebookPlan:
    """What 07 and 08 run on one profile."""

    profile: str
    seeds: tuple[int, ...]  # 07: one SFT model and one DPO run per point for each seed
    ratios: tuple[float, ...]  # 07: the support_ratio points of the sweep
    variants: tuple[str, ...]  # 08: the losses compared
    reason: str  # why this plan, in a few words

    @property
    def sweep_runs(self) -> int:
        """07's DPO runs: every point for every seed, and the questions' two extra settings for every seed."""
        return len(self.seeds) * (len(self.ratios) + QUESTION_RUNS)


def is_ci() -> bool:
    """Whether the environment says CI=true (the tests' quick runs)."""
    return os.environ.get("CI", "").lower() == "true"


def notebook_plan(profile_name: str | None = None, ci: bool | None = None) -> NotebookPlan:
    """The plan for this profile ("auto" resolved as setup_notebook does): full on the tiny model, smaller under
    CI=true, and small enough for about 5 minutes a notebook on a real model."""
    profile = resolve_profile_name(profile_name)
    ci = is_ci() if ci is None else ci
    if profile in TINY_PROFILES and ci:
        return NotebookPlan(profile, (0, 1), (0, 0.5, 1), ALL_VARIANTS, "CI=true: the quick plan")
    if profile in TINY_PROFILES:
        return NotebookPlan(profile, (0, 1, 2), (0, 0.25, 0.5, 0.75, 1), ALL_VARIANTS,
                            "the full plan")
    return NotebookPlan(profile, (0,), (0, 0.5, 1), SHORT_VARIANTS,
                        "the plan for a real model, whose runs take about a minute each")


def run_minutes(profile_name: str, runs: int, shorter: int = 0) -> str:
    """"at most 4 to 5 minutes" for this many runs where the profile's time per run was measured, else why not;
    `shorter` of them train less (1 epoch, or 10 pairs) and are counted as whole runs, so the range is an upper one."""
    if profile_name in TINY_PROFILES:
        return "seconds each"
    if profile_name not in RUN_MINUTES:
        return "the time per run is not measured for this profile"
    low, high = RUN_MINUTES[profile_name]
    return (f"{'at most ' if shorter else ''}about {low * runs:.0f} to {high * runs:.0f} minutes on 2 CPU cores "
            f"at {_duration(low)} to {_duration(high)} a run with the SFT model cached"
            + (f" ({shorter} of them train 1 epoch or 10 pairs, so less)" if shorter else ""))


def _duration(minutes: float) -> str:
    """"45 s", "1 minute", "1.5 minutes"."""
    return f"{minutes * 60:.0f} s" if minutes < 1 else f"{minutes:g} minute{'' if minutes == 1 else 's'}"


def sweep_plan_text(plan: NotebookPlan, seeds: tuple[int, ...], ratios: tuple[float, ...]) -> str:
    """The sweep this notebook will run, in a sentence (the seeds and ratios given, the plan's or the student's)."""
    extra = len(seeds) * QUESTION_RUNS
    runs = len(seeds) * len(ratios) + extra
    why = ", set in the parameters cell" if (tuple(seeds), tuple(ratios)) != (plan.seeds, plan.ratios) else \
        f" ({plan.reason})"
    return (f"Profile `{plan.profile}`: {len(ratios)} ratio points ({', '.join(f'{r:g}' for r in ratios)}) × "
            f"{len(seeds)} seed(s){why}, plus {QUESTION_RUNS} settings per seed for the questions of section 3: "
            f"{runs} DPO runs, {run_minutes(plan.profile, runs, extra)}. Saved runs are loaded, not trained again.")


def variant_plan_text(plan: NotebookPlan, variants: tuple[str, ...]) -> str:
    """The losses this notebook will train, in a sentence."""
    why = ", set in the parameters cell" if tuple(variants) != plan.variants else f" ({plan.reason})"
    return (f"Profile `{plan.profile}`: {len(variants)} losses ({', '.join(variants)}){why}: {len(variants)} "
            f"trainings, {run_minutes(plan.profile, len(variants))}.")
