"""The closing sentences of notebooks 06 to 09, built from the results they describe, so that a re-run on another
model or seed cannot leave them stale: what rose, what fell, what was quickest, and the glossary's trouble signs
(notebook 05, section 3) with what to try."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from helpers.answer_views import GLOSSARY as GLOSSARY_PAGE

GLOSSARY = f"[glossary]({GLOSSARY_PAGE})"
STEP = 0.05  # a change smaller than this is read as no change (about two prompts of 48)

# Trouble signs: the measurement, the direction that signals trouble, what it means and what to try.
TROUBLE = {
    "judge_abstained": (+1, "more answers the judge will not read (looping or broken text)",
                        "fewer epochs or a lower learning rate, and read the answers"),
    "repetition": (+1, "more repeated text (looping)", "fewer epochs, a lower learning rate or a larger β"),
    "ended_rate": (-1, "fewer answers ending by themselves (rambling to the token limit)",
                   "fewer epochs, a larger β, or a larger SFT term on the chosen answer (`loss_weights`)"),
}


def _number(value) -> float:
    """A float, NaN for a missing value."""
    return math.nan if value is None else float(value)


def trouble_signs(start: Mapping[str, float], end: Mapping[str, float], step: float = STEP) -> list[str]:
    """The glossary's trouble signs from start to end, each with its values and what to try; [] when none shows."""
    return [f"`{name}` {before:.2f} → {after:.2f}: {TROUBLE[name][1]}; try {TROUBLE[name][2]}"
            for name, (before, after) in changes(start, end, step).items()]


def changes(start: Mapping[str, float], end: Mapping[str, float], step: float = STEP) -> dict:
    """{measurement: (before, after)} for each TROUBLE measurement that moved the wrong way by more than step."""
    found = {}
    for name, (sign, _, _) in TROUBLE.items():
        before, after = _number(start.get(name)), _number(end.get(name))
        if not math.isnan(before) and not math.isnan(after) and sign * (after - before) > step:
            found[name] = (before, after)
    return found


def _trouble_text(pairs: dict[str, tuple[Mapping, Mapping]]) -> str:
    """The trouble signs of several runs, one line per measurement naming the runs that show it, or the statement
    that none showed. pairs: {run name: (its start's measurements, its own)}."""
    by_run = {run: changes(start, end) for run, (start, end) in pairs.items()}
    if not any(by_run.values()):
        return (f"No run shows a trouble sign of the {GLOSSARY} against its start (`judge_abstained` or "
                "`repetition` up, `ended_rate` down, by more than 0.05); read the answers all the same.")
    lines = [f"**Trouble signs** ({GLOSSARY}), against each run's start:"]
    for name, (_, meaning, remedy) in TROUBLE.items():
        runs = [f"{run} ({found[name][0]:.2f} → {found[name][1]:.2f})" for run, found in by_run.items()
                if name in found]
        if runs:
            lines.append(f"- `{name}`, {meaning}: {', '.join(runs)}. Try {remedy}.")
    return "\n".join(lines)


def _moved(value: float, start: float, step: float = STEP) -> str:
    """"rose", "fell" or "stayed" from start to value."""
    return "rose" if value - start > step else "fell" if start - value > step else "stayed within 0.05 of the start"


def _extremes(values: pd.Series) -> str:
    """"highest: a, b (0.92), lowest: c (0.88)", every name tied at a value listed; "all N: 1.00" when all are equal."""
    if round(values.max(), 2) == round(values.min(), 2):
        return f"all {len(values)} at {values.max():.2f}"

    def named(value: float) -> str:
        return ", ".join(str(name) for name in values.index[values.round(3) == round(value, 3)]) + f" ({value:.2f})"

    return f"highest: {named(values.max())}, lowest: {named(values.min())}"


def variants_summary(table: pd.DataFrame) -> str:
    """08's closing lines from compare_variants' table: support rates, time, and each variant's trouble signs."""
    start, runs = table.iloc[0], table.iloc[1:]
    rate, judge = runs["support_rate"], runs["generated_support_rate"]
    up, down = int((rate > start["support_rate"]).sum()), int((rate < start["support_rate"]).sum())
    seconds = runs["train_seconds"]
    lines = [
        f"- Held-out `support_rate` (the share of held-out prompts whose support answer the model finds more likely) "
        f"rose above the start's {start['support_rate']:.2f} for {up} of {len(runs)} variants and fell below it for "
        f"{down}; {_extremes(rate)}.",
        f"- The judge's share of support answers: {_extremes(judge)}; the start: "
        f"{start['generated_support_rate']:.2f}.",
        f"- Training took {seconds.min():.1f} s ({seconds.idxmin()}, fastest) to {seconds.max():.1f} s "
        f"({seconds.idxmax()}, slowest).",
    ]
    return "\n".join(lines) + "\n\n" + _trouble_text({name: (start, row) for name, row in runs.iterrows()})


