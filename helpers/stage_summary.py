"""A notebook's summary sentence, written from the measurements it summarises, so that re-running the notebook on any
model can never leave it quoting stale numbers or claiming a success its own numbers contradict. Every trouble sign
of 05's glossary that the numbers show is named, with what to try."""

from __future__ import annotations

import math

from helpers.summaries import STEP, TROUBLE, changes

MIDDLE = 0.1  # a support_rate within this of 0.5 has no side
FLUENCY_DROP = 0.5  # nats per token: fluency this far below the start's is text the base model finds unnatural

TRY = {"sft": "try fewer SFT epochs or a lower learning rate (the tiny profile's 1M-parameter model cannot write at "
              "any setting: the real CPU model, profile smollm2-135m, is the fair test of what SFT does)",
       "dpo": "try a lower learning_rate, fewer epochs or a higher beta, and compare the runs in 05"}


def describe_lean(rate: float) -> str:
    """A support_rate in words: near the middle (no side), or which side it leans to."""
    if abs(rate - 0.5) <= MIDDLE:
        return "near the middle: no side"
    return f"leaning {'support' if rate > 0.5 else 'oppose'}"


def trouble_signs(start: dict, end: dict, curves: dict | None = None, fluency: bool = True) -> list[str]:
    """The glossary's trouble signs between two stages' metrics (and DPO's last logged rewards, if given); fluency
    False: leave fluency out (the base model scores its own answers highest, so base → SFT always falls)."""
    signs = [f"`{key}` {'rose' if after > before else 'fell'} from {before:.2f} to {after:.2f}: {TROUBLE[key][1]}"
             for key, (before, after) in changes(start, end, STEP).items()]  # the three shares, as 06-09 read them
    if fluency and not any(math.isnan(m.get("fluency", math.nan)) for m in (start, end)) and \
            end["fluency"] < start["fluency"] - FLUENCY_DROP:
        signs.append(f"`fluency` fell from {start['fluency']:.2f} to {end['fluency']:.2f} nats per token")
    if curves and {"rewards/chosen", "rewards/rejected", "rewards/margins"} <= set(curves):
        chosen, rejected, margins = (curves[k] for k in ("rewards/chosen", "rewards/rejected", "rewards/margins"))
        if chosen < 0 and rejected < 0 and abs(chosen) >= 0.25 * abs(margins):
            signs.append(f"`rewards/chosen` ended at {chosen:.1f}: the chosen answers lost probability too")
    return signs


def describe_stage_change(start: dict, end: dict, names: tuple[str, str] = ("SFT", "DPO"),
                          support_ratio: float | None = None, curves: dict | None = None) -> str:
    """Markdown: how support_rate moved from `start` to `end` (a stage's metrics), the trouble signs, what to try.
    support_ratio given: `end` is a DPO stage trained towards it; None: an SFT stage, which should take no side."""
    a, b = start["support_rate"], end["support_rate"]
    lines = [f"From {names[0]} to {names[1]}, `support_rate` on the held-out prompts went from {a:.3f} to {b:.3f} "
             f"({describe_lean(b)})."]
    if support_ratio is not None and support_ratio != 0.5:
        wanted = "support" if support_ratio > 0.5 else "oppose"
        moved = (b - a) * (1 if wanted == "support" else -1)
        lines.append(f"The pairs (support_ratio {support_ratio:g}) pushed towards {wanted}: " +
                     ("it moved that way." if moved > 0.02 else "it hardly moved that way; try more epochs or a "
                                                                "higher learning_rate."))
    if "pair_accuracy" in end and support_ratio is not None:
        lines.append(f"`pair_accuracy` on held-out pairs is {end['pair_accuracy']:.3f} (0.5 is chance).")
    signs = trouble_signs(start, end, curves, fluency=support_ratio is not None)
    stage = "dpo" if support_ratio is not None else "sft"
    if signs:
        lines.append("**Trouble signs:** " + "; ".join(signs) + f". To do better, {TRY[stage]}.")
    else:
        lines.append(f"No trouble sign: repetition, judge abstentions and endings stayed within {STEP} of "
                     f"{names[0]}'s" + (", and the chosen answers kept their reward." if curves else "."))
    return " ".join(lines)


def describe_start(metrics: dict, n_heldout: int) -> str:
    """Markdown: the untrained model's stance and form, the levels every later stage is held against."""
    rate = metrics["support_rate"]
    return (f"Before any fine-tuning, `support_rate` on {n_heldout} held-out prompts is {rate:.2f} "
            f"({describe_lean(rate)}): the model's prior, where SFT and DPO start. The judge abstained on "
            f"{metrics['judge_abstained']:.2f} of the answers and their `repetition` is {metrics['repetition']:.2f}: "
            "the levels that later stages are held against.")


def describe_run(run: dict, with_sft: bool = True) -> str:
    """Markdown bullets for a saved run (helpers.runs.load_run): base → SFT (if it has SFT), then the start → DPO."""
    stages, ratio = run["stages"], run["config"]["support_ratio"]
    start = "sft" if "sft" in stages else "base"
    lines = [describe_stage_change(stages["base"], stages["sft"], ("base", "SFT"))] if with_sft and start == "sft" \
        else []
    lines.append(describe_stage_change(stages[start], stages["dpo"], ("SFT" if start == "sft" else "base", "DPO"),
                                       support_ratio=ratio, curves=last_logged(run["logs"].get("dpo", []))))
    return "\n".join(f"- {line}" for line in lines)


def last_logged(log_history: list[dict], keys: tuple[str, ...] = ("rewards/chosen", "rewards/rejected",
                                                                   "rewards/margins")) -> dict:
    """The last logged value of each key in a trainer's log history (keys never logged are left out)."""
    found = {}
    for entry in log_history:
        found.update({k: entry[k] for k in keys if k in entry})
    return found
