"""SFT and DPO with TRL's trainers and a LoRA adapter (QLoRA for 4-bit profiles), configured from a profile.

TRL, PEFT and transformers' Trainer are imported inside the functions that use them (about 10 s on 2 cores, most of
it torch's compiler stack pulled in by transformers' model code), so importing this module costs only torch."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

import torch

from helpers.config import Profile
from helpers.cpu_training import training_speedups
from helpers.folders import file_problem, set_aside
from helpers.killpoints import arm_trainer
from helpers.models import adapter_config
from helpers.runs import is_main_process
from helpers.hardware import precision_flags  # noqa: F401 (imported from here too)
from helpers.trainer_args import common_args, dpo_arguments

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase, TrainerCallback
    from trl import DPOConfig, DPOTrainer, SFTConfig


@dataclass
class TrainResult:
    """What a training stage leaves behind: the model, its log, and how long it took."""

    model: torch.nn.Module
    log_history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    gpu: dict | None = None  # peak memory and throughput, on a GPU
    resumed_from: str | None = None  # the checkpoint training continued from, if any

    @property
    def final_loss(self) -> float | None:
        """The last logged training loss."""
        losses = [entry["loss"] for entry in self.log_history if "loss" in entry]
        return losses[-1] if losses else None


def checkpointing(every: int | None) -> dict:
    """Trainer settings that keep the newest checkpoint every N steps (weights, optimizer, scheduler, RNG state)."""
    return dict(save_strategy="steps", save_steps=every, save_total_limit=1) if every else {}


def sft_config(profile: Profile, output_dir: str | Path, num_epochs: float | None = None,
               learning_rate: float | None = None, seed: int = 0, **overrides) -> SFTConfig:
    """SFTConfig for the profile: loss on the completion only, no packing."""
    from trl import SFTConfig

    settings = common_args(profile, output_dir, num_epochs or profile.sft_epochs,
                           learning_rate or profile.sft_learning_rate, seed)
    return SFTConfig(**{**settings, **overrides},
                     max_length=profile.max_length,
                     packing=False,
                     completion_only_loss=True)  # the prompt's tokens teach nothing about answering


def dpo_config(profile: Profile, output_dir: str | Path, beta: float | None = None, num_epochs: float = 1,
               learning_rate: float | None = None, seed: int = 0, loss_type: list[str] | None = None,
               loss_weights: list[float] | None = None, precompute_ref_log_probs: bool | None = None,
               **overrides) -> DPOConfig:
    """DPOConfig for the profile; loss_type defaults to the profile's (tiny: DPO + an SFT term on chosen)."""
    from trl import DPOConfig

    return DPOConfig(**dpo_arguments(profile, output_dir, beta, num_epochs, learning_rate, seed, loss_type,
                                     loss_weights, precompute_ref_log_probs, **overrides))


def keep_adapters_in_fp32(trainer, exact: dict[str, torch.Tensor] | None = None) -> None:
    """Put the trainable weights back to fp32 unless the run trains in bf16; `exact` (name → the fp32 values from
    before the trainer was built) restores an existing adapter without the rounding that the cast left behind.

    TRL casts every trainable LoRA weight of a 4-bit model to bf16, whatever the GPU. A T4 trains in fp16, whose
    gradient scaler has no bf16 kernel: the first optimizer step would fail. fp32 adapters under fp16 autocast are
    what QLoRA on a T4 needs; on a CPU they keep the run in fp32 throughout.
    """
    if trainer.args.bf16:
        return
    for name, parameter in trainer.model.named_parameters():
        if parameter.requires_grad and parameter.dtype in (torch.bfloat16, torch.float16):
            saved = (exact or {}).get(name)
            parameter.data = saved if saved is not None and saved.shape == parameter.shape else parameter.data.float()


def adapter_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the trainable LoRA weights of a model that already carries an adapter (a 4-bit model's SFT adapter,
    trained further), by name; nothing for a plain model, whose base weights are never copied."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return {}
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad and "lora_" in name}


