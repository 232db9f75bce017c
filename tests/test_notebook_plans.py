"""How much 07 and 08 run per profile: everything on the tiny model, less under CI, and a real CPU model's plan
small enough for about 5 minutes a notebook."""

from __future__ import annotations

from helpers.notebook_plans import ALL_VARIANTS, notebook_plan, sweep_plan_text, variant_plan_text
from helpers.variants import VARIANTS


def test_the_tiny_model_runs_the_full_plan_and_ci_a_smaller_one():
    full, quick = notebook_plan("tiny", ci=False), notebook_plan("tiny", ci=True)
    assert full.seeds == (0, 1, 2) and full.ratios == (0, 0.25, 0.5, 0.75, 1) and full.variants == ALL_VARIANTS
    assert quick.sweep_runs < full.sweep_runs and len(quick.seeds) == 2
    assert set(ALL_VARIANTS) == set(VARIANTS)


def test_a_real_cpu_model_fits_about_five_minutes_a_notebook():
    plan = notebook_plan("smollm2-135m", ci=False)
    assert plan.seeds == (0,) and plan.ratios == (0, 0.5, 1) and len(plan.variants) == 4
    assert set(plan.variants) <= set(VARIANTS) and "kto" not in plan.variants  # KTO trains twice the steps
    assert plan.sweep_runs == 5  # 3 points and the 2 question settings, at 45 s to 1 minute a run
    assert notebook_plan("smollm2-135m", ci=True) == plan  # CI does not make a real model's plan larger


def test_auto_follows_dpo_profile(monkeypatch):
    monkeypatch.setenv("DPO_PROFILE", "smollm2-135m")
    assert notebook_plan("auto", ci=False).profile == "smollm2-135m"


def test_the_plan_sentences_count_the_runs_and_say_who_chose_them():
    plan = notebook_plan("smollm2-135m", ci=False)
    text = sweep_plan_text(plan, plan.seeds, plan.ratios)
    assert "3 ratio points (0, 0.5, 1) × 1 seed(s)" in text and "5 DPO runs" in text and "4 to 5 minutes" in text
    assert "at 45 s to 1 minute a run" in text
    assert "set in the parameters cell" in sweep_plan_text(plan, (0, 1), plan.ratios)
    assert "4 trainings, about 3 to 4 minutes" in variant_plan_text(plan, plan.variants)
    assert "not measured" in variant_plan_text(notebook_plan("gemma3-270m", ci=False), ("dpo",))
