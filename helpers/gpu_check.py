"""`python -m helpers gpu-check --out DIR`: the GPU path checked on the GPU a course will use, offline, in a few
minutes, with the tiny model in 4 bit (or, where the hub is reachable, a real profile or homework preset): the card
and what the project decides for it, the attention kernel each precision really gets, QLoRA DPO trained under fp16
and under bf16 (the gradient-scaler case), a whole run's peak memory beside the estimator's figure, and an export with
notebook 09's checks. One line per check (ok / FAIL and why) and DIR/gpu_check.json. A teacher runs it once on Colab
before handing the course out (README, "Before a course: check the GPU").
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from helpers.errors import UserError
from helpers.files import write_json_atomic

PRECISIONS = ("fp16", "bf16")


def check_plan(capability: tuple[int, int], profile_name: str = "tiny-4bit") -> dict:
    """What the project decides for a card of this compute capability, before anything runs on it: the precision,
    the attention kernel it expects per precision, whether bf16 is native or emulated, and the memory estimate."""
    from helpers.hardware import bnb_min_capability, has_fast_bf16
    from helpers.memory import attention_kernel, estimate_peak_memory
    from helpers.runs import resolve_profile

    profile = resolve_profile(_run_config(profile_name), check_hardware=False)
    fast_bf16 = has_fast_bf16(capability)
    return {"capability": list(capability), "profile": profile.name, "precision": "bf16" if fast_bf16 else "fp16",
            "bf16": "native" if fast_bf16 else "emulated (slow: no bf16 tensor cores)",
            "expected_attention": {dtype: attention_kernel(dtype, capability) for dtype in PRECISIONS},
            "estimate_gib": (estimate_peak_memory(profile, gpu=capability) or {}).get("gib"),
            "bnb_4bit_from": ".".join(map(str, bnb_min_capability(None)))}


def _run_config(profile_name: str, **knobs):
    """A RunConfig for a profile, or for a homework preset's course run ("hw6", "hw7")."""
    from helpers.homework import HOMEWORKS
    from helpers.runs import RunConfig

    if profile_name in HOMEWORKS:  # the course's files, cloned (the hub and the course's repository are reachable)
        from helpers.runs import with_course_data

        preset = HOMEWORKS[profile_name]
        return with_course_data(RunConfig(profile=None, homework=preset.name, student_id="GPUCHECK",
                                          split_rule=preset.split_rule, seed=preset.seed, **knobs))
    return RunConfig(profile=profile_name, **knobs)


