"""Preference losses side by side on the same pairs: TRL's DPO loss_type family, ORPO (reference-free) and KTO
(unpaired), each trained as a LoRA adapter on the SFT model and measured like any stage."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from helpers.config import Profile
from helpers.models import adapter_config
from helpers.notebook import set_seed
from helpers.progress import Lap, headline_figures, progress_line
from helpers.training import TrainResult, common_args, run_trainer, train_dpo

COLUMNS = ("support_rate", "generated_support_rate", "judge_abstained", "mean_answer_chars", "repetition",
           "ended_rate", "train_seconds")


@dataclass(frozen=True)
class Variant:
    """One preference loss: which TRL trainer runs it, and the settings it needs beyond the profile's."""

    description: str
    trainer: str  # "dpo" (DPOTrainer with a loss_type), "orpo" (trl.experimental) or "kto" (KTOTrainer)
    settings: dict = field(default_factory=dict)  # config fields: loss_type, beta, label_smoothing, learning_rate, …
    reference_free: bool = False


VARIANTS: dict[str, Variant] = {
    "default": Variant("the profile's own recipe: its loss_type, loss_weights and beta (tiny: a DPO loss plus a "
                       "small SFT term on the chosen answer)", "dpo", {}),
    "dpo": Variant("DPO: −log σ(β·margin), the margin being the gap of log-ratios to the reference",
                   "dpo", {"loss_type": ["sigmoid"], "beta": 0.1}),
    "ipo": Variant("IPO: a squared loss pulling the per-token margin to 1/(2β) instead of to infinity",
                   "dpo", {"loss_type": ["ipo"], "beta": 0.1}),
    "hinge": Variant("SLiC's hinge: max(0, 1 − β·margin), no gradient once the margin passes 1/β",
                     "dpo", {"loss_type": ["hinge"], "beta": 0.1}),
    "robust": Variant("robust DPO: the sigmoid loss corrected for a share ε of flipped labels (label_smoothing)",
                      "dpo", {"loss_type": ["robust"], "beta": 0.1, "label_smoothing": 0.1}),
    "sigmoid_norm": Variant("SimPO-style: the sigmoid loss on the per-token (length-normalised) margin",
                            "dpo", {"loss_type": ["sigmoid_norm"], "beta": 1.0}),
    "orpo": Variant("ORPO: SFT loss on chosen − λ·log σ(log-odds ratio chosen/rejected); no reference model",
                    "orpo", {"beta": 0.1}, reference_free=True),
    "kto": Variant("KTO: each answer alone, desirable or undesirable, against a batch estimate of the KL",
                   "kto", {"beta": 0.1}),
}


def resolved_settings(name: str, profile: Profile) -> dict:
    """The settings a variant trains with on this profile: its own, the profile's for the rest."""
    variant = VARIANTS[name]
    settings = {"beta": profile.beta if variant.trainer == "dpo" else 0.1,
                "learning_rate": profile.dpo_learning_rate}
    if variant.trainer == "dpo":
        settings["loss_type"] = list(profile.dpo_loss_type)
        settings["loss_weights"] = list(profile.dpo_loss_weights or []) or None
        if "loss_type" in variant.settings:
            settings["loss_weights"] = None  # a pure loss: no SFT term, equal weights
    return {**settings, **variant.settings}


def variant_table(profile: Profile, names: list[str] | None = None) -> pd.DataFrame:
    """The variants as a table: trainer, reference-free or not, settings on this profile, and what the loss does."""
    rows = {name: {"trainer": v.trainer, "reference_free": v.reference_free,
                   "settings": resolved_settings(name, profile), "description": v.description}
            for name, v in VARIANTS.items() if names is None or name in names}
    return pd.DataFrame(rows).T


def unpair_for_kto(pairs: Dataset) -> Dataset:
    """Each pair becomes two rows, chosen (label True) then rejected (label False), the two of a pair adjacent."""
    from trl import unpair_preference_dataset

    return unpair_preference_dataset(pairs, batch_size=1)  # batch_size=1 keeps a pair's two rows next to each other


def _args(profile: Profile, output_dir: str | Path, num_epochs: float, seed: int, settings: dict,
          overrides: dict) -> dict:
    """common_args for ORPO/KTO, with the variant's beta and learning rate and the caller's overrides."""
    settings = {**settings, **overrides}
    learning_rate = settings.pop("learning_rate", profile.dpo_learning_rate)  # the DPO family's, unless set
    return {**common_args(profile, output_dir, num_epochs, learning_rate, seed), "max_length": profile.max_length,
            **settings}