def _quiet(trainer) -> None:
    """Drop the callbacks that print a dict per step; the notebooks plot log_history instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)


def checkpoint_problem(folder: Path) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from (None: it can). transformers 5 writes the weights, then the
    optimizer, scheduler and RNG state, and trainer_state.json last; all must be there, whole, for the same step."""
    folder = Path(folder)
    try:
        step = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    except FileNotFoundError:
        return "no trainer_state.json, which the Trainer writes last"
    except (ValueError, KeyError, TypeError):
        return "its trainer_state.json does not parse"
    if folder.name != f"checkpoint-{step}":
        return f"its trainer_state.json is for step {step}"
    weights = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
    if not any((folder / name).exists() for name in weights):
        return "no adapter or model weights"
    if not list(folder.glob("rng_state*.pth")):
        return "no rng_state.pth"
    files = [folder / "optimizer.pt", folder / "scheduler.pt", *(p for p in sorted(folder.iterdir()) if p.is_file())]
    for path in files:
        if problem := file_problem(path):  # missing, empty, or cut off before its end
            return f"{path.name} {problem}"
    return None


def last_checkpoint(output_dir: str | Path, echo=print) -> str | None:
    """The newest complete checkpoint-N folder in output_dir, if any; newer half-written ones are set aside
    (into OUTPUT_DIR.incomplete, one line each), never resumed from and never deleted."""
    folder = Path(output_dir)
    found = [(int(m[1]), p) for p in folder.iterdir()
             if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))] if folder.is_dir() else []
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        if is_main_process() and not any(path.iterdir()):  # killed as it began: nothing in it to keep
            path.rmdir()
            echo(f"removed the empty {path} (the process was killed as it began writing it)")
        elif is_main_process():  # the main process moves it; the others skip it the same way
            set_aside(path, problem, into=folder.with_name(folder.name + ".incomplete"), echo=echo)
    if found and is_main_process():
        echo(f"no complete checkpoint left in {folder}: training starts from step 0")
    return None


def run_trainer(trainer, callbacks: list[TrainerCallback] | None = None, resume: bool = False,
                stage: str = "train") -> TrainResult:
    """Train quietly (resuming from the newest complete checkpoint if asked); the model, log, time and steps come back."""
    _quiet(trainer)
    keep_adapters_in_fp32(trainer)  # every trainer: TRL's SFT, DPO, KTO and ORPO all cast QLoRA adapters to bf16
    for callback in callbacks or []:
        trainer.add_callback(callback)
    arm_trainer(trainer, stage)  # the crash test's kill points; nothing unless DPO_KILL_AT is set
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    checkpoint = last_checkpoint(trainer.args.output_dir) if resume else None
    if checkpoint and is_main_process():
        print(f"{stage}: resuming from {checkpoint}")
    with training_speedups(trainer.model):  # on a CPU: eager attention, the LM head on the answer's tokens only
        output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    result = TrainResult(model=trainer.model, log_history=list(trainer.state.log_history), seconds=seconds,
                         steps=output.global_step, resumed_from=Path(checkpoint).name if checkpoint else None)
    if torch.cuda.is_available():
        result.gpu = gpu_report(result)
        print(" · ".join(f"{k} {v}" for k, v in result.gpu.items()))
    return result


def gpu_report(result: TrainResult) -> dict:
    """What a training stage cost on the GPU: peak allocated and reserved memory, and tokens per second."""
    tokens = max((entry.get("num_tokens", 0) for entry in result.log_history), default=0)
    return {
        "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "tokens_per_second": round(tokens / result.seconds, 1) if result.seconds else None,
    }


def train_sft(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, profile: Profile,
              output_dir: str | Path, num_epochs: float | None = None, learning_rate: float | None = None,
              seed: int = 0, callbacks: list[TrainerCallback] | None = None, checkpoint_every: int | None = None,
              resume: bool = False) -> TrainResult:
    """Supervised fine-tuning of a new LoRA adapter on conversational prompt–completion examples."""
    from trl import SFTTrainer

    args = sft_config(profile, output_dir, num_epochs, learning_rate, seed, **checkpointing(checkpoint_every))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=adapter_config(model, profile))
    return run_trainer(trainer, callbacks, resume, stage="sft")


