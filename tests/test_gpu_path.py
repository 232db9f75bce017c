"""The GPU path a Colab or Kaggle T4 takes, tested on a CPU as far as a CPU can go: precision from the card's compute
capability (stubbed below torch.cuda.is_bf16_supported, which says True on a T4), one pinned GPU, each rank on its own
card, cards the libraries cannot drive refused, QLoRA adapters kept out of bf16 under fp16, and the quantized branches
of PEFT, TRL and bitsandbytes run for real on the tiny model in 4 bit (`tiny-4bit`, bitsandbytes' CPU backend)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from helpers import data, pipeline, training
from helpers.config import load_profile
from helpers.errors import UserError
from helpers.hardware import check_gpu_for, check_one_gpu, pick_dtype, pin_one_gpu, precision_flags
from helpers.models import load_kwargs, load_model, load_tokenizer, quantization_config
from helpers.pipeline import RunConfig, run_pipeline

ROOT = Path(__file__).resolve().parent.parent
HW6 = ROOT / "assets" / "data" / "rehearsal" / "hw6"
HW7 = ROOT / "assets" / "data" / "rehearsal" / "hw7"


# --- precision, pinning, devices, cards ------------------------------------------------------------------------


@pytest.mark.parametrize("capability, name, expected", [
    ((7, 5), "Tesla T4", torch.float16), ((6, 0), "Tesla P100-PCIE-16GB", torch.float16),
    ((7, 0), "Tesla V100-SXM2-16GB", torch.float16), ((8, 0), "NVIDIA A100-SXM4-40GB", torch.bfloat16),
    ((8, 9), "NVIDIA L4", torch.bfloat16)])
def test_precision_follows_the_compute_capability(fake_gpu, capability, name, expected):
    fake_gpu(capability, name)
    assert torch.cuda.is_bf16_supported(), "torch says bf16 on every card here: emulated below 8.0"
    assert pick_dtype() == expected
    bf16 = expected == torch.bfloat16
    assert precision_flags() == {"bf16": bf16, "fp16": not bf16}
    assert quantization_config(load_profile("breeze-7b", check_hardware=False)).bnb_4bit_compute_dtype == expected


def test_a_t4_dry_run_promises_fp16(fake_gpu):
    from helpers.plan import run_plan

    fake_gpu((7, 5))
    plan = run_plan(RunConfig(profile=None, homework="hw7", student_id="B1", data=str(HW7 / "train.json"),
                              test_prompts=str(HW7 / "test.json"), split_rule="course", seed=42))
    assert plan["dpo_config"]["fp16"] is True and plan["dpo_config"]["bf16"] is False
    assert plan["memory"]["dtype"] == "fp16" and plan["memory"]["attention"] == "memory-efficient"


def test_a_p100_is_refused_before_anything_loads(fake_gpu):
    fake_gpu((6, 0), "Tesla P100-PCIE-16GB")
    with pytest.raises(UserError, match="P100.*6.0.*T4"):
        check_gpu_for(False)  # torch's CUDA 12.8 build has no sm_60 code
    fake_gpu((6, 0), "Tesla P100-PCIE-16GB", archs=["sm_60", "sm_70", "sm_75", "sm_80"], cuda="12.8")
    check_gpu_for(False)  # an older torch build runs it, without 4-bit
    with pytest.raises(UserError, match="4 bit.*bitsandbytes.*7.0 or newer"):
        load_profile("breeze-7b")
    fake_gpu((7, 5), archs=["sm_75", "sm_80"], cuda="13.0")
    check_gpu_for(True)  # a T4 runs bitsandbytes' CUDA 13 build


def test_newer_cards_run_older_cubins_and_ptx():
    from helpers.hardware import runs_on

    assert runs_on((8, 9), ["sm_80", "sm_86", "sm_90"])  # an L4 runs sm_86 code
    assert runs_on((12, 1), ["sm_90", "compute_90"])  # PTX compiles for a newer card
    assert not runs_on((6, 0), ["sm_75", "sm_80"])


def test_two_visible_gpus_in_a_notebook_give_one_pinned_gpu(fake_gpu, monkeypatch, capsys):
    """Kaggle's "GPU T4 x2": one notebook process sees two cards, and TRL refuses nn.DataParallel."""
    from helpers.notebook import setup_notebook

    fake_gpu((7, 5), count=2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    setup_notebook(profile="tiny")
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert "2 GPUs are visible: this process uses GPU 0 only" in capsys.readouterr().out
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert pin_one_gpu(echo=lambda _: None) == "1"


def test_the_command_line_pins_one_gpu_before_anything_else(fake_gpu, monkeypatch):
    from helpers.cli import main

    fake_gpu((7, 5), count=2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["run", "--dry-run", "--profile", "tiny"]) == 0
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_no_pinning_under_a_data_parallel_launch_and_a_late_start_is_refused(fake_gpu, monkeypatch):
    fake_gpu((7, 5), count=2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert pin_one_gpu(echo=lambda _: None) is None
    check_one_gpu()  # every rank sees both cards and uses its own
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(UserError, match="2 GPUs are visible.*restart the kernel"):
        check_one_gpu()  # CUDA started before the pin: one line, before a model loads


def test_each_rank_loads_onto_its_own_gpu(fake_gpu, monkeypatch):
    fake_gpu((7, 5), count=2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert load_kwargs(load_profile("breeze-7b", check_hardware=False))["device_map"] == {"": 1}
    monkeypatch.delenv("LOCAL_RANK")
    assert load_kwargs(load_profile("breeze-7b", check_hardware=False))["device_map"] == {"": 0}


def test_gpu_profiles_answer_the_homeworks_ten_prompts_in_one_call():
    from helpers.config import PROFILES

    assert all(p.gen_batch_size >= 10 for p in PROFILES.values() if p.needs_gpu)


# --- QLoRA on the tiny model in 4 bit ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qlora():
    profile = load_profile("tiny-4bit")
    return profile, load_tokenizer(profile)


@pytest.mark.slow
def test_fp16_keeps_every_trainable_weight_out_of_bf16(qlora, tmp_path):
    """TRL casts a 4-bit model's LoRA weights to bf16; the fp16 gradient scaler of a T4 has no bf16 kernel."""
    profile, tokenizer = qlora
    pairs = data.make_preference_pairs(data.load_homework(str(HW7 / "train.json")), 1.0, 8)
    dtypes = {}
    for precision in ("fp16", "bf16"):  # on a CPU the trainer accepts both flags (no autocast, no scaler)
        model = load_model(profile, trainable=True)
        assert model.is_loaded_in_4bit
        trainer = training.dpo_trainer(model, tokenizer, pairs, profile, tmp_path / precision, max_steps=1,
                                       fp16=precision == "fp16", bf16=precision == "bf16")
        dtypes[precision] = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    assert dtypes["bf16"] == {torch.bfloat16}, "TRL's own cast (kept for bf16 runs, as QLoRA does)"
    assert dtypes["fp16"] == {torch.float32}


def _sft_checkpoint_lora_b(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(folder / "adapter_model.safetensors").items() if "lora_B" in k}


@pytest.fixture(scope="module")
def qlora_runs(tmp_path_factory):
    """tiny-4bit through `run` twice: the first trains and caches its SFT adapter (any cached one is dropped first),
    the second loads it from the cache. Each run's trainable parameter count at the start of DPO is recorded."""
    import shutil

    config = RunConfig(profile="tiny-4bit", support_ratio=1.0, num_epoch=1, data=str(HW7 / "train.json"),
                       test_prompts=str(HW7 / "test.json"))
    rows = pipeline.load_inputs(config).train_rows
    sft_folder = pipeline.sft_cache_dir(pipeline.sft_settings(load_profile("tiny-4bit"), rows, config.seed))
    shutil.rmtree(sft_folder, ignore_errors=True)
    out = tmp_path_factory.mktemp("qlora")
    trainable: list[int] = []
    original = training.run_trainer

    def counting(trainer, *args, **kwargs):
        if kwargs.get("stage") == "dpo":
            trainable.append(sum(p.numel() for p in trainer.model.parameters() if p.requires_grad))
        return original(trainer, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "run_trainer", counting)
        runs = [run_pipeline(config, out / name, echo=lambda _: None) for name in ("first", "second")]
    assert runs[0]["timings"]["sft"] > 5 * runs[1]["timings"]["sft"], "the second run loads the cached SFT adapter"
    return out, runs, trainable, sft_folder


@pytest.mark.slow
def test_a_cached_4bit_sft_adapter_trains_on(qlora_runs):
    out, runs, trainable, sft_folder = qlora_runs
    assert len(trainable) == 2 and trainable[0] > 0 and trainable[1] == trainable[0], trainable
    sft_b = _sft_checkpoint_lora_b(sft_folder)
    for name in ("first", "second"):
        dpo_b = _sft_checkpoint_lora_b(out / name / "adapter")
        assert dpo_b.keys() == sft_b.keys()
        assert any(not torch.equal(dpo_b[k], sft_b[k]) for k in sft_b), f"{name}: DPO did not move lora_B"
    assert runs[0]["stages"]["dpo"] == runs[1]["stages"]["dpo"], "the cache changes nothing"
    margins = [e["rewards/margins"] for e in json.loads((out / "second" / "logs.json").read_text())["dpo"]
               if "rewards/margins" in e]
    assert margins[0] == 0, "policy == reference at step 1: the SFT adapter kept its exact fp32 values"
    assert sum(margins[1:]) / len(margins[1:]) > 0, "DPO moved the chosen answers above the rejected ones"
    assert runs[1]["environment"]["precision"] == "fp32 (CPU)"


@pytest.mark.slow
def test_export_of_a_4bit_run_gives_the_runs_own_answers(qlora_runs, tmp_path):
    """The adapter is merged into the dequantized NF4 weights it trained against, not the original fp32 ones."""
    from helpers.export import export_run

    out, _, _, _ = qlora_runs
    report = export_run(out / "second", tmp_path / "model", echo=lambda _: None)
    assert report["same_greedy_answers"] is True and report["same_answers"] == "10/10"
    assert not (tmp_path / "model" / "config.json").read_text().count("quantization_config")


def test_an_export_that_cannot_fit_is_refused_with_what_it_needs():
    from helpers.export import export_memory

    with pytest.raises(UserError, match=r"14\.5 GiB.*12\.7 GiB of RAM"):
        export_memory(7_490_000_000, torch.float16, gpu_free_gib=13.9, ram_gib=12.7)  # breeze-7b on free Colab
    assert export_memory(7_490_000_000, torch.float16, gpu_free_gib=None, ram_gib=29.0) == "cpu"  # Kaggle
    assert export_memory(7_490_000_000, torch.float16, gpu_free_gib=39.0, ram_gib=12.7) == "cuda"  # an A100


# --- one copy of the base weights ------------------------------------------------------------------------------


def _watch_base_models(monkeypatch) -> list[int]:
    """At every DPO training in the pipeline, how many distinct base models are alive (weakrefs, after a collection)."""
    seen: list[weakref.ref] = []
    alive: list[int] = []
    original = pipeline.train_dpo

    def spy(model, *args, **kwargs):
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        seen.append(weakref.ref(base))
        gc.collect()
        alive.append(len({id(m) for m in (ref() for ref in seen) if m is not None}))
        return original(model, *args, **kwargs)

    monkeypatch.setattr(pipeline, "train_dpo", spy)
    return alive


@pytest.mark.slow
def test_a_homework_kfold_run_keeps_one_base_and_loads_it_once(monkeypatch, tmp_path):
    """hw6 on all 50 rows, measured by k-fold: every fold trains an adapter on the one base; the base is loaded once
    (measured, trained, and read with adapters off for fluency), never copied."""
    alive = _watch_base_models(monkeypatch)
    loads = []
    original = pipeline.load_model
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: loads.append(1) or original(*a, **k))
    config = RunConfig(profile="tiny-4bit", homework="hw6", support_ratio=0.1, data_size=50, num_epoch=1,
                       data=str(HW6 / "labelled_data.json"), test_prompts=str(HW6 / "test_prompt.json"),
                       split_rule="course", seed=42, holdout="kfold-2")
    metrics = run_pipeline(config, tmp_path / "run", echo=lambda _: None)
    assert alive == [1, 1, 1], "two folds and the submitted run, on one base"
    assert len(loads) == 1
    assert metrics["holdout"]["method"] == "kfold" and metrics["stages"]["dpo"]["support_rate"] == \
        metrics["stages"]["dpo"]["support_rate"]
    assert (tmp_path / "run" / "epoch-1_size-50_ratio-0.1.json").exists()
    assert "fluency" in metrics["stages"]["base"]


@pytest.mark.slow
def test_a_sweep_trains_every_point_on_one_base(monkeypatch, tmp_path):
    from helpers.sweep import run_sweep

    alive = _watch_base_models(monkeypatch)
    table = run_sweep("tiny", [0.0, 1.0], tmp_path, num_epochs=[1], data_sizes=[16], echo=lambda _: None)
    assert len(table) == 2 and alive == [1, 1]
    assert table.loc[table["support_ratio"] == 1.0, "dpo_support_rate"].item() > \
        table.loc[table["support_ratio"] == 0.0, "dpo_support_rate"].item()


# --- measuring without a full-vocabulary fp32 copy -----------------------------------------------------------------


def test_log_probs_equal_log_softmax_without_a_full_fp32_copy(tiny):
    """_scored reads each token's log-prob as logit − log-sum-exp, one sequence at a time in fp32."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from helpers.evaluation import _scored

    model, tokenizer = tiny
    encoded = [(tokenizer(r["prompt"])["input_ids"], tokenizer(r["support"])["input_ids"])
               for r in data.load_homework()[:12]]
    sums, counts = _scored(model, encoded, 0, batch_size=12)
    for (prompt, answer), value in zip(encoded, sums):
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            logps = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        expected = logps[len(prompt) - 1:].gather(-1, ids[0, len(prompt):, None]).sum().item()
        assert value == pytest.approx(expected, abs=1e-4)
    assert list(counts) == [len(a) for _, a in encoded]

    class LargestFloat32(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32:
                    LargestFloat32.largest = max(LargestFloat32.largest, tensor.numel())
            return out

    half = model.to(torch.bfloat16)  # logits in 16 bit, as on a GPU
    longest = max(len(p) + len(a) for p, a in encoded)
    with LargestFloat32():
        _scored(half, encoded, 0, batch_size=12)
    vocab = model.config.vocab_size
    assert LargestFloat32.largest <= longest * vocab, "an fp32 copy larger than one sequence's logits"


# --- the memory estimate ---------------------------------------------------------------------------------------


def test_the_estimate_sees_the_attention_kernel_and_the_usable_t4():
    from helpers.memory import T4_GIB, estimate_peak_memory

    assert T4_GIB == 14.7
    hw7 = load_profile("llama3-8b", check_hardware=False)
    fp16 = estimate_peak_memory(hw7, gpu=(7, 5))
    emulated_bf16 = estimate_peak_memory(hw7, gpu=(7, 5), dtype="bf16")
    assert fp16["attention"] == "memory-efficient" and emulated_bf16["attention"] == "math"
    assert emulated_bf16["gib"]["training"] > fp16["gib"]["training"], "the math kernel keeps length² scores"
    assert fp16["copies"] == 1 and fp16["gib"]["measuring"] > 0
    assert fp16["gib"]["total"] == pytest.approx(fp16["gib"]["weights"] + max(fp16["gib"]["training"],
                                                 fp16["gib"]["measuring"]) + fp16["gib"]["cuda_context"], abs=0.02)


def test_every_gpu_profile_figure_comes_from_the_estimator():
    from helpers.config import PROFILES
    from helpers.memory import estimate_peak_memory, memory_note

    for profile in PROFILES.values():
        if profile.needs_gpu:
            assert profile.memory == "", f"{profile.name}: a hand-written figure"
            estimate = estimate_peak_memory(profile)
            assert estimate is not None, f"{profile.name}: no bundled config.json"
            assert f"~{estimate['gib']['total']:.1f} GiB" in memory_note(profile)


# --- gpu-check -----------------------------------------------------------------------------------------------------


def test_gpu_check_refuses_a_machine_without_cuda(tmp_path):
    done = subprocess.run([sys.executable, "-m", "helpers", "gpu-check", "--out", str(tmp_path / "check")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "needs a CUDA GPU" in done.stderr
    assert not (tmp_path / "check").exists()


@pytest.mark.parametrize("capability, precision, kernels", [
    ((7, 5), "fp16", {"fp16": "memory-efficient", "bf16": "math"}),
    ((8, 0), "bf16", {"fp16": "flash", "bf16": "flash"})])
def test_gpu_check_plans_what_the_card_should_get(fake_gpu, capability, precision, kernels):
    from helpers.gpu_check import check_plan

    fake_gpu(capability)
    plan = check_plan(capability)
    assert plan["precision"] == precision and plan["expected_attention"] == kernels
    assert plan["estimate_gib"]["total"] > 0
    assert json.dumps(plan)  # written to gpu_check.json as it is