def train_orpo(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, pairs: Dataset, profile: Profile,
               output_dir: str | Path, num_epochs: float = 1, seed: int = 0, settings: dict | None = None,
               **overrides) -> TrainResult:
    """ORPO with a LoRA adapter: one forward per batch, no reference model at all."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(**_args(profile, output_dir, num_epochs, seed, settings or {}, overrides))
    trainer = ORPOTrainer(model=model, args=args, train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]),
                          processing_class=tokenizer, peft_config=adapter_config(model, profile))
    return run_trainer(trainer)


def train_kto(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, pairs: Dataset, profile: Profile,
              output_dir: str | Path, num_epochs: float = 1, seed: int = 0, settings: dict | None = None,
              **overrides) -> TrainResult:
    """KTO on the pairs unpaired, with a LoRA adapter; the reference is the same network with the adapter off."""
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(**_args(profile, output_dir, num_epochs, seed, settings or {}, overrides))
    # As for DPO: without a PEFT model or peft_config, KTOTrainer would reload config._name_or_path as reference.
    trainer = KTOTrainer(model=model, ref_model=None, args=args, processing_class=tokenizer,
                         train_dataset=unpair_for_kto(pairs.select_columns(["prompt", "chosen", "rejected"])),
                         peft_config=adapter_config(model, profile))
    return run_trainer(trainer)


def train_variant(name: str, start_model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, pairs: Dataset,
                  profile: Profile, output_dir: str | Path, num_epochs: float = 3, seed: int = 0,
                  **overrides) -> TrainResult:
    """Train one variant from the (SFT) start model; overrides go to the trainer's config (e.g. max_steps=2)."""
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    variant = VARIANTS[name]
    if variant.trainer == "orpo":
        return train_orpo(start_model, tokenizer, pairs, profile, output_dir, num_epochs, seed, variant.settings,
                          **overrides)
    if variant.trainer == "kto":
        return train_kto(start_model, tokenizer, pairs, profile, output_dir, num_epochs, seed, variant.settings,
                         **overrides)
    settings = {**variant.settings, **overrides}
    return train_dpo(start_model, tokenizer, pairs, profile, output_dir, num_epochs=num_epochs, seed=seed, **settings)


def compare_variants(prepared, pairs: Dataset, names: list[str] | None = None, num_epochs: float = 3,
                     seed: int = 0, echo: Callable[[str], None] = print) -> pd.DataFrame:
    """Train every variant's own adapter on the prepared start model (taken off again after it is measured); one row
    per variant.

    The first row is the starting point (SFT, or base without SFT). The answers to the test prompts and the
    training logs are kept in table.attrs["answers"] and table.attrs["logs"], by variant. echo gets one line per
    variant as it is measured: which of how many, its name, the seconds it took and its support rates.
    """
    from helpers.pipeline import measure_stage

    start = prepared.stages.get("sft", prepared.stages["base"])
    rows = {"sft (start)": {**start.metrics, "train_seconds": 0.0, "steps": 0}}
    answers, logs = {"sft (start)": start.answers}, {}
    names = list(names or VARIANTS)
    for done, name in enumerate(names, 1):
        lap = Lap()
        set_seed(seed)
        with tempfile.TemporaryDirectory() as scratch:
            result = train_variant(name, prepared.start_model, prepared.tokenizer, pairs, prepared.profile, scratch,
                                   num_epochs, seed)
        stage = measure_stage(result.model, prepared.tokenizer, prepared.inputs, prepared.profile, prepared.judge)
        rows[name] = {**stage.metrics, "train_seconds": result.seconds, "steps": result.steps}
        answers[name], logs[name] = stage.answers, result.log_history
        echo(progress_line(done, len(names), name, lap(), headline_figures(stage.metrics)))
        prepared.release(result.model)
        del result
    frame = pd.DataFrame(rows).T
    table = frame[[c for c in COLUMNS if c in frame] + ["steps"]].astype(float)
    table.index.name = "variant"
    table.attrs.update(answers=answers, logs=logs)
    return table


def plot_variants(table: pd.DataFrame, columns: tuple[str, ...] = ("support_rate", "generated_support_rate",
                                                                   "mean_answer_chars", "train_seconds")) -> plt.Figure:
    """One panel per measurement, one bar per variant; the starting point (first row) as a dashed line."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.6), squeeze=False)
    start, variants = table.iloc[0], table.iloc[1:]
    for ax, column in zip(axes.flat, columns):
        ax.bar(range(len(variants)), variants[column], color="#e07a3f")
        if column != "train_seconds":
            ax.axhline(start[column], color="#5c8dd6", linestyle="--", label=table.index[0])
        ax.set_xticks(range(len(variants)), variants.index, rotation=60, ha="right", fontsize=8)
        ax.set_title(column, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
