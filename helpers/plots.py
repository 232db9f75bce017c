"""Plots the notebooks show: training curves, the support_ratio split, and stage-by-stage measurements."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pandas as pd

from helpers.answer_views import LABEL_COLORS

DPO_CURVES = {
    "loss": "the training loss: its DPO part is ln 2 ≈ 0.693 at the first step and falls as the answers separate",
    "rewards/chosen": "beta × how much more likely the chosen answer became than under the reference",
    "rewards/rejected": "the same for the rejected answer; it should fall",
    "rewards/margins": "chosen reward minus rejected reward: the gap DPO widens",
    "rewards/accuracies": "share of pairs in the batch whose chosen reward beats the rejected one",
}
STAGE_COLORS = {"base": "#9e9e9e", "sft": "#5c8dd6", "dpo": "#e07a3f"}  # one colour per stage, in every plot
STANCE_COLORS = LABEL_COLORS  # a pair's preferred answer (and a judge label); runs mix them by ratio
OTHER_COLORS = ["#b07cc6", "#8d6e63", "#26a69a", "#ec407a"]  # anything neither a stage nor a support_ratio names


def run_color(support_ratio: float) -> str:
    """A run's colour, fixed by its support_ratio: oppose red at 0, support green at 1, mixed in between."""
    mix = min(max(float(support_ratio), 0.0), 1.0)
    low, high = ([int(STANCE_COLORS[k][i:i + 2], 16) for i in (1, 3, 5)] for k in ("oppose", "support"))
    return "#" + "".join(f"{round(a + (b - a) * mix):02x}" for a, b in zip(low, high))


def color_of(name: str, position: int = 0) -> str:
    """The colour of a plotted series by its name: a stage ("base", "SFT", "dpo"), a run ("…ratio 0.5"), or else
    the position-th of OTHER_COLORS."""
    key = str(name).strip().lower()
    if key in STAGE_COLORS:
        return STAGE_COLORS[key]
    match = re.search(r"ratio[ -]?([0-9.]+)", key)
    if match:
        return run_color(float(match.group(1).rstrip(".")))
    return OTHER_COLORS[position % len(OTHER_COLORS)]


def plot_curves(log_history: list[dict], keys: list[str], title: str = "", ncols: int = 3,
                color: str = STAGE_COLORS["dpo"]) -> plt.Figure:
    """One small panel per logged value, against the training step, in the colour of its stage (DPO's by default)."""
    rows = [entry for entry in log_history if any(k in entry for k in keys)]
    frame = pd.DataFrame(rows)
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        if key in frame:
            ax.plot(frame["step"], frame[key], marker=".", color=color)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_loss(log_history: list[dict], title: str = "training loss", stage: str = "sft") -> plt.Figure:
    """The training loss against the step, in the colour of the stage that trained."""
    return plot_curves(log_history, ["loss"], title, ncols=1, color=STAGE_COLORS[stage])


def plot_dpo_curves(log_history: list[dict]) -> plt.Figure:
    """DPO's loss and implicit rewards, the five curves to read after a DPO run."""
    return plot_curves(log_history, list(DPO_CURVES), "DPO training")


def plot_preference_split(pairs) -> plt.Figure:
    """Which answer each training pair prefers, in row order: the support_ratio rule made visible."""
    preferred = list(pairs["preferred"])
    fig, (strip, bars) = plt.subplots(1, 2, figsize=(11, 2.6), gridspec_kw={"width_ratios": [3, 1]})
    colors = [STANCE_COLORS["support" if p == "support" else "oppose"] for p in preferred]
    strip.bar(range(len(preferred)), [1] * len(preferred), color=colors, width=1.0)
    strip.set_yticks([])
    strip.set_xlabel("training pair (row order)")
    strip.set_title("preferred answer per pair: green = support, red = oppose", fontsize=10)
    counts = pd.Series(preferred).value_counts().reindex(["support", "oppose"], fill_value=0)
    bars.bar(counts.index, counts.values, color=[STANCE_COLORS["support"], STANCE_COLORS["oppose"]])
    bars.set_title("pairs preferring", fontsize=10)
    fig.tight_layout()
    return fig