def prepare_for_dpo(model: torch.nn.Module, profile: Profile) -> torch.nn.Module:
    """Fold an SFT adapter into the weights so that "adapter disabled" is the SFT model, DPO's reference.

    A 4-bit model keeps its SFT adapter instead (merging into 4-bit weights rounds them); TRL then trains it
    further against a frozen copy of it, which is again the SFT model.
    """
    from peft import PeftModel

    if isinstance(model, PeftModel) and not profile.load_in_4bit:
        model = model.merge_and_unload()
    return model


def release_adapters(model: torch.nn.Module, kept_adapter: str | Path | None = None) -> torch.nn.Module:
    """The start model again, in place: every LoRA layer of a trained PEFT model taken out, nothing merged (PEFT's
    unload), so the next run trains a fresh adapter on the same base, never on a copy of it. A 4-bit start that keeps
    its SFT adapter gets it back from kept_adapter, trainable. What the run made is freed before this returns."""
    import gc

    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.unload()
    for module in model.modules():  # TRL's per-instance forward patches; the next trainer adds its own
        vars(module).pop("forward", None)
        vars(module).pop("_original_forward", None)
    if kept_adapter is not None:
        model = PeftModel.from_pretrained(model, str(kept_adapter), is_trainable=True)
    gc.collect()  # the trainer, its optimizer and the adapter sit in reference cycles
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return model


def dpo_trainer(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, pairs: Dataset, profile: Profile,
                output_dir: str | Path, beta: float | None = None, num_epochs: float = 1,
                learning_rate: float | None = None, seed: int = 0, checkpoint_every: int | None = None,
                **config_overrides) -> DPOTrainer:
    """A DPOTrainer with a LoRA adapter; the reference is the same network with that adapter switched off."""
    args = dpo_config(profile, output_dir, beta, num_epochs, learning_rate, seed,
                      **checkpointing(checkpoint_every), **config_overrides)
    # Without a PEFT model or peft_config, DPOTrainer would build its reference by reloading
    # model.config._name_or_path from disk or the hub, which is NOT the model in memory. Never let that happen.
    from trl import DPOTrainer

    from unittest import mock

    # The reference pre-pass runs in the constructor and draws a progress bar that disable_tqdm does not reach.
    exact = adapter_weights(model)  # a 4-bit model's SFT adapter, before TRL rounds it to bf16
    with mock.patch.dict(os.environ, {"TQDM_DISABLE": "1"}), training_speedups(model):  # the reference pass too
        trainer = DPOTrainer(model=model, args=args, train_dataset=pairs, processing_class=tokenizer,
                             peft_config=adapter_config(model, profile))
    keep_adapters_in_fp32(trainer, exact)
    return trainer


def train_dpo(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, pairs: Dataset, profile: Profile,
              output_dir: str | Path, beta: float | None = None, num_epochs: float = 1,
              learning_rate: float | None = None, seed: int = 0, callbacks: list[TrainerCallback] | None = None,
              checkpoint_every: int | None = None, resume: bool = False, **config_overrides) -> TrainResult:
    """DPO with a LoRA adapter (see dpo_trainer), quietly, resuming from a checkpoint if asked; the reference's
    log-probs precomputed when the profile says so (unless precompute_ref_log_probs is passed)."""
    trainer = dpo_trainer(model, tokenizer, pairs, profile, output_dir, beta, num_epochs, learning_rate, seed,
                          checkpoint_every, **config_overrides)
    return run_trainer(trainer, callbacks, resume, stage="dpo")


def log_frame(log_history: list[dict]):
    """The per-step training log as a table (one row per logged step)."""
    import pandas as pd

    rows = [entry for entry in log_history if "loss" in entry]
    return pd.DataFrame(rows).set_index("step") if rows else pd.DataFrame()
