"""`python -m helpers bench`: measured side by side in one process — batched vs one-by-one generation, DPO with
and without precomputed reference log-probs, the time of every pipeline stage, and peak memory."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.files import write_json_atomic


def _timed(func, *args, **kwargs):
    start = time.perf_counter()
    value = func(*args, **kwargs)
    return value, time.perf_counter() - start


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _time_run_command(profile_name: str) -> dict[str, dict]:
    """`python -m helpers run` end to end in a fresh interpreter: first with an empty SFT cache, then with it filled.

    The tiny model is copied into the temporary cache, so its build is not counted (it is timed as tiny_build).
    """
    import os
    import shutil

    from helpers.files import read_json
    from helpers.tiny_model import tiny_model_path

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        shutil.copytree(tiny_model_path(), cache / tiny_model_path().name)
        env = dict(os.environ, DPO_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        for name in ("sft_not_cached", "sft_cached"):
            out = Path(scratch) / name
            command = [sys.executable, "-m", "helpers", "run", "--profile", profile_name, "--support-ratio", "1",
                       "--out", str(out)]
            _, seconds = _timed(subprocess.run, command, check=True, env=env, capture_output=True)
            results[name] = {"seconds": seconds, "timings": read_json(out / "metrics.json")["timings"]}
    return results


def run_bench(profile_name: str, out_dir: Path, n_prompts: int = 24, echo=print) -> dict:
    """Measure, write out_dir/bench.json, and return it."""
    stages: dict[str, float] = {}
    _, stages["import"] = _timed(subprocess.run, [sys.executable, "-c", "import helpers.pipeline"], check=True)
    from helpers import data
    from helpers.config import load_profile
    from helpers.evaluation import stance_logps, train_stance_judge
    from helpers.generation import generate_answers, generate_one_by_one
    from helpers.models import copy_model, load_model, load_tokenizer
    from helpers.pipeline import get_sft_model
    from helpers.training import prepare_for_dpo, train_dpo

    profile = load_profile(profile_name)
    if profile.name == "tiny":
        from helpers.tiny_model import build_tiny_model

        with tempfile.TemporaryDirectory() as scratch:
            _, stages["tiny_build"] = _timed(build_tiny_model, Path(scratch) / "tiny")
    (tokenizer, model), stages["model_load"] = _timed(lambda: (load_tokenizer(profile), load_model(profile)))
    rows, eval_rows = data.load_homework(), data.load_eval_rows()
    prompts = ([r["prompt"] for r in data.load_test_prompts()] + [r["prompt"] for r in eval_rows])[:n_prompts]

    batched, stages["generate_batched"] = _timed(generate_answers, model, tokenizer, prompts, profile.system_prompt,
                                                 profile.max_new_tokens, batch_size=len(prompts), progress=False)
    looped, stages["generate_one_by_one"] = _timed(generate_one_by_one, model, tokenizer, prompts,
                                                   profile.system_prompt, profile.max_new_tokens)
    _, stages["eval_logps"] = _timed(stance_logps, model, tokenizer, eval_rows, profile.system_prompt)
    _, stages["eval_judge_train"] = _timed(train_stance_judge, rows)

    with tempfile.TemporaryDirectory() as cache:
        (sft_model, _, _), stages["sft_train"] = _timed(get_sft_model, profile, rows, 0, True, Path(cache))
        _, stages["sft_load_cached"] = _timed(get_sft_model, profile, rows, 0, False, Path(cache))
    start_model = prepare_for_dpo(sft_model, profile)
    pairs = data.make_preference_pairs(rows, 1.0)
    dpo = {}
    for precompute in (False, True):
        with tempfile.TemporaryDirectory() as scratch:
            result, seconds = _timed(train_dpo, copy_model(start_model), tokenizer, pairs, profile, scratch,
                                     num_epochs=1, precompute_ref_log_probs=precompute)
        dpo[precompute] = {"seconds": seconds, "train_seconds": result.seconds,
                           "final_loss": result.final_loss}
    stages["dpo_1_epoch"] = dpo[False]["seconds"]
    stages["dpo_1_epoch_precomputed"] = dpo[True]["seconds"]

    runs = _time_run_command(profile.name) if profile.name == "tiny" else {}
    stages.update({f"run_command_{k}": v["seconds"] for k, v in runs.items()})

    report = {
        "profile": profile.name,
        "prompts": len(prompts),
        "generation": {"same_answers": batched == looped,
                       "speedup_batched_vs_one_by_one": round(stages["generate_one_by_one"] / stages["generate_batched"], 2)},
        "dpo_precompute": {
            "speedup_precomputed_vs_live_reference": round(dpo[False]["seconds"] / dpo[True]["seconds"], 2),
            "prepass_and_setup_seconds": round(dpo[True]["seconds"] - dpo[True]["train_seconds"], 2),
            "same_final_loss": abs(dpo[False]["final_loss"] - dpo[True]["final_loss"]) < 1e-5,
        },
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
        "run_command_stage_seconds": {k: v["timings"] for k, v in runs.items()},
        "peak_rss_mb": peak_rss_mb(),
    }
    write_json_atomic(Path(out_dir) / "bench.json", report)
    return report


def bench_table(report: dict):
    """bench.json as a two-column table for printing."""
    import pandas as pd

    rows = {f"{k} (s)": v for k, v in report["stage_seconds"].items()}
    rows["generation speedup, batched vs one-by-one"] = report["generation"]["speedup_batched_vs_one_by_one"]
    rows["generation: same greedy answers"] = report["generation"]["same_answers"]
    rows["DPO speedup, precomputed reference"] = report["dpo_precompute"]["speedup_precomputed_vs_live_reference"]
    rows["DPO: same final loss"] = report["dpo_precompute"]["same_final_loss"]
    rows["peak resident memory (MB)"] = report["peak_rss_mb"]
    return pd.Series(rows, name="value").to_frame()


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


def dpo_step_seconds(profile, tokenizer, rows: list[dict], steps: int = 4, threads: int | None = None,
                     **overrides) -> float:
    """Median seconds per DPO step (the first, warm-up step left out) from a fresh base model, `steps` + 1 steps."""
    import statistics

    import torch

    from helpers import data
    from helpers.models import load_model
    from helpers.training import train_dpo

    pairs = data.make_preference_pairs(rows[:profile.batch_size * profile.grad_accum * (steps + 1)], 1.0,
                                       system_prompt=profile.system_prompt)
    before = torch.get_num_threads()
    timer = _step_timer()
    try:
        if threads:
            torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as scratch:
            train_dpo(load_model(profile, trainable=True), tokenizer, pairs, profile, scratch, num_epochs=1,
                      callbacks=[timer], **overrides)
    finally:
        torch.set_num_threads(before)
    return statistics.median(timer.times[1:])


def dpo_speed_options(profile, tokenizer, rows: list[dict], steps: int = 4) -> dict[str, dict]:
    """Seconds per DPO step with the profile's settings, then with one thing changed at a time, side by side; ratio is
    the alternative's seconds over the profile's (above 1: the profile's choice is faster)."""
    import torch

    threads = torch.get_num_threads()
    alternatives = {
        "precomputed reference log-probs (its pre-pass not counted)": dict(precompute_ref_log_probs=True),
        "the template's default system prompt (vs the profile's)": dict(profile=profile.replace(system_prompt=None)),
        "LoRA on all linear layers (vs the profile's targets)": dict(profile=profile.replace(
            lora_target_modules="all-linear")),
        f"{2 if threads == 1 else 1} torch threads (vs {threads})": dict(threads=2 if threads == 1 else 1),
    }
    chosen = dpo_step_seconds(profile, tokenizer, rows, steps)
    report = {"profile's settings": {"seconds_per_step": round(chosen, 2), "ratio": 1.0}}
    for name, change in alternatives.items():
        variant = dict(change)
        seconds = dpo_step_seconds(variant.pop("profile", profile), tokenizer, rows, steps, **variant)
        report[name] = {"seconds_per_step": round(seconds, 2), "ratio": round(seconds / chosen, 2)}
    return report
