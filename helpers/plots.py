"""Plots the notebooks show: training curves, the support_ratio split, and stage-by-stage measurements."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

DPO_CURVES = {
    "loss": "the training loss: its DPO part is ln 2 ≈ 0.693 at the first step and falls as the answers separate",
    "rewards/chosen": "beta × how much more likely the chosen answer became than under the reference",
    "rewards/rejected": "the same for the rejected answer; it should fall",
    "rewards/margins": "chosen reward minus rejected reward: the gap DPO widens",
    "rewards/accuracies": "share of pairs in the batch whose chosen reward beats the rejected one",
}
STAGE_COLORS = {"base": "#9e9e9e", "sft": "#5c8dd6", "dpo": "#e07a3f"}


def plot_curves(log_history: list[dict], keys: list[str], title: str = "", ncols: int = 3) -> plt.Figure:
    """One small panel per logged value, against the training step."""
    rows = [entry for entry in log_history if any(k in entry for k in keys)]
    frame = pd.DataFrame(rows)
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        if key in frame:
            ax.plot(frame["step"], frame[key], marker=".", color="#e07a3f")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_loss(log_history: list[dict], title: str = "training loss") -> plt.Figure:
    """The training loss against the step."""
    return plot_curves(log_history, ["loss"], title, ncols=1)


def plot_dpo_curves(log_history: list[dict]) -> plt.Figure:
    """DPO's loss and implicit rewards, the five curves to read after a DPO run."""
    return plot_curves(log_history, list(DPO_CURVES), "DPO training")


def plot_preference_split(pairs) -> plt.Figure:
    """Which answer each training pair prefers, in row order: the support_ratio rule made visible."""
    preferred = list(pairs["preferred"])
    fig, (strip, bars) = plt.subplots(1, 2, figsize=(11, 2.6), gridspec_kw={"width_ratios": [3, 1]})
    colors = ["#2e7d32" if p == "support" else "#c62828" for p in preferred]
    strip.bar(range(len(preferred)), [1] * len(preferred), color=colors, width=1.0)
    strip.set_yticks([])
    strip.set_xlabel("training pair (row order)")
    strip.set_title("preferred answer per pair: green = support, red = oppose", fontsize=10)
    counts = pd.Series(preferred).value_counts().reindex(["support", "oppose"], fill_value=0)
    bars.bar(counts.index, counts.values, color=["#2e7d32", "#c62828"])
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
    """One measurement per stage for several saved runs, grouped bars."""
    frame = pd.DataFrame({name: table[column] for name, table in tables.items()})
    ax = frame.plot.bar(figsize=(7, 3.2), rot=0, ylim=(0, 1.05), title=column)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def plot_sweep(table: pd.DataFrame) -> plt.Figure:
    """support_rate and generated_support_rate of DPO against support_ratio, one line per setting, SFT as a line."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    groups = table.groupby(["num_epoch", "data_size"])
    for ax, column in zip(axes, ("support_rate", "generated_support_rate")):
        for (epochs, size), group in groups:
            mean = group.groupby("support_ratio")[f"dpo_{column}"].mean()
            ax.plot(mean.index, mean.values, marker="o", label=f"DPO, {epochs:g} epochs, {size} pairs")
        if f"sft_{column}" in table:
            ax.axhline(table[f"sft_{column}"].mean(), color=STAGE_COLORS["sft"], linestyle="--", label="SFT")
        ax.set_xlabel("support_ratio")
        ax.set_title(column, fontsize=10)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_run_measurements(table: pd.DataFrame, columns: tuple[str, ...] = (
        "generated_support_rate", "support_rate", "pair_accuracy", "ended_rate")) -> plt.Figure:
    """One panel per measurement (0–1 scale), one bar per row of the table (a stage or a run), values written on."""
    columns = [c for c in columns if c in table]
    fig, axes = plt.subplots(1, len(columns), figsize=(3.3 * len(columns), 3.2), squeeze=False)
    palette = ["#9e9e9e", "#e07a3f", "#5c8dd6", "#6aa86a", "#b07cc6"]
    for ax, column in zip(axes.flat, columns):
        values = table[column].astype(float)
        ax.bar(range(len(values)), values.fillna(0).values, color=palette[:len(values)] * 2)
        ax.set_xticks(range(len(values)), [str(i) for i in values.index], rotation=20, fontsize=8)
        ax.set_ylim(0, 1.1)
        ax.set_title(column, fontsize=10)
        for x, v in enumerate(values.values):
            ax.text(x, (0 if v != v else v) + 0.02, "–" if v != v else f"{v:.2f}", ha="center", fontsize=8)
    fig.tight_layout()
    return fig
