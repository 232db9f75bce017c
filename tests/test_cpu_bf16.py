"""bf16 autocast on a CPU with bf16 matrix units: detected from the CPU's flags, asked for by a profile, turned off by
DPO_CPU_BF16=off, and followed by training (the trainers' bf16 flag) and measuring (the model's mark); generation stays
fp32."""

from __future__ import annotations

import pytest
import torch

from helpers import data, hardware
from helpers.config import load_profile
from helpers.evaluation import stance_logps
from helpers.generation import generate_answers
from helpers.models import load_model, load_tokenizer
from helpers.pipeline import sft_cache_dir, sft_settings
from helpers.trainer_args import dpo_arguments
from helpers.training import train_dpo

AMX_FLAGS = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
LAPTOP_FLAGS = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"


@pytest.fixture()
def bf16_units(monkeypatch):
    """This CPU has AMX (whatever the machine running the tests has), and DPO_CPU_BF16 is unset."""
    monkeypatch.setattr(hardware, "cpu_bf16_units", lambda cpuinfo=None: "amx_bf16")
    monkeypatch.delenv("DPO_CPU_BF16", raising=False)


def test_the_units_are_read_from_the_cpu_flags():
    assert hardware.cpu_bf16_units(AMX_FLAGS) == "amx_bf16"
    assert hardware.cpu_bf16_units(AMX_FLAGS.replace(" amx_bf16", "")) == "avx512_bf16"
    assert hardware.cpu_bf16_units(LAPTOP_FLAGS) is None
    assert hardware.cpu_bf16_units("") is None


def test_only_a_profile_that_asks_on_a_cpu_with_the_units_gets_it(bf16_units, monkeypatch, fake_gpu):
    assert hardware.cpu_bf16_for(True)
    assert not hardware.cpu_bf16_for(False), "the tiny profile never asks"
    for off in ("off", "0", "false"):
        monkeypatch.setenv("DPO_CPU_BF16", off)
        assert not hardware.cpu_bf16_for(True), off
    monkeypatch.delenv("DPO_CPU_BF16")
    monkeypatch.setattr(hardware, "cpu_bf16_units", lambda cpuinfo=None: None)
    assert not hardware.cpu_bf16_for(True), "a laptop without bf16 units stays in fp32"
    monkeypatch.setattr(hardware, "cpu_bf16_units", lambda cpuinfo=None: "amx_bf16")
    fake_gpu(capability=(7, 5))
    assert not hardware.cpu_bf16_for(True), "on a GPU the card decides (fp16 on a T4)"


def test_the_trainers_flags_and_the_recorded_precision_follow(bf16_units, monkeypatch):
    smollm, tiny = load_profile("smollm2-135m"), load_profile("tiny")
    assert smollm.cpu_bf16 and not tiny.cpu_bf16
    flags = {k: dpo_arguments(smollm, "x")[k] for k in ("bf16", "fp16", "use_cpu")}
    assert flags == {"bf16": True, "fp16": False, "use_cpu": True}
    assert hardware.precision_name(flags) == hardware.CPU_AUTOCAST
    assert dpo_arguments(tiny, "x")["bf16"] is False
    monkeypatch.setenv("DPO_CPU_BF16", "off")
    assert dpo_arguments(smollm, "x")["bf16"] is False
    assert hardware.precision_name(hardware.precision_flags()) == "fp32 (CPU)"


def test_the_sft_cache_keeps_the_two_precisions_apart(bf16_units, monkeypatch):
    profile, rows = load_profile("smollm2-135m"), data.load_homework()[:4]
    with_bf16 = sft_cache_dir(sft_settings(profile, rows, 0))
    monkeypatch.setenv("DPO_CPU_BF16", "off")
    assert sft_cache_dir(sft_settings(profile, rows, 0)) != with_bf16


def _linear_output_dtypes(model, action) -> set[torch.dtype]:
    """The dtypes the model's linear layers produce while action() runs."""
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        action()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_measuring_runs_in_bf16_on_a_marked_model_and_generation_stays_fp32(bf16_units, tiny_profile):
    tokenizer = load_tokenizer(tiny_profile)
    rows = data.load_homework()[:4]
    prompts = [r["prompt"] for r in rows]
    marked = load_model(tiny_profile.replace(cpu_bf16=True))
    assert getattr(marked, hardware.AUTOCAST_MARK)
    assert next(marked.parameters()).dtype == torch.float32, "the weights stay fp32"
    generated = _linear_output_dtypes(marked, lambda: generate_answers(marked, tokenizer, prompts, max_new_tokens=4,
                                                                       progress=False))
    measured = _linear_output_dtypes(marked, lambda: stance_logps(marked, tokenizer, rows))
    assert measured == {torch.bfloat16}
    assert generated == {torch.float32}, "greedy answers must not depend on the batch's padding (bf16 ties flip)"
    plain = load_model(tiny_profile)
    assert not getattr(plain, hardware.AUTOCAST_MARK)
    assert _linear_output_dtypes(plain, lambda: stance_logps(plain, tokenizer, rows)) == {torch.float32}
    fp32, bf16 = stance_logps(plain, tokenizer, rows), stance_logps(marked, tokenizer, rows)
    assert (fp32.support_logp - bf16.support_logp).abs().max() < 0.5, "the same model, products rounded to bf16"


def test_a_dpo_step_under_cpu_bf16_trains_fp32_adapters(bf16_units, tiny_profile, tmp_path):
    profile = tiny_profile.replace(cpu_bf16=True, dpo_loss_type=("sigmoid",), dpo_loss_weights=None)
    model = load_model(profile, trainable=True)
    pairs = data.make_preference_pairs(data.load_homework(), 1.0, 8)
    seen: set[torch.dtype] = set()
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    hook = first.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    result = train_dpo(model, load_tokenizer(profile), pairs, profile, tmp_path, max_steps=2, learning_rate=1e-2)
    hook.remove()
    assert torch.bfloat16 in seen, "the trainer's forward ran under CPU bf16 autocast"
    trainable = {p.dtype for p in result.model.parameters() if p.requires_grad}
    assert trainable == {torch.float32}
    lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b), "the adapter moved"
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in result.log_history if "loss" in e)
