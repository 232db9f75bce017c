"""The GPU profiles' settings, built and checked as far as a CPU allows (no weights are downloaded)."""

from __future__ import annotations

import pytest
import torch

from helpers.config import PROFILES
from helpers.models import lora_config, quantization_config
from helpers.training import common_args, dpo_config, precision_flags, sft_config

GPU_PROFILES = [name for name, p in PROFILES.items() if p.needs_gpu]


@pytest.fixture()
def t4(fake_gpu):
    """A T4: compute capability 7.5, bf16 emulated (torch.cuda.is_bf16_supported() still says True)."""
    fake_gpu((7, 5), "Tesla T4")


@pytest.fixture()
def a100(fake_gpu):
    fake_gpu((8, 0), "NVIDIA A100-SXM4-40GB")


def test_t4_trains_in_fp16_not_bf16(t4):
    assert precision_flags() == {"bf16": False, "fp16": True}
    assert quantization_config(PROFILES["breeze-7b"]).bnb_4bit_compute_dtype == torch.float16


def test_ampere_trains_in_bf16(a100):
    assert precision_flags() == {"bf16": True, "fp16": False}
    assert quantization_config(PROFILES["breeze-7b"]).bnb_4bit_compute_dtype == torch.bfloat16


def test_cpu_trains_in_fp32():
    assert precision_flags() == {"bf16": False, "fp16": False, "use_cpu": True}


@pytest.mark.parametrize("name", [n for n in GPU_PROFILES if PROFILES[n].load_in_4bit])
def test_qlora_profiles_quantize_to_nf4(name):
    config = quantization_config(PROFILES[name])
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert PROFILES[name].optim == "paged_adamw_8bit"


def test_non_quantized_profiles_have_no_quantization():
    assert quantization_config(PROFILES["qwen2.5-0.5b"]) is None
    assert quantization_config(PROFILES["tiny"]) is None


def test_breeze_matches_the_homework():
    profile = PROFILES["breeze-7b"]
    lora = lora_config(profile)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (64, 16, 0.1)
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert profile.max_new_tokens == 200 and profile.beta == 0.1 and profile.dpo_learning_rate == 2e-4
    assert (profile.batch_size, profile.grad_accum) == (1, 8)


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_gpu_profiles_use_activation_checkpointing_with_lora(name):
    args = common_args(PROFILES[name], "unused", num_epochs=1, learning_rate=1e-4, seed=0)
    assert args["activation_checkpointing"] is True
    assert lora_config(PROFILES[name]).task_type == "CAUSAL_LM"


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_trainer_configs_build_for_every_profile(name, tmp_path):
    profile = PROFILES[name]
    dpo = dpo_config(profile, tmp_path, num_epochs=1)
    sft = sft_config(profile, tmp_path)
    assert dpo.beta == profile.beta and dpo.loss_type == list(profile.dpo_loss_type)
    assert dpo.max_length == profile.max_length and sft.completion_only_loss is True
    assert dpo.per_device_train_batch_size * dpo.gradient_accumulation_steps == profile.batch_size * profile.grad_accum
