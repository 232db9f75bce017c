"""Whole `run` commands measured from outside, each in a fresh interpreter: seconds, peak memory, and whether the faster
path changes what a run shows (the stance figures of today's path against the earlier one, over seeds, side by
side)."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.files import read_json

# What a run shows about stance, compared between the two precisions (DPO stage of metrics.json)
STANCE_FIGURES = ("generated_support_rate", "pair_accuracy", "support_rate", "repetition", "ended_rate")


def timed(func, *args, **kwargs):
    """(func's value, its wall seconds)."""
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
PEAK_WRAPPER = ("import atexit, runpy, sys; from helpers.bench_runs import _write_own_peak; "
                "atexit.register(_write_own_peak, sys.argv.pop(1)); runpy.run_module('helpers', run_name='__main__')")


def linked_cache(scratch: Path, model_dir: Path) -> Path:
    """An empty cache folder in scratch with the (already built or converted) model linked in, so it is not counted."""
    cache = Path(scratch) / "cache"
    cache.mkdir(exist_ok=True)
    if not (cache / model_dir.name).exists():
        (cache / model_dir.name).symlink_to(model_dir, target_is_directory=True)
    return cache


FP32 = {"DPO_CPU_BF16": "off"}


def earlier_path(profile) -> dict[str, str]:
    """The switches that turn every speed-up off: the path they replaced (fp32 on the CPU, SDPA attention and TRL's
    LM head over every position in training, the base model measured in every run, the reference pass in
    training-sized batches)."""
    from helpers.cpu_training import SWITCHES

    return {**FP32, **{switch: "off" for switch in SWITCHES.values()}, "DPO_MEASURE_CACHE": "off",
            "DPO_REF_BATCH": str(profile.batch_size)}


def timed_run(profile_name: str, cache: Path, out: Path, switches: dict | None = None, ratio: float = 1.0,
              seed: int = 0, beta: float | None = None) -> dict:
    """One `python -m helpers run` in a fresh interpreter: seconds, its stage timings, its peak memory, its metrics.
    switches: environment variables to set (FP32: DPO_CPU_BF16=off, the path CPU bf16 autocast replaced)."""
    env = dict(os.environ, DPO_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **(switches or {}))
    peak = out.with_name(out.name + ".peak")
    command = [sys.executable, "-c", PEAK_WRAPPER, str(peak), "run", "--profile", profile_name,
               "--support-ratio", str(ratio), "--seed", str(seed), "--out", str(out),
               *(["--beta", str(beta)] if beta is not None else [])]
    _, seconds = timed(subprocess.run, command, check=True, env=env, capture_output=True)
    metrics = read_json(out / "metrics.json")
    return {"seconds": round(seconds, 1), "stages": metrics["timings"], "peak_rss_mb": float(peak.read_text()),
            "precision": metrics["environment"]["precision"], "dpo": metrics["stages"]["dpo"]}


def run_command_seconds(profile, model_dir: Path) -> dict[str, dict]:
    """`python -m helpers run` end to end in fresh interpreters, side by side: today's path and the earlier one
    (earlier_path), each first on an empty cache (base measured, SFT trained) and then again with another β (the
    tweak-and-rerun case: SFT from the cache, and on today's path the base measurement too)."""
    report: dict[str, dict] = {}
    for path, switches in (("today", {}), ("earlier", earlier_path(profile))):
        with tempfile.TemporaryDirectory() as scratch:
            cache = linked_cache(Path(scratch), model_dir)
            for case, beta in (("first run", None), ("rerun, another beta", profile.beta * 2)):
                run = timed_run(profile.name, cache, Path(scratch) / case.split(",")[0].replace(" ", "-"), switches,
                                beta=beta)
                report[f"{case}, {path}"] = {k: v for k, v in run.items() if k != "dpo"}
    for case in ("first run", "rerun, another beta"):
        report[f"{case}, today"]["speedup"] = round(report[f"{case}, earlier"]["seconds"]
                                                    / report[f"{case}, today"]["seconds"], 2)
    return report


TODAY, EARLIER = "today's path", "earlier path (every switch off)"


def path_stances(profile, model_dir: Path, seeds: tuple[int, ...] = (0, 1, 2), ratios: tuple[float, ...] = (1.0, 0.0),
                 echo=print) -> list[dict]:
    """Whole runs of every seed and support ratio on today's path and on the earlier one (earlier_path: fp32, every
    speed-up off), each path with its own cache (its own SFT stage per seed, shared by the ratios): one row per run,
    its stance figures and seconds."""
    rows: list[dict] = []
    for path, switches in ((TODAY, None), (EARLIER, earlier_path(profile))):
        with tempfile.TemporaryDirectory() as scratch:
            cache = linked_cache(Path(scratch), model_dir)
            for seed in seeds:
                for ratio in ratios:
                    run = timed_run(profile.name, cache, Path(scratch) / f"seed-{seed}_ratio-{ratio:g}", switches,
                                    ratio, seed)
                    rows.append({"seed": seed, "support_ratio": ratio, "path": path, "precision": run["precision"],
                                 "seconds": run["seconds"], **{k: run["dpo"].get(k) for k in STANCE_FIGURES}})
                    echo(f"  seed {seed}, ratio {ratio:g}, {path}: {run['seconds']} s")
    return rows


def stance_spread_table(rows: list[dict]):
    """Per support ratio and figure: each path's mean and its seeds' values, and whether today's mean lies within the
    earlier path's seed range (the seed spread)."""
    import pandas as pd

    table = []
    for ratio in sorted({r["support_ratio"] for r in rows}, reverse=True):
        for figure in STANCE_FIGURES:
            by = {p: [r[figure] for r in rows if r["support_ratio"] == ratio and r["path"] == p]
                  for p in dict.fromkeys(r["path"] for r in rows)}
            entry = {"support_ratio": ratio, "figure": figure}
            for path, values in by.items():
                entry[f"{path}: mean"] = round(statistics.mean(values), 3)
                entry[f"{path}: seeds"] = " / ".join(f"{v:.3f}" for v in values)
            if by.get(EARLIER) and by.get(TODAY):
                entry["within the earlier path's seed range"] = (
                    min(by[EARLIER]) <= statistics.mean(by[TODAY]) <= max(by[EARLIER]))
            table.append(entry)
    return pd.DataFrame(table)