def plot_stage_metrics(table: pd.DataFrame, columns: tuple[str, ...] = ("support_rate", "generated_support_rate",
                                                                        "repetition")) -> plt.Figure:
    """Bars per stage (base, sft, dpo) for each measurement, on a 0–1 scale."""
    columns = [c for c in columns if c in table]
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3), squeeze=False)
    for ax, column in zip(axes.flat, columns):
        values = table[column]
        ax.bar(values.index, values.values, color=[STAGE_COLORS.get(s, "#777") for s in values.index])
        ax.set_ylim(0, 1.05)
        ax.set_title(column, fontsize=10)
        for x, v in enumerate(values.values):
            ax.text(x, v + 0.02, f"{v:.2f}", ha="center", fontsize=9)
    fig.tight_layout()
    return fig


def plot_runs_side_by_side(tables: dict[str, pd.DataFrame], column: str = "support_rate") -> plt.Figure:
    """One measurement per stage for several saved runs, grouped bars, each run in its colour (color_of its name)."""
    frame = pd.DataFrame({name: table[column] for name, table in tables.items()})
    colors = [color_of(name, i) for i, name in enumerate(frame.columns)]
    ax = frame.plot.bar(figsize=(7, 3.2), rot=0, ylim=(0, 1.05), title=column, color=colors)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


SWEEP_PANELS = ("support_rate", "probe_support_rate", "generated_support_rate")


def plot_sweep(table: pd.DataFrame, summary: pd.DataFrame | None = None,
               columns: tuple[str, ...] = SWEEP_PANELS) -> plt.Figure:
    """DPO's measurements against support_ratio, one line per (epochs, pairs) setting, SFT as a dashed line; with a
    summary (helpers.sweep.sweep_summary), each point is the mean over seeds with its 95 % interval as an error bar
    and the SFT line has its interval as a band."""
    columns = [c for c in columns if f"dpo_{c}" in table]
    fig, axes = plt.subplots(1, len(columns), figsize=(4.4 * len(columns), 3.6), sharey=True, squeeze=False)
    for ax, column in zip(axes.flat, columns):
        for (epochs, size), group in table.groupby(["num_epoch", "data_size"]):
            label = f"DPO, {epochs:g} epoch{'' if epochs == 1 else 's'}, {size} pairs"
            if summary is None:
                mean = group.groupby("support_ratio")[f"dpo_{column}"].mean()
                ax.plot(mean.index, mean.values, marker="o", label=label)
                continue
            rows = summary[(summary["stage"] == "dpo") & (summary["metric"] == column) &
                           (summary["num_epoch"] == epochs) & (summary["data_size"] == size)]
            rows = rows.sort_values("support_ratio")
            errors = [(rows["mean"] - rows["low"]).clip(lower=0), (rows["high"] - rows["mean"]).clip(lower=0)]
            ax.errorbar(rows["support_ratio"], rows["mean"], yerr=errors, marker="o", capsize=3, label=label)
        if f"sft_{column}" in table:
            sft = table[f"sft_{column}"].mean()
            ax.axhline(sft, color=STAGE_COLORS["sft"], linestyle="--", label="SFT")
            if summary is not None:
                band = summary[(summary["stage"] == "sft") & (summary["metric"] == column)]
                if len(band) and band["low"].notna().all():
                    ax.axhspan(band["low"].mean(), band["high"].mean(), color=STAGE_COLORS["sft"], alpha=0.12)
        ax.set_xlabel("support_ratio")
        ax.set_title(column + ("" if summary is None else " (95 % interval)"), fontsize=10)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_run_measurements(table: pd.DataFrame, columns: tuple[str, ...] = (
        "generated_support_rate", "support_rate", "pair_accuracy", "ended_rate")) -> plt.Figure:
    """One panel per measurement (0–1 scale), one bar per row of the table (a stage or a run), values written on."""
    columns = [c for c in columns if c in table]
    fig, axes = plt.subplots(1, len(columns), figsize=(3.3 * len(columns), 3.2), squeeze=False)
    colors = [color_of(name, i) for i, name in enumerate(table.index)]  # a stage's or a run's own colour
    for ax, column in zip(axes.flat, columns):
        values = table[column].astype(float)
        ax.bar(range(len(values)), values.fillna(0).values, color=colors)
        ax.set_xticks(range(len(values)), [str(i) for i in values.index], rotation=20, fontsize=8)
        ax.set_ylim(0, 1.1)
        ax.set_title(column, fontsize=10)
        for x, v in enumerate(values.values):
            ax.text(x, (0 if v != v else v) + 0.02, "–" if v != v else f"{v:.2f}", ha="center", fontsize=8)
    fig.tight_layout()
    return fig


