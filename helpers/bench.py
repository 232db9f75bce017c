"""`python -m helpers bench`: what a run costs, each choice measured side by side with the path it replaced, in one
run: imports (fresh interpreters), seconds per SFT and DPO step, generation, a whole `run` command, peak memory."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.bench_passes import measuring, reference_pass
from helpers.bench_runs import own_peak_mb, run_command_seconds
from helpers.bench_runs import timed as _timed
from helpers.files import write_json_atomic
from helpers.hardware import AUTOCAST_MARK, cpu_bf16_for

FP32_DPO = "DPO, fp32 (no CPU bf16 autocast)"
FP32_SFT = "SFT, fp32 (no CPU bf16 autocast)"

# What each entry point imports, in a fresh interpreter; "eager" is what importing the pipeline cost before the
# training libraries moved into the functions that use them.
ENTRY_POINTS = {
    "setup cell": "from helpers import setup_notebook; setup_notebook('tiny')",
    "data check": "import helpers.data",
    "run's input checks": "import helpers.runs",
    "training notebook (import helpers.pipeline)": "import helpers.pipeline",
    "the same, training libraries imported eagerly": ("import helpers.pipeline, peft, trl; "
                                                      "from transformers import AutoModelForCausalLM, Trainer"),
}


def import_seconds(repeats: int = 2) -> dict[str, float]:
    """Best of `repeats` wall seconds for each entry point's imports, each in a fresh interpreter."""
    return {name: round(min(_timed(subprocess.run, [sys.executable, "-c", code], check=True)[1]
                            for _ in range(repeats)), 2) for name, code in ENTRY_POINTS.items()}


