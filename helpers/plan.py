"""What a run would do, resolved before anything is loaded (`run --dry-run`, and `run_plan` in a notebook): the
model and how it is loaded, LoRA, the exact DPOConfig arguments, the pairs, the held-out rows, the result file's
name and an estimate of peak GPU memory. Reads no weights and needs no GPU: a student sees whether a T4 fits first."""

from __future__ import annotations

from pathlib import Path

from helpers import data
from helpers.cpu_training import cpu_training_kernels
from helpers.hardware import cpu_bf16_for, gpu_capability, has_gpu, precision_flags, precision_name
from helpers.runs import RunConfig, resolve_profile

T4_PRECISION = {"bf16": False, "fp16": True}  # what a T4 trains in (it only emulates bf16)


def run_plan(config: RunConfig, out_dir: str | Path = "OUT") -> dict:
    """The resolved settings of a run, section by section (plain values, ready to print or to show as JSON)."""
    from helpers.homework import load_homework_preset, model_warning
    from helpers.holdout import holdout_plan
    from helpers.memory import T4_CAPABILITY, T4_GIB, estimate_peak_memory
    from helpers.trainer_args import dpo_arguments

    profile = resolve_profile(config, check_hardware=False)
    preset = load_homework_preset(config.homework) if config.homework else None
    if config.data or not preset:  # the rows this run really trains on (an English-only profile: the English ones)
        rows = len(data.select_languages(data.load_homework(config.data), profile.languages))
    else:
        rows = preset.rows
    size = config.data_size or rows
    arguments = dpo_arguments(profile, Path(out_dir) / "checkpoints" / "dpo", config.beta, config.num_epoch,
                              config.learning_rate, config.seed)
    precision_note = f"this machine's: {precision_name(precision_flags(cpu_bf16_for(profile.cpu_bf16)))}"
    kernels = cpu_training_kernels()  # helpers.cpu_training: each has a switch
    used = [name for key, name in (("eager_attention", "eager attention"),
                                   ("labelled_head", "the LM head on the answer's tokens only")) if kernels[key]]
    if used:
        precision_note += f"; training on this CPU: {', '.join(used)}"
    gpu = gpu_capability()
    if profile.needs_gpu and not has_gpu():
        arguments = {k: v for k, v in arguments.items() if k != "use_cpu"} | T4_PRECISION
        precision_note, gpu = "a T4's: fp16 (bf16 from compute capability 8.0, Ampere)", T4_CAPABILITY
    try:
        result_name = config.answers_file_name(rows)
    except ValueError as error:  # hw7 without --student-id: say so instead of failing the dry run
        result_name = f"(needs --student-id: {error})"
    plan = {
        "homework": preset.course if preset else None,
        "model": {"profile": profile.name, "model_name": profile.model_name, "needs_gpu": profile.needs_gpu,
                  "warning": model_warning(preset, profile.model_name) if preset else None},
        "quantization": ({"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                          "bnb_4bit_compute_dtype": "the training precision: float16 on a T4, bfloat16 from 8.0"}
                         if profile.load_in_4bit else None),
        "lora": {"r": profile.lora_r, "lora_alpha": profile.lora_alpha, "lora_dropout": profile.lora_dropout,
                 "target_modules": profile.lora_target_modules},
        "generation": {"greedy": True, "max_new_tokens": profile.max_new_tokens,
                       "system_prompt": profile.system_prompt},
        "sft_stage": profile.run_sft,
        "pairs": {"rows": rows, "data_size": size, "split_rule": config.split_rule,
                  "support_preferred": data.n_support_preferred(size, config.support_ratio, rule=config.split_rule)},
        "held_out": (holdout_plan(config, rows) if config.homework and not config.eval_data
                     else {"method": "file", "note": str(config.eval_data or "assets/data/eval_data.json")}),
        "dpo_config": arguments,
        "dpo_precision": precision_note,
        "result_file": result_name,
        "memory": estimate_peak_memory(profile, gpu=gpu),
        "t4_gib": T4_GIB,
    }
    return plan


def plan_text(plan: dict) -> str:
    """The plan as lines to read on a terminal."""
    lines = [f"homework      {plan['homework']}"] if plan["homework"] else []
    model = plan["model"]
    lines.append(f"model         {model['model_name']} (profile {model['profile']})")
    if model["warning"]:
        lines.append(model["warning"])
    for key in ("quantization", "lora", "generation"):
        if plan[key]:
            lines.append(f"{key:<13} " + ", ".join(f"{k}={v!r}" for k, v in plan[key].items()))
    pairs = plan["pairs"]
    lines += [f"sft stage     {'yes' if plan['sft_stage'] else 'no'}",
              f"pairs         {pairs['data_size']} of {pairs['rows']} rows, {pairs['support_preferred']} prefer support "
              f"(split rule {pairs['split_rule']})",
              f"held out      {plan['held_out']['note']}",
              f"result file   {plan['result_file']}",
              f"DPOConfig     (precision: {plan['dpo_precision']})"]
    lines += [f"  {k} = {v!r}" for k, v in plan["dpo_config"].items()]
    memory = plan["memory"]
    if memory is None:
        lines.append("memory        no bundled config.json for this model (assets/models): not estimated")
    else:
        gib = memory["gib"]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in gib.items() if k != "total")
        margin = plan["t4_gib"] - gib["total"]
        verdict = (f"fits a T4's {plan['t4_gib']:g} GiB usable, {margin:.1f} GiB to spare" if margin >= 0 else
                   f"does NOT fit a T4's {plan['t4_gib']:g} GiB usable: {-margin:.1f} GiB short")
        lines.append(f"memory        ~{gib['total']:.1f} GiB estimated peak in {memory['dtype']}, attention kernel "
                     f"{memory['attention']} ({parts}; peak = weights + the larger of training and measuring + "
                     f"context); {verdict}")
        lines.append(f"              {memory['parameters'] / 1e9:.2f}B parameters, {memory['copies']} copy of the "
                     f"weights alive, {memory['lora_parameters'] / 1e6:.1f}M in LoRA, {memory['tokens_per_step']} "
                     f"tokens per step; export (a 16-bit merge) needs ~{memory['export_gib']:.1f} GiB of RAM or GPU "
                     f"memory (free Colab: 12.7 GiB RAM)")
    return "\n".join(lines)