def sweep_text(table: pd.DataFrame) -> str:
    """07's sweep in sentences from run_sweep's table: DPO's held-out support_rate from the lowest ratio to the
    highest (mean over seeds), whether it rose at every step, and the trouble signs of each point against its SFT."""
    means = table.groupby("support_ratio").mean(numeric_only=True).sort_index()
    rate = means["dpo_support_rate"]
    steps = rate.diff().dropna()
    shape = ("it rose at every step of the ratio" if (steps > 0).all() else
             f"it did not rise at every step (it fell {int((steps <= 0).sum())} time(s) of {len(steps)}): "
             "read the intervals, neighbouring points may be inside each other's noise")
    seeds = table["seed"].nunique()
    text = (f"DPO's held-out `support_rate`, mean over {seeds} seed(s): {rate.iloc[0]:.2f} at ratio "
            f"{rate.index[0]:g}, {rate.iloc[-1]:.2f} at ratio {rate.index[-1]:g} (the SFT models: "
            f"{means['sft_support_rate'].mean():.2f}); {shape}.")
    pairs = {f"ratio {ratio:g}": ({k[4:]: v for k, v in row.items() if k.startswith("sft_")},
                                  {k[4:]: v for k, v in row.items() if k.startswith("dpo_")})
             for ratio, row in means.iterrows()}
    return text + "\n\n" + _trouble_text(pairs)


def questions_text(answers: pd.DataFrame, metric: str = "support_rate") -> str:
    """07's three questions on one measurement: which ones this data tells apart, with the difference and interval."""
    rows = answers[answers["metric"] == metric]
    told = [f"{r.question} ({r.difference:+.2f}, 95 % interval {r.low:+.2f} to {r.high:+.2f})"
            for r in rows.itertuples() if r.tells_apart]
    not_told = [f"{r.question} ({r.difference:+.2f}, interval {r.low:+.2f} to {r.high:+.2f})"
                for r in rows.itertuples() if not r.tells_apart]
    seeds = int(rows["n_seeds"].max()) if len(rows) else 0
    text = f"On `{metric}` this data tells apart {len(told)} of {len(rows)} questions"
    text += (": " + "; ".join(told) + "." if told else ".")
    if not_told:
        text += " It cannot tell apart: " + "; ".join(not_told) + "."
    if seeds == 1:
        text += (" With one seed the interval covers only which prompts were asked, not another training run: "
                 "add seeds before trusting a verdict.")
    return text


def leak_text(leak: pd.DataFrame, on_topic: str = "support_rate", unrelated: str = "unrelated") -> str:
    """07's probes: the on-topic difference, which topics moved (interval excluding 0), and a warning when the
    unrelated topic moved (a way of answering learned, not a view)."""
    rows = leak.set_index("metric")
    topics = rows[rows.index.str.startswith("probe_support_rate/")]
    moved = [f"{name.split('/', 1)[1]} ({r['difference']:+.2f})" for name, r in topics.iterrows() if r["tells_apart"]]
    still = [name.split("/", 1)[1] for name, r in topics.iterrows() if not r["tells_apart"]]
    text = (f"Ratio 1 minus ratio 0 on the held-out prompts: {rows.loc[on_topic, 'difference']:+.2f}. The probes "
            f"moved on {' and '.join(moved) if moved else 'no topic'}"
            + (f"; on {' and '.join(still)} this data cannot tell the two ratios apart." if still else ".") )
    if any(m.startswith(unrelated) for m in moved):
        text += (f" The `{unrelated}` topic moved too: the model learned a way of answering rather than a view on "
                 "the topic; compare fewer epochs or a smaller data_size.")
    return text


def scratch_text(comparison: pd.DataFrame, steps: int, tolerance: float) -> str:
    """06's result: how closely hand and TRL agreed, how the loss on the batch moved from ln 2 after our steps, and
    whether the rewards show a trouble sign."""
    exact = comparison.loc["loss":"rewards/accuracies", "abs diff"]
    agree = bool((exact < tolerance).all())
    loss = comparison.loc["loss", "TRL"]
    chosen, rejected = comparison.loc["rewards/chosen", "TRL"], comparison.loc["rewards/rejected", "TRL"]
    text = (f"By hand and in TRL, the loss and the four reward numbers {'agree' if agree else 'do NOT agree'} within "
            f"{tolerance:g} (largest gap {exact.max():.1e}). After our {steps} steps the loss on this batch "
            f"{'fell' if loss < math.log(2) else 'did not fall'} from ln 2 ≈ 0.6931 to {loss:.4f}: "
            f"`rewards/chosen` {chosen:+.3f}, `rewards/rejected` {rejected:+.3f}.")
    if chosen < 0 and rejected < chosen:
        text += (f" Both rewards are below 0: the chosen answer was pushed down too, its probability going "
                 f"elsewhere (a trouble sign in the {GLOSSARY}); try fewer steps, a lower learning rate or a larger β.")
    return text


def export_text(report: Mapping, run_metrics: pd.DataFrame, kilobytes: float) -> str:
    """09's result: whether the exported model answered like the run, its size, and the run's own trouble signs
    (DPO against the stage before it)."""
    same = report["same_greedy_answers"]
    text = (f"The exported folder holds {kilobytes / 1024:.1f} MB of weights and gave "
            f"{'the same' if same else 'DIFFERENT'} greedy answers as the run on {report['same_answers']} prompts.")
    before = run_metrics.iloc[-2] if len(run_metrics) > 1 else None
    signs = trouble_signs(before, run_metrics.iloc[-1]) if before is not None else []
    if signs:
        text += (f" The run it exported shows trouble signs ({GLOSSARY}): " + "; ".join(signs) + ". The export is "
                 "faithful to the run, so it carries them too.")
    return text
