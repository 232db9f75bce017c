"""Answers a reader can read: `answer_view` shows every answer whole (wrapped, never cut with "…") beside the stance
judge's label (support, oppose, or abstained), and marks with ⇄ each answer whose label differs from the column
before it (base → SFT → DPO, or run a → run b). The summaries written from the numbers are in helpers.stage_summary.
"""

from __future__ import annotations

import html
import math
import textwrap
from dataclasses import dataclass

import pandas as pd

STANCES = {1: "support", 0: "oppose"}  # the judge's labels; no label: it abstained
CHANGED = "⇄"
GLOSSARY = "05_compare.ipynb#3-What-the-numbers-mean"  # the notebooks' link to every measurement's meaning
LABEL_COLORS = {"support": "#2e7d32", "oppose": "#c62828"}  # the stance colours, here and in every plot (helpers.plots)


def stance_label(value: float | int | None) -> str:
    """The judge's label in words: 1 → support, 0 → oppose, None or NaN → abstained."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "abstained"
    return STANCES[int(value)]


def stage_labels(stage) -> list[str]:
    """A measured stage's (helpers.pipeline.StageResult) judge label per test prompt, in words."""
    return [stance_label(v) for v in stage.answer_rows["judge"]]


def judge_labels(judge, answers: list[str]) -> list[str]:
    """The stance judge's label for each answer, in words (helpers.evaluation.judge_stances)."""
    from helpers.evaluation import judge_stances

    return [stance_label(v) for v in judge_stances(judge, answers)]


def run_labels(run: dict, stage: str) -> list[str]:
    """A saved run's (helpers.runs.load_run) judge label per answer of `stage`, in the order of run["answers"]."""
    from helpers.row_values import load_row_values

    tables = load_row_values(run["dir"]) or {}
    saved = tables.get(stage, {}).get("answers")
    if saved is None or saved.empty:
        return ["not saved"] * len(run["answers"])
    by_id = dict(zip(saved["id"], saved["judge"]))
    return [stance_label(by_id[i]) if i in by_id else "not saved" for i in run["answers"]["id"]]


@dataclass
class AnswerView:
    """One row per question: each column's answer whole and its judge label, and which labels changed (⇄) from the
    column before (or from the reference column)."""

    questions: list[str]
    answers: dict[str, list[str]]  # column name → one answer per question
    labels: dict[str, list[str]]  # column name → one judge label per question
    width: str = "26em"  # the widest an answer column grows before its text wraps
    reference: str | None = None  # compare every column with this one; None: each with the column before it

    def changes(self) -> list[list[str]]:
        """Per question: the columns whose label differs from the column before (empty: no change)."""
        names = list(self.answers)
        pairs = [(self.reference or a, b) for a, b in zip(names, names[1:]) if b != self.reference]
        return [[b for a, b in pairs if self.labels[a][i] != self.labels[b][i]] for i in range(len(self.questions))]

    def caption(self) -> str:
        """How many answers per column, and how many questions' labels changed."""
        changed = sum(bool(c) for c in self.changes())
        counts = {name: pd.Series(labels).value_counts().to_dict() for name, labels in self.labels.items()}
        tally = "; ".join(f"{name}: " + ", ".join(f"{n} {label}" for label, n in count.items())
                          for name, count in counts.items())
        mark = f", {changed} of them with a changed label ({CHANGED})" if len(self.answers) > 1 else ""
        return f"{len(self.questions)} questions{mark}. {tally}"

    @property
    def frame(self) -> pd.DataFrame:
        """The same as a DataFrame: question, then per column its answer and `NAME stance`, then `stance changed`."""
        data: dict[str, list] = {"question": self.questions}
        for name in self.answers:
            data[name], data[f"{name} stance"] = self.answers[name], self.labels[name]
        data["stance changed"] = [(CHANGED + " " + ", ".join(c)) if c else "" for c in self.changes()]
        return pd.DataFrame(data)

    def _repr_html_(self) -> str:
        cell = (f"white-space:pre-wrap;word-break:break-word;max-width:{self.width};min-width:12em;"
                "text-align:left;vertical-align:top;padding:4px 8px;border-top:1px solid #ddd")
        head = "".join(f'<th style="text-align:left">{html.escape(n)}</th>' for n in ["question", *self.answers])
        rows = []
        for i, changed in enumerate(self.changes()):
            cells = [f'<td style="{cell}">{html.escape(self.questions[i])}</td>']
            for name in self.answers:
                label = self.labels[name][i]
                mark = f"{CHANGED} " if name in changed else ""
                tag = (f'<b style="color:{LABEL_COLORS.get(label, "#666")}">[{mark}{html.escape(label)}]</b> ')
                cells.append(f'<td style="{cell}">{tag}{html.escape(self.answers[name][i])}</td>')
            shade = ' style="background:#fff4d6"' if changed else ""
            rows.append(f"<tr{shade}>{''.join(cells)}</tr>")
        return (f'<table style="border-collapse:collapse"><caption style="text-align:left">'
                f"{html.escape(self.caption())}</caption><tr>{head}</tr>{''.join(rows)}</table>")

    def __repr__(self) -> str:
        lines = [self.caption()]
        for i, changed in enumerate(self.changes()):
            lines.append(textwrap.fill(f"{i + 1}. {self.questions[i]}", 110, subsequent_indent="   "))
            for name in self.answers:
                mark = f"{CHANGED} " if name in changed else ""
                lines.append(textwrap.fill(f"{name} [{mark}{self.labels[name][i]}]: {self.answers[name][i]}", 110,
                                           initial_indent="   ", subsequent_indent="      "))
        return "\n".join(lines)


def answer_view(questions: list[str], answers: dict[str, list[str]], labels: dict[str, list[str]],
                only_changed: bool = False, reference: str | None = None) -> AnswerView:
    """Answers per column (before → after, left to right) with their judge labels, a label marked ⇄ where it differs
    from the column before (reference: from that column instead); only_changed: just the questions with a mark."""
    if set(answers) != set(labels) or any(len(v) != len(questions) for v in [*answers.values(), *labels.values()]):
        raise ValueError("every column needs one answer and one label per question")
    if reference is not None and reference not in answers:
        raise ValueError(f"no column {reference!r} to compare with")
    view = AnswerView(list(questions), {k: list(v) for k, v in answers.items()},
                      {k: list(labels[k]) for k in answers}, reference=reference)
    if only_changed:
        keep = [i for i, c in enumerate(view.changes()) if c]
        view = AnswerView([view.questions[i] for i in keep], {k: [v[i] for i in keep] for k, v in view.answers.items()},
                          {k: [v[i] for i in keep] for k, v in view.labels.items()}, reference=reference)
    return view


def saved_answer_view(columns: dict[str, tuple[dict, str]], only_changed: bool = False,
                      reference: str | None = None) -> AnswerView:
    """answer_view of saved runs (helpers.runs.load_run): column name → (run, stage), questions matched by id."""
    runs = list(columns.values())
    ids = list(runs[0][0]["answers"]["id"])
    if any(list(run["answers"]["id"]) != ids for run, _ in runs):
        raise ValueError("these runs answered different test prompts; compare runs made on the same ones")
    return answer_view(list(runs[0][0]["answers"]["prompt"]),
                       {name: list(run["answers"][stage]) for name, (run, stage) in columns.items()},
                       {name: run_labels(run, stage) for name, (run, stage) in columns.items()}, only_changed,
                       reference)
