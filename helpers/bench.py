"""`python -m helpers bench`: what a run costs, each choice measured side by side with the path it replaced, in one
run: imports (fresh interpreters), seconds per SFT and DPO step, generation, a whole `run` command, peak memory."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.files import write_json_atomic

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


def _timed(func, *args, **kwargs):
    start = time.perf_counter()
    value = func(*args, **kwargs)
    return value, time.perf_counter() - start


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory of this process (or its finished children), in MB (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(who).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def own_peak_mb() -> float:
    """This process's own peak resident memory in MB: VmHWM where /proc exists, else ru_maxrss.

    Not ru_maxrss of the children: Linux carries the parent's high-water mark into a child at exec, so a small run
    started from a big bench process would report the bench's peak as its own.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return peak_rss_mb()


def _write_own_peak(path: str) -> None:
    Path(path).write_text(str(own_peak_mb()))


# `python -c PEAK_WRAPPER PEAK_FILE run ...`: the CLI, then its own peak memory written to PEAK_FILE at exit.
PEAK_WRAPPER = ("import atexit, runpy, sys; from helpers.bench import _write_own_peak; "
                "atexit.register(_write_own_peak, sys.argv.pop(1)); runpy.run_module('helpers', run_name='__main__')")


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


def step_seconds(stage: str, model, tokenizer, examples, profile, threads: int | None = None, epochs: float = 1,
                 kept_adapter: Path | None = None, **overrides) -> tuple[float, object]:
    """Median seconds per optimizer step of an SFT or DPO stage (its first, warm-up step left out), and the model
    with the stage's adapter taken off again (the start model, for the next measurement)."""
    import torch

    from helpers.training import release_adapters, train_dpo, train_sft

    before, timer = torch.get_num_threads(), _step_timer()
    try:
        if threads:
            torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as scratch:
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
        for name, change in {"SFT, the profile's settings": {},
                             f"SFT, {_other_threads()} torch threads": dict(threads=_other_threads())}.items():
            seconds, _ = step_seconds("sft", load_model(profile, trainable=True), tokenizer, examples, profile,
                                      epochs=sft_epochs, **change)
            report[name] = {"seconds_per_step": round(seconds, 3)}
    for stage in ("DPO", "SFT"):
        chosen = report.get(f"{stage}, the profile's settings")
        for name, entry in report.items():
            if chosen and name.startswith(stage):
                entry["ratio"] = round(entry["seconds_per_step"] / chosen["seconds_per_step"], 2)
    return report


def generation(profile, model, tokenizer, prompts: list[str]) -> dict:
    """Greedy answers in one left-padded batch against one prompt at a time: seconds, tokens per second, same answers."""
    from helpers.generation import generate_one_by_one, generate_with_ends

    (batched, _), batched_seconds = _timed(generate_with_ends, model, tokenizer, prompts, profile.system_prompt,
                                           profile.max_new_tokens, batch_size=len(prompts), progress=False)
    looped, looped_seconds = _timed(generate_one_by_one, model, tokenizer, prompts, profile.system_prompt,
                                    profile.max_new_tokens)
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in batched)
    return {"prompts": len(prompts), "new_tokens": tokens, "batched_seconds": round(batched_seconds, 2),
            "one_by_one_seconds": round(looped_seconds, 2),
            "tokens_per_second_batched": round(tokens / batched_seconds, 1),
            "speedup_batched_vs_one_by_one": round(looped_seconds / batched_seconds, 2),
            "same_answers": batched == looped}


def run_command_seconds(profile_name: str, model_dir: Path, cached_sft: bool = True) -> dict[str, dict]:
    """`python -m helpers run` end to end in a fresh interpreter, with an empty SFT cache (then, if cached_sft, again
    with it filled). The model folder is linked into the temporary cache, so building it is not counted."""
    from helpers.files import read_json

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        cache.mkdir()
        (cache / model_dir.name).symlink_to(model_dir, target_is_directory=True)
        env = dict(os.environ, DPO_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        for name in ("sft_not_cached", "sft_cached")[:2 if cached_sft else 1]:
            out = Path(scratch) / name
            peak = Path(scratch) / f"{name}.peak"
            command = [sys.executable, "-c", PEAK_WRAPPER, str(peak), "run", "--profile", profile_name,
                       "--support-ratio", "1", "--out", str(out)]
            _, seconds = _timed(subprocess.run, command, check=True, env=env, capture_output=True)
            results[name] = {"seconds": round(seconds, 1), "stages": read_json(out / "metrics.json")["timings"],
                             "peak_rss_mb": float(peak.read_text())}
    return results


def run_bench(profile_name: str, out_dir: Path, n_prompts: int = 24, echo=print) -> dict:
    """Measure, write out_dir/bench.json, and return it."""
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
    echo("training steps…")
    with tempfile.TemporaryDirectory() as cache:
        if profile.run_sft:  # trained afresh (into a scratch cache), so its time is the real one
            (start, _, sft_dir), stages["sft_train"] = _timed(get_sft_model, profile, rows, 0, True, Path(cache))
        else:
            (start, sft_dir), stages["model_load_trainable"] = _timed(
                lambda: (load_model(profile, trainable=True), None))
        report["training_steps"] = training_steps(profile, tokenizer, rows, prepare_for_dpo(start, profile),
                                                  sft_dir if profile.load_in_4bit else None)
    echo("a whole run…")
    runs = run_command_seconds(profile.name, model_dir, cached_sft=profile.name == "tiny")
    report["run_command"] = runs
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
    for name, run in report["run_command"].items():
        rows[f"whole run, {name.replace('_', ' ')} (s)"] = run["seconds"]
    rows.update({f"{k} (s)": v for k, v in report["stage_seconds"].items()})
    rows.update({f"peak memory, {k} (MB)": v for k, v in report["peak_rss_mb"].items()})
    rows["torch threads"] = report["torch_threads"]
    rows["load average before / after"] = f"{report['load_average']['before']} / {report['load_average']['after']}"
    return pd.Series(rows, name="value").to_frame()
