"""The arguments of the trainers' configs (TrainingArguments, DPOConfig), built from a profile without importing
TRL: `run --dry-run` shows them in seconds, and helpers.training passes the same ones to SFTConfig and DPOConfig."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.config import Profile
from helpers.hardware import cpu_bf16_for, precision_flags


def common_args(profile: Profile, output_dir: str | Path, num_epochs: float, learning_rate: float,
                seed: int) -> dict:
    """Trainer settings shared by SFT and DPO."""
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=num_epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=profile.batch_size,
        gradient_accumulation_steps=profile.grad_accum,
        optim=profile.optim,
        lr_scheduler_type="linear",
        warmup_steps=profile.warmup_ratio,  # a float below 1 is a share of the steps (warmup_ratio)
        logging_steps=1,  # every step, so the notebooks can plot the curves
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,  # progress tables and bars do not survive notebook re-execution checks
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # LoRA uses every adapter weight in every step
        activation_checkpointing=profile.gradient_checkpointing,  # trades compute for memory on 7B models
        **precision_flags(cpu_bf16_for(profile.cpu_bf16)),  # bf16 autocast on a CPU with bf16 units
    )


# Rows per batch of the reference's one pass before DPO (no gradients): larger than the training batch, since nothing
# is kept for a backward pass (bench: `DPO reference pass`). Only the CPU profiles precompute (Profile). DPO_REF_BATCH=N
# sets it (the training batch size: the pass as it was before).
REF_BATCH_SIZE = 16


def ref_batch_size(profile: Profile) -> int:
    """Rows per batch of the precomputed reference pass: DPO_REF_BATCH if set, else REF_BATCH_SIZE (at least the
    training batch)."""
    asked = os.environ.get("DPO_REF_BATCH", "").strip()
    return int(asked) if asked.isdigit() and int(asked) > 0 else max(REF_BATCH_SIZE, profile.batch_size)


def dpo_arguments(profile: Profile, output_dir: str | Path, beta: float | None = None, num_epochs: float = 1,
                  learning_rate: float | None = None, seed: int = 0, loss_type: list[str] | None = None,
                  loss_weights: list[float] | None = None, precompute_ref_log_probs: bool | None = None,
                  **overrides) -> dict:
    """Every argument dpo_config passes to DPOConfig (what `run --dry-run` shows)."""
    loss_type = list(loss_type or profile.dpo_loss_type)
    if loss_weights is None and list(profile.dpo_loss_type) == loss_type and profile.dpo_loss_weights:
        loss_weights = list(profile.dpo_loss_weights)
    settings = common_args(profile, output_dir, num_epochs, learning_rate or profile.dpo_learning_rate, seed)
    return dict(
        **{**settings, **overrides},
        beta=profile.beta if beta is None else beta,  # how far the policy may drift from the reference
        loss_type=loss_type,
        loss_weights=loss_weights,
        max_length=profile.max_length,
        precompute_ref_log_probs=_precompute(profile, precompute_ref_log_probs),
        precompute_ref_batch_size=ref_batch_size(profile),
    )


def _precompute(profile: Profile, asked: bool | None) -> bool:
    """Precompute the reference's log-probs: as asked, else the profile's; never with several processes.

    TRL writes the precomputed column to a cache file next to the data set; for an in-memory data set that is a
    temporary folder of the main process, which the other processes cannot open (TRL 1.x), so DDP runs keep the
    reference live.
    """
    wanted = profile.precompute_ref_log_probs if asked is None else asked
    return wanted and int(os.environ.get("WORLD_SIZE", "1")) == 1