def attention_kernel_used(dtype) -> str:
    """The first scaled-dot-product kernel that accepts this dtype on this GPU, in PyTorch's own order of choice."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention

    q, k, v = (torch.randn(2, 8, 128, 64, device="cuda", dtype=dtype) for _ in range(3))
    for backend, name in ((SDPBackend.FLASH_ATTENTION, "flash"), (SDPBackend.EFFICIENT_ATTENTION, "memory-efficient"),
                          (SDPBackend.MATH, "math")):
        try:
            with sdpa_kernel([backend]):
                scaled_dot_product_attention(q, k, v, is_causal=True)
            return name
        except RuntimeError:
            continue
    return "none"


def qlora_steps(profile_name: str, precision: str, out_dir: Path) -> dict:
    """A few QLoRA DPO steps under one precision: the trainable weights' dtypes, lora_B moved, finite losses."""
    import torch

    from helpers import data
    from helpers.models import load_model, load_tokenizer
    from helpers.runs import resolve_profile
    from helpers.training import train_dpo

    profile = resolve_profile(_run_config(profile_name), check_hardware=False)
    model, tokenizer = load_model(profile, trainable=True), load_tokenizer(profile)
    pairs = data.make_preference_pairs(data.load_homework(languages=profile.languages), 1.0, 16,
                                       system_prompt=profile.system_prompt)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = train_dpo(model, tokenizer, pairs, profile, out_dir, max_steps=4, fp16=precision == "fp16",
                       bf16=precision == "bf16")
    trainable = {str(p.dtype).removeprefix("torch.") for p in result.model.parameters() if p.requires_grad}
    moved = any(bool(p.detach().abs().sum() > 0) for n, p in result.model.named_parameters() if "lora_B" in n)
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    ok = moved and losses and all(loss == loss and abs(loss) != float("inf") for loss in losses)
    ok = ok and (precision == "bf16" or "bfloat16" not in trainable)
    return {"ok": bool(ok), "steps": result.steps, "losses": losses, "trainable_dtypes": sorted(trainable),
            "lora_B_moved": moved, "seconds": round(time.perf_counter() - start, 1),
            "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)}


def whole_run(profile_name: str, out_dir: Path) -> dict:
    """`run` end to end (base, SFT where the profile has one, DPO, measured) with its peak GPU memory beside the
    estimator's figure for the same settings, then an export checked as notebook 09 checks it."""
    import torch

    from helpers.export import export_run
    from helpers.generation import pipeline_answers, text_pipeline
    from helpers.hardware import gpu_capability
    from helpers.memory import estimate_peak_memory
    from helpers.pipeline import run_pipeline
    from helpers.runs import load_run, resolve_profile

    config = _run_config(profile_name, support_ratio=1.0, num_epoch=1)
    profile = resolve_profile(config, check_hardware=False)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run_pipeline(config, out_dir / "run", overwrite=True, echo=lambda _: None)
    peak = torch.cuda.max_memory_allocated() / 2**30
    estimate = estimate_peak_memory(profile, gpu=gpu_capability())
    run = load_run(out_dir / "run")
    report = export_run(out_dir / "run", out_dir / "model", echo=lambda _: None, overwrite=True)
    served = pipeline_answers(text_pipeline(out_dir / "model"), list(run["answers"]["prompt"]),
                              system_prompt=profile.system_prompt, max_new_tokens=profile.max_new_tokens)
    same_served = served == list(run["answers"]["dpo"])
    return {"ok": bool(report["same_greedy_answers"]) and same_served, "seconds": round(time.perf_counter() - start, 1),
            "peak_allocated_gib": round(peak, 3), "estimate_gib": estimate["gib"]["total"] if estimate else None,
            "export_same_greedy_answers": report["same_greedy_answers"], "export_answers": report.get("same_answers"),
            "served_like_the_run": same_served}


def run_gpu_check(out_dir: Path, profile_name: str = "tiny-4bit", echo=print) -> dict:
    """Every check in turn, one line each; gpu_check.json in out_dir. A machine without CUDA is refused in one line."""
    import torch

    from helpers.hardware import (check_gpu_for, gpu_capability, gpu_memory_gib, gpu_name, local_device, pick_dtype,
                                  precision_flags)
    from helpers.runs import resolve_profile

    if not torch.cuda.is_available():
        raise UserError("gpu-check needs a CUDA GPU and this machine has none: run it on Colab or Kaggle with a GPU "
                        "runtime (Colab: Runtime → Change runtime type → T4 GPU)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    capability = gpu_capability()
    plan = check_plan(capability, profile_name)
    free, total = gpu_memory_gib()
    report = {"gpu": gpu_name(), "torch": torch.__version__, "cuda": torch.version.cuda, "plan": plan,
              "memory_gib": {"free": round(free, 2), "total": round(total, 2)}, "checks": {}}
    echo(f"{gpu_name()} · compute capability {capability[0]}.{capability[1]} · {free:.1f} of {total:.1f} GiB free · "
         f"torch {torch.__version__} (CUDA {torch.version.cuda})")

    def check(name: str, action) -> None:
        start = time.perf_counter()
        try:
            result = action()
        except Exception as error:  # a check that fails says why, and the others still run
            result = {"ok": False, "error": f"{type(error).__name__}: {error}".splitlines()[0][:300],
                      "traceback": traceback.format_exc(limit=8)}
        result.setdefault("seconds", round(time.perf_counter() - start, 1))
        report["checks"][name] = result
        detail = result.get("error") or ", ".join(f"{k} {v}" for k, v in result.items()
                                                  if k not in ("ok", "traceback", "losses"))
        echo(f"{'ok  ' if result['ok'] else 'FAIL'} {name}: {detail}")
        write_json_atomic(out_dir / "gpu_check.json", report)

    check("one GPU per process", lambda: {"ok": torch.cuda.device_count() == 1 or local_device() > 0,
                                           "visible": torch.cuda.device_count(), "device": local_device()})
    check("card supported", lambda: {"ok": check_gpu_for(True, profile_name) is None})
    check("precision from capability", lambda: {
        "ok": str(pick_dtype()).endswith("bfloat16" if plan["precision"] == "bf16" else "float16")
        and precision_flags()[plan["precision"]], "chosen": plan["precision"], "bf16": plan["bf16"]})
    for precision in PRECISIONS:
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        check(f"attention kernel in {precision}", lambda dtype=dtype, precision=precision: {
            "ok": (used := attention_kernel_used(dtype)) == plan["expected_attention"][precision], "used": used,
            "estimator assumes": plan["expected_attention"][precision]})
    for precision in PRECISIONS:
        check(f"QLoRA DPO under {precision}",
              lambda precision=precision: qlora_steps(profile_name, precision, out_dir / f"steps-{precision}"))
    check(f"whole run + export ({resolve_profile(_run_config(profile_name), check_hardware=False).name})",
          lambda: whole_run(profile_name, out_dir))
    failed = [name for name, result in report["checks"].items() if not result["ok"]]
    report["ok"] = not failed
    write_json_atomic(out_dir / "gpu_check.json", report)
    echo(f"{len(report['checks']) - len(failed)} of {len(report['checks'])} checks ok"
         + (f"; failed: {', '.join(failed)}" if failed else "") + f"; details in {out_dir / 'gpu_check.json'}")
    return report