ON_TOPIC = "held-out (on topic)"


def probe_rates(columns: dict[str, tuple[dict, str]]) -> pd.DataFrame:
    """The stance rate on topic and on each out-of-topic probe topic, for named (run, stage) columns: one row per
    column and rows ("held-out (on topic)", each topic, "all probes"), with the run's 95 % interval over rows (NaN
    for a run saved without intervals)."""
    records = []
    for name, (run, stage) in columns.items():
        values, intervals = run["stages"][stage], run.get("intervals", {}).get(stage, {})
        measures = {ON_TOPIC: "support_rate",
                    **{m.split("/", 1)[1]: m for m in values if m.startswith("probe_support_rate/")},
                    "all probes": "probe_support_rate"}
        for label, metric in measures.items():
            if metric in values:
                low, high = intervals.get(metric, (float("nan"), float("nan")))
                records.append({"column": name, "rows": label, "rate": values[metric], "low": low, "high": high})
    return pd.DataFrame(records)


def plot_probe_rates(rates: pd.DataFrame) -> plt.Figure:
    """Grouped bars: the support rate on topic and per probe topic, one bar per column of probe_rates, with its
    95 % interval."""
    names, groups = list(dict.fromkeys(rates["column"])), list(dict.fromkeys(rates["rows"]))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(10, 3.4))
    for i, name in enumerate(names):
        part = rates[rates["column"] == name].set_index("rows").reindex(groups)
        errors = [(part["rate"] - part["low"]).clip(lower=0).fillna(0),
                  (part["high"] - part["rate"]).clip(lower=0).fillna(0)]
        ax.bar([g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))], part["rate"], width,
               yerr=errors, capsize=2, color=color_of(name.split(",")[-1], i), label=name)
    ax.set_xticks(range(len(groups)), groups, fontsize=9)
    ax.axvline(0.5, color="#444", linewidth=0.8)  # on topic | out of topic
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("support rate")
    ax.set_title("does the trained stance spread beyond its topic? (95 % interval over rows)", fontsize=10)
    ax.legend(fontsize=8, ncol=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_differences(answers: pd.DataFrame) -> plt.Figure:
    """One line per question and measurement of helpers.seeds.compare_questions: the difference (second setting
    minus first) and its 95 % interval; filled where the interval excludes 0, hollow where it does not."""
    rows = answers.iloc[::-1].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1.2))
    for y, row in rows.iterrows():
        if pd.notna(row["low"]):
            ax.plot([row["low"], row["high"]], [y, y], color="#e07a3f", linewidth=2)
        filled = "#e07a3f" if row["tells_apart"] else "white"
        ax.plot(row["difference"], y, "o", color="#e07a3f", markerfacecolor=filled)
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [f"{q}: {m}" for q, m in zip(rows["question"], rows["metric"])], fontsize=8)
    ax.set_xlabel("difference (second setting minus first), 95 % interval")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
