"""The closing sentences of 06–09 follow the numbers they are built from: the right variant named fastest and
slowest, the right direction, and the glossary's trouble signs said when the numbers show them."""

from __future__ import annotations

import pandas as pd

from helpers.summaries import (export_text, leak_text, questions_text, scratch_text, sweep_text, trouble_signs,
                               variants_summary)


def _variants(**changes) -> pd.DataFrame:
    rows = {"sft (start)": dict(support_rate=0.50, generated_support_rate=0.60, judge_abstained=0.10,
                                repetition=0.30, ended_rate=1.0, train_seconds=0.0),
            "dpo": dict(support_rate=0.70, generated_support_rate=0.40, judge_abstained=0.10, repetition=0.31,
                        ended_rate=1.0, train_seconds=2.0),
            "orpo": dict(support_rate=0.45, generated_support_rate=0.80, judge_abstained=0.10, repetition=0.30,
                         ended_rate=1.0, train_seconds=9.5),
            "kto": dict(support_rate=0.60, generated_support_rate=0.55, judge_abstained=0.10, repetition=0.29,
                        ended_rate=1.0, train_seconds=1.2)}
    for name, values in changes.items():
        rows[name].update(values)
    return pd.DataFrame(rows).T


def test_variants_summary_names_the_fastest_slowest_highest_and_lowest():
    text = variants_summary(_variants())
    assert "1.2 s (kto, fastest) to 9.5 s (orpo, slowest)" in text
    assert "rose above the start's 0.50 for 2 of 3 variants and fell below it for 1" in text
    assert "highest: dpo (0.70), lowest: orpo (0.45)" in text
    assert "support answers: highest: orpo (0.80), lowest: dpo (0.40)" in text
    assert "No run shows a trouble sign" in text


def test_variants_summary_names_every_variant_of_a_tie_and_says_when_all_agree():
    text = variants_summary(_variants(kto=dict(support_rate=0.70), orpo=dict(generated_support_rate=0.40),
                                      dpo=dict(generated_support_rate=0.40)))
    assert "highest: dpo, kto (0.70), lowest: orpo (0.45)" in text
    text = variants_summary(_variants(**{name: dict(generated_support_rate=1.0) for name in ("dpo", "orpo", "kto")}))
    assert "support answers: all 3 at 1.00" in text


def test_variants_summary_flags_looping_and_abstentions_with_what_to_try():
    text = variants_summary(_variants(dpo=dict(repetition=0.60, judge_abstained=0.40), kto=dict(ended_rate=0.5)))
    assert "Trouble signs" in text and "No run shows" not in text
    lines = text.splitlines()
    repetition = next(line for line in lines if line.startswith("- `repetition`"))
    assert "dpo (0.30 → 0.60)" in repetition and "orpo" not in repetition and "Try fewer epochs" in repetition
    assert "dpo (0.10 → 0.40)" in next(line for line in lines if line.startswith("- `judge_abstained`"))
    assert "kto (1.00 → 0.50)" in next(line for line in lines if line.startswith("- `ended_rate`"))
    assert not any("orpo (" in line for line in lines if line.startswith("- `"))


def test_trouble_signs_read_each_measurement_in_its_own_direction():
    start = dict(judge_abstained=0.1, repetition=0.3, ended_rate=0.9)
    assert trouble_signs(start, dict(judge_abstained=0.0, repetition=0.1, ended_rate=1.0)) == []  # all improved
    signs = trouble_signs(start, dict(judge_abstained=0.2, repetition=0.4, ended_rate=0.8))
    assert len(signs) == 3 and signs[2].startswith("`ended_rate` 0.90 → 0.80: fewer answers ending")
    assert trouble_signs(start, dict(repetition=0.33)) == []  # within the step


def _sweep(rates: list[float], dpo_repetition: float = 0.3) -> pd.DataFrame:
    ratios = [0.0, 0.5, 1.0]
    return pd.DataFrame([dict(support_ratio=r, seed=s, sft_support_rate=0.55, dpo_support_rate=v,
                              sft_repetition=0.3, dpo_repetition=dpo_repetition if r == 1.0 else 0.3)
                         for s in (0, 1) for r, v in zip(ratios, rates)])


def test_sweep_text_reports_the_ends_and_whether_it_rose_at_every_step():
    text = sweep_text(_sweep([0.4, 0.6, 0.8]))
    assert "0.40 at ratio 0, 0.80 at ratio 1" in text and "rose at every step" in text and "2 seed(s)" in text
    bumpy = sweep_text(_sweep([0.4, 0.3, 0.8], dpo_repetition=0.7))
    assert "did not rise at every step (it fell 1 time(s) of 2)" in bumpy
    assert "- `repetition`, more repeated text (looping): ratio 1 (0.30 → 0.70)." in bumpy


def _questions(n_seeds: int) -> pd.DataFrame:
    return pd.DataFrame([dict(question="ratio 0 vs 1", metric="support_rate", difference=0.3, low=0.2, high=0.4,
                              tells_apart=True, n_seeds=n_seeds),
                         dict(question="epoch 1 vs 3", metric="support_rate", difference=0.05, low=-0.02, high=0.1,
                              tells_apart=False, n_seeds=n_seeds)])


def test_questions_text_names_the_questions_told_apart_and_warns_with_one_seed():
    text = questions_text(_questions(3))
    assert "tells apart 1 of 2 questions: ratio 0 vs 1 (+0.30" in text and "cannot tell apart: epoch 1 vs 3" in text
    assert "One seed" not in text and "With one seed" in questions_text(_questions(1))


def test_leak_text_warns_when_the_unrelated_topic_moves():
    leak = pd.DataFrame([dict(metric="support_rate", difference=0.3, tells_apart=True),
                         dict(metric="probe_support_rate/novels", difference=0.5, tells_apart=True),
                         dict(metric="probe_support_rate/unrelated", difference=-0.2, tells_apart=False)])
    text = leak_text(leak)
    assert "+0.30" in text and "moved on novels (+0.50); on unrelated this data cannot tell" in text
    assert "way of answering" not in text
    leak.loc[2, "tells_apart"] = True
    assert "way of answering" in leak_text(leak)


def test_scratch_text_says_whether_hand_and_trl_agree_and_flags_both_rewards_down():
    comparison = pd.DataFrame({"TRL": [0.4, 0.25, -0.4, 0.65, 1.0], "abs diff": [1e-7, 1e-7, 1e-7, 1e-7, 0.0]},
                              index=["loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                                     "rewards/accuracies"])
    text = scratch_text(comparison, 3, 1e-5)
    assert "agree within 1e-05" in text and "After our 3 steps the loss on this batch fell from ln 2" in text
    assert "to 0.4000" in text and "pushed down" not in text
    comparison.loc["rewards/chosen", "TRL"], comparison.loc["loss", "abs diff"] = -0.3, 1e-3
    comparison.loc["loss", "TRL"] = 0.8
    text = scratch_text(comparison, 3, 1e-5)
    assert "did not fall" in text and "do NOT agree" in text and "pushed down too" in text


def test_export_text_carries_the_runs_trouble_signs():
    report = {"same_greedy_answers": True, "same_answers": "48/48"}
    metrics = pd.DataFrame({"repetition": [0.2, 0.3, 0.31], "ended_rate": [1.0, 1.0, 1.0]},
                           index=["base", "sft", "dpo"])
    assert "the same greedy answers" in export_text(report, metrics, 2048) and "2.0 MB" in export_text(
        report, metrics, 2048)
    metrics.loc["dpo", "repetition"] = 0.6
    assert "`repetition` 0.30 → 0.60" in export_text(report, metrics, 2048)