def _step_timer():
    """A Trainer callback that keeps the wall time of every optimizer step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


def _kernel_switches() -> dict[str, str]:
    """The CPU training speed-ups (helpers.cpu_training) this machine uses: what turning each off is called → its
    switch."""
    from helpers.cpu_training import SWITCHES, cpu_training_kernels

    names = {"eager_attention": "SDPA attention in training instead of eager",
             "labelled_head": "TRL's LM head over every position instead of the labelled ones"}
    return {names[kernel]: SWITCHES[kernel] for kernel, used in cpu_training_kernels().items() if used}


def step_seconds(stage: str, model, tokenizer, examples, profile, threads: int | None = None, epochs: float = 1,
                 kept_adapter: Path | None = None, switches: dict[str, str] | None = None,
                 **overrides) -> tuple[float, object]:
    """Median seconds per optimizer step of an SFT or DPO stage (its first, warm-up step left out), and the model
    with the stage's adapter taken off again (the start model, for the next measurement). switches: environment
    switches set while it trains (a speed-up turned off)."""
    from unittest import mock

    import torch

    from helpers.training import release_adapters, train_dpo, train_sft

    before, timer = torch.get_num_threads(), _step_timer()
    try:
        if threads:
            torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as scratch, mock.patch.dict(os.environ, switches or {}):
            train = train_sft if stage == "sft" else train_dpo
            trained = train(model, tokenizer, examples, profile, scratch, num_epochs=epochs, callbacks=[timer],
                            **overrides).model
    finally:
        torch.set_num_threads(before)
    return statistics.median(timer.times[1:]), release_adapters(trained, kept_adapter)


def _other_threads() -> int:
    import torch

    return 2 if torch.get_num_threads() == 1 else 1


def training_steps(profile, tokenizer, rows: list[dict], start_model, kept_adapter: Path | None = None
                   ) -> dict[str, dict]:
    """Seconds per step with the profile's settings, then with one thing changed at a time; ratio = alternative ÷
    profile's (above 1: the profile's choice is faster). start_model is where DPO starts: each measurement trains its
    own adapter on it, taken off again afterwards (a 4-bit start keeps its SFT adapter, kept_adapter)."""
    from helpers import data
    from helpers.models import load_model

    pairs = data.make_preference_pairs(rows, 1.0, system_prompt=profile.system_prompt)
    short = max(profile.batch_size * profile.grad_accum * 6, 1)  # six steps are enough for a median
    dpo_epochs = min(1.0, short / len(pairs))
    live = "computed live every step" if profile.precompute_ref_log_probs else "precomputed (pre-pass not counted)"
    dpo = {"DPO, the profile's settings": dict(),
           f"DPO, reference log-probs {live}": dict(precompute_ref_log_probs=not profile.precompute_ref_log_probs),
           f"DPO, {_other_threads()} torch threads": dict(threads=_other_threads()),
           "DPO, a log entry every 10 steps instead of every step": dict(logging_steps=10, logging_first_step=True)}
    if profile.system_prompt:
        dpo["DPO, the template's default system prompt"] = dict(profile=profile.replace(system_prompt=None))
    if profile.lora_target_modules != "all-linear":
        dpo["DPO, LoRA on all linear layers"] = dict(profile=profile.replace(lora_target_modules="all-linear"))
    autocast = cpu_bf16_for(profile.cpu_bf16)
    if autocast:
        dpo[FP32_DPO] = dict(profile=profile.replace(cpu_bf16=False))
    for name, switch in _kernel_switches().items():
        dpo[f"DPO, {name}"] = dict(switches={switch: "off"})
    report: dict[str, dict] = {}
    for name, change in dpo.items():
        change = dict(change)
        variant = change.pop("profile", profile)
        examples = (pairs if variant is profile else
                    data.make_preference_pairs(rows, 1.0, system_prompt=variant.system_prompt))
        seconds, start_model = step_seconds("dpo", start_model, tokenizer, examples, variant, epochs=dpo_epochs,
                                            kept_adapter=kept_adapter, **change)
        report[name] = {"seconds_per_step": round(seconds, 3)}
    if profile.run_sft:
        examples = data.make_sft_examples(rows, profile.system_prompt)
        sft_epochs = min(1.0, short * 2 / len(examples))
        sft = {"SFT, the profile's settings": {},
               f"SFT, {_other_threads()} torch threads": dict(threads=_other_threads())}
        if autocast:
            sft[FP32_SFT] = dict(profile=profile.replace(cpu_bf16=False))
        for name, switch in _kernel_switches().items():
            sft[f"SFT, {name}"] = dict(switches={switch: "off"})
        for name, change in sft.items():
            change = dict(change)
            variant = change.pop("profile", profile)
            seconds, _ = step_seconds("sft", load_model(profile, trainable=True), tokenizer, examples, variant,
                                      epochs=sft_epochs, **change)
            report[name] = {"seconds_per_step": round(seconds, 3)}
    for stage in ("DPO", "SFT"):
        chosen = report.get(f"{stage}, the profile's settings")
        for name, entry in report.items():
            if chosen and name.startswith(stage):
                entry["ratio"] = round(entry["seconds_per_step"] / chosen["seconds_per_step"], 2)
    return report


def generation(profile, model, tokenizer, prompts: list[str]) -> dict:
    """Greedy answers in one left-padded batch against one prompt at a time: seconds, tokens per second, same answers;
    where the profile measures under CPU bf16 autocast, generation under it too (not used: see helpers.generation)."""
    from helpers.generation import generate_one_by_one, generate_with_ends

    def batched_answers():
        return generate_with_ends(model, tokenizer, prompts, profile.system_prompt, profile.max_new_tokens,
                                  batch_size=len(prompts), progress=False)[0]

    batched, batched_seconds = _timed(batched_answers)
    looped, looped_seconds = _timed(generate_one_by_one, model, tokenizer, prompts, profile.system_prompt,
                                    profile.max_new_tokens)
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in batched)
    report = {"prompts": len(prompts), "new_tokens": tokens, "batched_seconds": round(batched_seconds, 2),
              "one_by_one_seconds": round(looped_seconds, 2),
              "tokens_per_second_batched": round(tokens / batched_seconds, 1),
              "speedup_batched_vs_one_by_one": round(looped_seconds / batched_seconds, 2),
              "same_answers": batched == looped}
    if getattr(model, AUTOCAST_MARK, False):  # generation stays fp32; what bf16 autocast would give, side by side
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16, bf16_seconds = _timed(batched_answers)
            bf16_looped = generate_one_by_one(model, tokenizer, prompts, profile.system_prompt, profile.max_new_tokens)
        bf16_tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in bf16)
        report.update(bf16_batched_seconds=round(bf16_seconds, 2),
                      tokens_per_second_bf16=round(bf16_tokens / bf16_seconds, 1),
                      speedup_bf16_vs_fp32=round((bf16_tokens / bf16_seconds) / (tokens / batched_seconds), 2),
                      bf16_same_answers_as_fp32=sum(a == b for a, b in zip(batched, bf16)),
                      bf16_batched_same_as_one_by_one=sum(a == b for a, b in zip(bf16, bf16_looped)))
    return report


def run_bench(profile_name: str, out_dir: Path, n_prompts: int = 24, stance_seeds: int = 0, echo=print) -> dict:
    """Measure, write out_dir/bench.json, and return it. stance_seeds: also whole runs of that many seeds at support
    ratio 1 and 0, on today's path and on the earlier one (fp32, every speed-up off): stance figures side by side."""
    import torch

    from helpers import data
    from helpers.config import load_profile
    from helpers.models import load_model, load_tokenizer, model_source
    from helpers.pipeline import get_sft_model
    from helpers.training import prepare_for_dpo

    load_before = os.getloadavg()[0]
    report: dict = {"profile": profile_name, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    echo("imports (fresh interpreters)…")
    report["import_seconds"] = import_seconds()
    profile = load_profile(profile_name)
    stages: dict[str, float] = {}
    if profile.name == "tiny":
        from helpers.tiny_model import build_tiny_model

        with tempfile.TemporaryDirectory() as scratch:
            _, stages["tiny_build"] = _timed(build_tiny_model, Path(scratch) / "tiny")
    model_dir = Path(model_source(profile))
    (tokenizer, model), stages["model_load"] = _timed(lambda: (load_tokenizer(profile), load_model(profile)))
    rows = data.load_homework(languages=profile.languages)
    prompts = [r["prompt"] for r in data.load_test_prompts(languages=profile.languages)][:n_prompts]
    echo("generation…")
    report["generation"] = generation(profile, model, tokenizer, prompts)
    echo("measuring…")
    report["measuring"] = measuring(profile, model, tokenizer, rows[:48])
    echo("training steps…")
    with tempfile.TemporaryDirectory() as cache:
        if profile.run_sft:  # trained afresh (into a scratch cache), so its time is the real one
            (start, _, sft_dir), stages["sft_train"] = _timed(get_sft_model, profile, rows, 0, True, Path(cache))
        else:
            (start, sft_dir), stages["model_load_trainable"] = _timed(
                lambda: (load_model(profile, trainable=True), None))
        start = prepare_for_dpo(start, profile)
        report["training_steps"] = training_steps(profile, tokenizer, rows, start,
                                                  sft_dir if profile.load_in_4bit else None)
        if profile.precompute_ref_log_probs:
            report["reference_pass"] = reference_pass(profile, start, tokenizer, rows)
    echo("a whole run…")
    runs = run_command_seconds(profile, model_dir)
    report["run_command"] = runs
    if stance_seeds:
        from helpers.bench_runs import path_stances

        echo(f"stance figures over {stance_seeds} seeds, today's path and the earlier one…")
        report["path_stances"] = path_stances(profile, model_dir, tuple(range(stance_seeds)), echo=echo)
    report["stage_seconds"] = {k: round(v, 2) for k, v in stages.items()}
    report["peak_rss_mb"] = {"this process": own_peak_mb(),
                             "a whole run, alone": max(run["peak_rss_mb"] for run in runs.values())}
    report["load_average"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    write_json_atomic(Path(out_dir) / "bench.json", report)
    return report


def bench_table(report: dict):
    """bench.json as one two-column table for printing."""
    import pandas as pd

    rows = {f"import: {k} (s)": v for k, v in report["import_seconds"].items()}
    eager = report["import_seconds"]["the same, training libraries imported eagerly"]
    lazy = report["import_seconds"]["training notebook (import helpers.pipeline)"]
    rows["import: eager ÷ lazy"] = round(eager / lazy, 2)
    for name, entry in report["training_steps"].items():
        rows[f"{name} (s/step)"] = entry["seconds_per_step"]
        if entry.get("ratio") not in (None, 1.0):
            rows[f"{name}: ratio"] = entry["ratio"]
    gen = report["generation"]
    rows[f"generation: {gen['prompts']} prompts batched / one by one (s)"] = (
        f"{gen['batched_seconds']} / {gen['one_by_one_seconds']}")
    rows["generation: tokens/s batched"] = gen["tokens_per_second_batched"]
    rows["generation: same greedy answers"] = gen["same_answers"]
    if "speedup_bf16_vs_fp32" in gen:
        rows["generation under bf16 autocast (not used): tokens/s"] = gen["tokens_per_second_bf16"]
        rows["generation under bf16 autocast: ÷ fp32 tokens/s"] = gen["speedup_bf16_vs_fp32"]
        rows["generation under bf16 autocast: answers equal to fp32's"] = (
            f"{gen['bf16_same_answers_as_fp32']}/{gen['prompts']}")
        rows["generation under bf16 autocast: batched equal to one by one"] = (
            f"{gen['bf16_batched_same_as_one_by_one']}/{gen['prompts']}")
    measured = report.get("measuring", {})
    rows[f"measuring: {measured.get('rows')} held-out rows' log-probs (s)"] = measured.get("seconds")
    if "speedup_bf16_vs_fp32" in measured:
        rows["measuring: fp32 (s)"] = measured["fp32_seconds"]
        rows["measuring: fp32 ÷ bf16 autocast seconds"] = measured["speedup_bf16_vs_fp32"]
        rows["measuring: rows preferring the same answer as fp32"] = measured["same_preferred_share"]
        rows["measuring: largest change of a support−oppose gap (nats)"] = measured["max_gap_change_nats"]
    ref = report.get("reference_pass")
    if ref:
        rows[f"DPO reference pass, batch {ref['batch']} / {ref['training_batch']} (s)"] = (
            f"{ref['seconds']} / {ref['training_batch_seconds']}")
        rows["DPO reference pass: training batch ÷ larger batch (seconds)"] = ref["speedup"]
    for name, run in report["run_command"].items():
        rows[f"whole run, {name} (s)"] = run["seconds"]
        if "speedup" in run:
            rows[f"whole run, {name.rsplit(',', 1)[0]}: earlier path ÷ today's (seconds)"] = run["speedup"]
        rows[f"whole run, {name}: stages (s)"] = " · ".join(f"{k} {v:.0f}" for k, v in run["stages"].items())
    rows.update({f"{k} (s)": v for k, v in report["stage_seconds"].items()})
    rows.update({f"peak memory, {k} (MB)": v for k, v in report["peak_rss_mb"].items()})
    rows["torch threads"] = report["torch_threads"]
    rows["load average before / after"] = f"{report['load_average']['before']} / {report['load_average']['after']}"
    return pd.Series(rows, name="value").to_frame()
