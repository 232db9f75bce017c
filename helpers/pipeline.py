"""The whole flow, base → SFT → DPO → measured, as functions the notebooks call one by one and `run` calls in turn.
The SFT stage is cached by a hash of its settings, so every notebook, run and sweep trains it once. Run folders and
their settings live in helpers.runs; the names the notebooks use are importable from here too."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from helpers import data
from helpers.measure_cache import read_stage_outputs, save_stage_outputs, stage_cache_file, stage_settings
from helpers.config import CACHE_DIR, OUTPUTS_DIR, Profile
from helpers.cpu_training import cpu_training_kernels
from helpers.evaluation import (answer_fluency, generation_metrics, implicit_reward_margins, implicit_reward_metrics,
                                judge_accuracy, judge_stances, logp_gap, repetition_shares, stance_logps,
                                support_rate, train_stance_judge)
from helpers.files import read_json, write_json_atomic
from helpers.folders import is_complete, keep_if_complete, mark_complete, staged_dir
from helpers.generation import generate_with_ends
from helpers.hardware import cpu_bf16_for, precision_flags, precision_name
from helpers.killpoints import kill_point
from helpers.models import load_model, load_tokenizer, model_origin
from helpers.notebook import set_seed
from helpers.runs import (COMPLETE_MARKER, Inputs, RunConfig, check_out_dir,  # noqa: F401 (also used from here)
                          check_resume, check_run_request, check_writable, hold_folder, is_main_process, is_same_run,
                          keep_earlier_run, list_runs, load_inputs, load_run, make_dir, make_room, metrics_table,
                          replace_dir, resolve_profile)
from helpers.holdout import holdout_plan, kfold_tables, rest_tables
from helpers.homework import model_record
from helpers.row_values import answer_rows, probe_metrics, row_intervals, save_row_values, stage_tables
from helpers.training import TrainResult, prepare_for_dpo, release_adapters, train_dpo, train_sft

# --- several processes (accelerate launch) ---------------------------------------------------------------


def wait_for_everyone() -> None:
    """A barrier across data-parallel processes; nothing in a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# --- stage measurement ---------------------------------------------------------------------------------------


@dataclass
class StageResult:
    """One stage's measurements, its answers to the test prompts, and the per-row values behind them (saved in the
    run folder's per_row.json): log-probs on the held-out rows and on the probes, and one row per answer."""

    metrics: dict
    answers: list[str]
    logps: pd.DataFrame
    probes: pd.DataFrame = field(default_factory=pd.DataFrame)
    answer_rows: pd.DataFrame = field(default_factory=pd.DataFrame)


def model_outputs(model: torch.nn.Module, tokenizer, inputs: Inputs, profile: Profile,
                  progress: bool = False) -> dict:
    """What a model gives for the inputs: log-probs on the held-out rows and on the probes, greedy answers to the
    test prompts and whether each ended by itself."""
    table = stance_logps(model, tokenizer, inputs.eval_rows, profile.system_prompt) if inputs.eval_rows else None
    probes = pd.DataFrame()
    if inputs.probe_rows:
        probes = stance_logps(model, tokenizer, inputs.probe_rows, profile.system_prompt)
        probes.insert(1, "topic", [r["topic"] for r in inputs.probe_rows])
    kill_point("measure")  # the crash test's; nothing unless DPO_KILL_AT is set
    answers, ended = generate_with_ends(model, tokenizer, [r["prompt"] for r in inputs.test_rows],
                                        profile.system_prompt, max_new_tokens=profile.max_new_tokens,
                                        batch_size=profile.gen_batch_size, progress=progress)
    return {"logps": table if table is not None else pd.DataFrame(), "probes": probes, "answers": answers,
            "ended": ended}


def stage_result(outputs: dict, inputs: Inputs, judge) -> StageResult:
    """A stage's measurements from its model's outputs: support_rate and logp_gap, the probes', and the answers'
    stance (the judge) and form."""
    table, probes, answers, ended = outputs["logps"], outputs["probes"], outputs["answers"], outputs["ended"]
    metrics = {**({"support_rate": support_rate(table), "logp_gap": logp_gap(table)} if not table.empty else {}),
               **generation_metrics(judge, answers, ended), **probe_metrics(probes)}
    rows = answer_rows(inputs.test_rows, judge_stances(judge, answers), answers, ended, repetition_shares(answers))
    return StageResult(metrics=metrics, answers=answers, logps=table, probes=probes, answer_rows=rows)


def measure_stage(model: torch.nn.Module, tokenizer, inputs: Inputs, profile: Profile, judge,
                  progress: bool = False) -> StageResult:
    """support_rate on the held-out rows and on the out-of-topic probes, plus the greedy answers to the test prompts
    and their stance/form."""
    if not is_main_process():  # evaluation runs once, on the main process
        return StageResult(metrics={}, answers=[], logps=pd.DataFrame())
    return stage_result(model_outputs(model, tokenizer, inputs, profile, progress), inputs, judge)


def add_fluency(stages: dict[str, StageResult], profile: Profile, tokenizer, inputs: Inputs,
                base_model: torch.nn.Module | None = None) -> None:
    """Add each stage's `fluency`: the untrained base model's mean per-token log-prob of that stage's answers.

    base_model: the base, or a PEFT model whose adapters sit on the untouched base (no SFT stage, or a 4-bit SFT
    adapter): it is read with its adapters switched off, so no second copy of the weights is loaded. Without it the
    base is loaded (an SFT stage folded into the weights leaves no base in memory).
    """
    if not is_main_process():
        return
    model = base_model if base_model is not None else load_model(profile)
    prompts = [r["prompt"] for r in inputs.test_rows]
    with adapters_off(model):
        for stage in stages.values():
            values = answer_fluency(model, tokenizer, prompts, stage.answers, profile.system_prompt)
            stage.metrics["fluency"] = float(pd.Series(values).mean())  # NaN (empty answers) left out
            if not stage.answer_rows.empty:
                stage.answer_rows["fluency"] = values


def adapters_off(model: torch.nn.Module):
    """A context in which a PEFT model runs its base weights (every adapter off); nothing for a plain model."""
    import contextlib

    return model.disable_adapter() if hasattr(model, "disable_adapter") and hasattr(model, "peft_config") \
        else contextlib.nullcontext()


def measure_base(profile: Profile, inputs: Inputs, judge, model: torch.nn.Module | None = None,
                 sft_dir: Path | None = None) -> StageResult:
    """The untrained model (or with sft_dir, the SFT model from that cache folder) measured like any stage: read from
    the measurement cache (helpers.measure_cache) when this model, precision and data were measured before, else
    measured (model, or the base loaded and freed again) and kept."""
    if not is_main_process():
        return StageResult(metrics={}, answers=[], logps=pd.DataFrame())
    settings = stage_settings(profile, inputs, sft_dir)
    path = stage_cache_file(settings)
    outputs = read_stage_outputs(path, settings)
    if outputs is None:
        outputs = model_outputs(model if model is not None else load_model(profile), load_tokenizer(profile), inputs,
                                profile)
        save_stage_outputs(path, settings, outputs)
    return stage_result(outputs, inputs, judge)


def add_reward_metrics(stage: StageResult, reference: StageResult, preferred: list[str], beta: float) -> None:
    """Add pair_accuracy and mean_margin of a stage against the reference stage (SFT, or base when SFT is off)."""
    if reference.logps.empty:  # nothing was held out to measure on
        return
    stage.metrics.update(implicit_reward_metrics(stage.logps, reference.logps, preferred, beta))
    stage.logps["margin"] = implicit_reward_margins(stage.logps, reference.logps, preferred, beta)  # per_row.json


def eval_preferences(inputs: Inputs, config: RunConfig) -> list[str]:
    """Which answer each held-out row prefers under the run's support_ratio rule (its trained direction)."""
    return preferences_of(inputs.eval_rows, config)


def preferences_of(rows: list[dict], config: RunConfig) -> list[str]:
    """Which answer each of these rows prefers under the run's support_ratio and split rule ([] for no rows)."""
    if not rows:
        return []
    pairs = data.make_preference_pairs(rows, config.support_ratio, spread=config.spread, split_rule=config.split_rule)
    return list(pairs["preferred"])


# --- SFT, cached --------------------------------------------------------------------------------------------


def sft_settings(profile: Profile, train_rows: list[dict], seed: int) -> dict:
    """Everything the SFT stage depends on; its hash names the cache folder."""
    digest = hashlib.sha256(json.dumps(train_rows, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:12]
    used = profile.replace(cpu_bf16=cpu_bf16_for(profile.cpu_bf16))  # what this machine trains in (CPU bf16 or not)
    return {"profile": asdict(used), "train_rows": digest, "seed": seed, "version": 1,
            "kernels": cpu_training_kernels()}


def sft_cache_dir(settings: dict, cache_dir: Path = CACHE_DIR) -> Path:
    """The cache folder of one SFT setting."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"sft-{settings['profile']['name']}-{key}"


def get_sft_model(profile: Profile, train_rows: list[dict], seed: int = 0, retrain: bool = False,
                  cache_dir: Path = CACHE_DIR) -> tuple[torch.nn.Module, TrainResult | None, Path]:
    """The SFT model (base + SFT adapter): loaded from the cache, or trained on both answers of every row and cached.

    One process at a time trains a setting (another waits for it); a cache folder that is not complete is set aside
    and trained again, resuming from the newest complete SFT checkpoint.
    """
    folder = sft_cache_dir(sft_settings(profile, train_rows, seed), cache_dir)
    if retrain or not is_complete(folder):
        with hold_folder(folder, wait=float("inf")):
            if retrain or not (keep_if_complete(folder) if is_main_process() else is_complete(folder)):
                return train_sft_cache(folder, profile, train_rows, seed, resume=not retrain)
    # A 4-bit profile trains its SFT adapter further in DPO (it cannot be folded into 4-bit weights): load it trainable
    model = load_model(profile, adapter_dir=folder, trainable=profile.load_in_4bit)
    cached = read_json(folder / "log_history.json")
    return model, TrainResult(model=model, log_history=cached["log_history"], seconds=cached["seconds"]), folder


def train_sft_cache(folder: Path, profile: Profile, train_rows: list[dict], seed: int,
                    resume: bool = True) -> tuple[torch.nn.Module, TrainResult, Path]:
    """Train the SFT stage (resuming from its newest complete checkpoint) and write it to its cache folder."""
    set_seed(seed)
    tokenizer = load_tokenizer(profile)
    model = load_model(profile, trainable=True)
    examples = data.make_sft_examples(train_rows, profile.system_prompt)
    checkpoints = folder.with_name(folder.name + ".checkpoints")  # a killed SFT resumes from here
    result = train_sft(model, tokenizer, examples, profile, checkpoints, seed=seed,
                       checkpoint_every=profile.checkpoint_steps, resume=resume)
    if is_main_process():
        with staged_dir(folder) as staging:  # COMPLETE is written last, then the folder is swapped in
            result.model.save_pretrained(staging, safe_serialization=True)
            kill_point("sft-cache")  # the crash test's; nothing unless DPO_KILL_AT is set
            write_json_atomic(staging / "log_history.json", {"log_history": result.log_history,
                                                             "seconds": result.seconds})
        shutil.rmtree(checkpoints, ignore_errors=True)
    wait_for_everyone()
    result.model.eval()
    return result.model, result, folder


def get_start_model(profile: Profile, train_rows: list[dict], seed: int = 0
                    ) -> tuple[torch.nn.Module, TrainResult | None, Path | None]:
    """Where DPO starts: the SFT model (cached) when the profile runs SFT, else the base model (no SFT result/folder)."""
    if profile.run_sft:
        return get_sft_model(profile, train_rows, seed)
    return load_model(profile, trainable=True), None, None


# --- saved runs ---------------------------------------------------------------------------------------------


def environment_facts(profile: Profile) -> dict:
    """Library versions and hardware, recorded with every run."""
    import peft
    import transformers
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "peft": peft.__version__,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            # what the run computed in: export merges into the same type (and a CPU autocast run's check generates so)
            "precision": precision_name(precision_flags(cpu_bf16_for(profile.cpu_bf16))),
            # CPU training speed-ups (helpers.cpu_training): what trained this run, for a side-by-side comparison
            "training_kernels": cpu_training_kernels(),
            "world_size": int(os.environ.get("WORLD_SIZE", "1"))}


def save_answers(name: str, rows: list[dict], answers: list[str], profile: Profile,
                 folder: Path = OUTPUTS_DIR / "answers") -> Path:
    """Save one stage's answers to the test prompts as JSON (id, prompt, answer), atomically."""
    records = [{"id": r["id"], "prompt": r["prompt"], "answer": a} for r, a in zip(rows, answers)]
    return write_json_atomic(Path(folder) / f"{profile.name}_{name}.json", records)


def save_run(out_dir: Path, config: RunConfig, inputs: Inputs, stages: dict[str, StageResult],
             logs: dict[str, list[dict]], judge_acc: float, dpo_model: torch.nn.Module | None = None,
             timings: dict[str, float] | None = None, sft_dir: Path | None = None,
             resumed_from: str | None = None, extra: dict | None = None) -> dict:
    """Write metrics.json, the answers (also under the homework's file name), the logs and the adapter; COMPLETE last,
    listing every file with its size. Refused if another live process holds the folder.

    extra goes into metrics.json as it is (the held-out rows, the split). A homework run writes its course's result
    file (helpers.homework) instead of the generic one.
    """
    with hold_folder(Path(out_dir)):
        return _save_run(make_dir(Path(out_dir)), config, inputs, stages, logs, judge_acc, dpo_model, timings,
                         sft_dir, resumed_from, extra)


def _save_run(out_dir: Path, config: RunConfig, inputs: Inputs, stages: dict[str, StageResult],
              logs: dict[str, list[dict]], judge_acc: float, dpo_model: torch.nn.Module | None,
              timings: dict[str, float] | None, sft_dir: Path | None, resumed_from: str | None,
              extra: dict | None) -> dict:
    """save_run's writes, in order, once the folder is held."""
    (out_dir / COMPLETE_MARKER).unlink(missing_ok=True)
    write_json_atomic(out_dir / "config.json", asdict(config))
    metrics = {
        "config": asdict(config),
        "stages": {name: stage.metrics for name, stage in stages.items()},
        # 95 % over the rows (held-out, probes, answers) of this one seed; per_row.json holds the rows
        "intervals": row_intervals({name: stage_tables(stage) for name, stage in stages.items()},
                                   {name: stage.metrics for name, stage in stages.items()}),
        "judge_heldout_accuracy": judge_acc,
        "n_train_pairs": config.data_size or len(inputs.train_rows),
        "n_eval_rows": len(inputs.eval_rows),
        "n_probe_rows": len(inputs.probe_rows),
        "timings": {k: round(v, 2) for k, v in (timings or {}).items()},
        "resumed_from": resumed_from,  # the DPO checkpoint a --resume continued from
        "model": {**model_record(resolve_profile(config, check_hardware=False), config.homework),
                  "weights": model_origin(resolve_profile(config, check_hardware=False))},  # what really answered
        "environment": environment_facts(resolve_profile(config, check_hardware=False)),
        **(extra or {}),
    }
    answers = [{"id": row["id"], "prompt": row["prompt"], **{name: s.answers[i] for name, s in stages.items()}}
               for i, row in enumerate(inputs.test_rows)]
    homework = [{"id": a["id"], "prompt": a["prompt"], "base_answer": a["base"], "trained_answer": a["dpo"]}
                for a in answers]
    write_json_atomic(out_dir / "answers.json", answers)
    if config.homework:
        from helpers.homework import load_homework_preset

        load_homework_preset(config.homework).write_result(
            out_dir, inputs.test_rows, [a["base"] for a in answers], [a["dpo"] for a in answers], config.num_epoch,
            config.data_size or len(inputs.train_rows), config.support_ratio, config.student_id)
    else:
        write_json_atomic(out_dir / config.answers_file_name(len(inputs.train_rows)), homework)
    write_json_atomic(out_dir / "logs.json", logs)
    save_row_values(out_dir, stages)
    kill_point("save-run")  # the crash test's; nothing unless DPO_KILL_AT is set
    if dpo_model is not None and hasattr(dpo_model, "peft_config"):
        with staged_dir(out_dir / "adapter", marker=None) as staging:  # the run's COMPLETE lists its files
            dpo_model.save_pretrained(staging, safe_serialization=True)
    if sft_dir is not None:  # the SFT adapter under the DPO one: export folds both into the base weights
        with staged_dir(out_dir / "sft_adapter", marker=None) as staging:
            for name in ("adapter_config.json", "adapter_model.safetensors"):
                shutil.copy2(Path(sft_dir) / name, staging / name)
    write_json_atomic(out_dir / "metrics.json", metrics)
    mark_complete(out_dir, skip=("checkpoints",))
    return metrics


# --- the whole pipeline -------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What every DPO run of one profile, data and seed shares: the inputs, the judge, base and SFT measured once, and
    the one start model every run trains its own adapter on (taken off again after the run: see release)."""

    profile: Profile
    tokenizer: object
    inputs: Inputs
    judge: object
    judge_acc: float
    stages: dict[str, StageResult]
    start_model: torch.nn.Module  # the SFT model folded into plain weights, the 4-bit base + SFT adapter, or the base
    logs: dict[str, list[dict]]
    timings: dict[str, float]
    sft_dir: Path | None = None  # the SFT adapter folded into start_model (None: no SFT, or kept as an adapter)
    kept_adapter: Path | None = None  # a 4-bit profile's SFT adapter, which start_model carries (trainable)

    @property
    def base_under_adapters(self) -> bool:
        """True when a trained model with its adapters off is the untrained base (no SFT folded into the weights)."""
        return not self.profile.run_sft or self.kept_adapter is not None

    def release(self, trained: torch.nn.Module) -> None:
        """Take a finished run's adapter off the shared start model, so the next run starts where this one did."""
        self.start_model = release_adapters(trained, self.kept_adapter)


def prepare(config: RunConfig, echo=print) -> Prepared:
    """Load and check the inputs, measure the base model, get the SFT model (cached) and measure it."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    profile = resolve_profile(config)
    inputs = load_inputs(config)
    set_seed(config.seed)
    judge = train_stance_judge(inputs.train_rows, seed=config.seed)
    tokenizer = load_tokenizer(profile)
    if profile.run_sft:
        stages = {"base": measure_base(profile, inputs, judge)}
    else:  # DPO starts from the base model itself: loaded once, measured (or read from the cache), trained
        model = load_model(profile, trainable=True)
        stages = {"base": measure_base(profile, inputs, judge, model)}
    echo(f"base: {stages['base'].metrics}")
    timings["base"] = time.perf_counter() - clock
    logs: dict[str, list[dict]] = {}
    sft_dir = None
    if profile.run_sft:
        clock = time.perf_counter()
        model, sft_result, sft_dir = get_sft_model(profile, inputs.train_rows, config.seed)
        logs["sft"] = sft_result.log_history
        timings["sft"] = time.perf_counter() - clock
        clock = time.perf_counter()
        stages["sft"] = measure_base(profile, inputs, judge, model, sft_dir)  # kept with the SFT cache
        echo(f"sft: {stages['sft'].metrics}")
        timings["eval_sft"] = time.perf_counter() - clock
    held_apart = inputs.eval_rows and inputs.holdout["method"] == "file"  # held-out labelled rows trained the judge
    judge_acc = judge_accuracy(judge, inputs.eval_rows) if held_apart else None
    kept = sft_dir if profile.load_in_4bit else None
    return Prepared(profile, tokenizer, inputs, judge, judge_acc, stages, prepare_for_dpo(model, profile), logs,
                    timings, sft_dir=None if kept else sft_dir, kept_adapter=kept)


def run_dpo(prepared: Prepared, config: RunConfig, out_dir: Path, overwrite: bool = False, echo=print,
            resume: bool = False) -> dict:
    """One DPO run from the prepared start model: train, measure, save the run folder; returns metrics.json's dict.
    The run's adapter is taken off the start model afterwards, so the same Prepared serves many runs."""
    with hold_folder(Path(out_dir)):
        return _run_dpo(prepared, config, Path(out_dir), overwrite, echo, resume)


def _run_dpo(prepared: Prepared, config: RunConfig, out_dir: Path, overwrite: bool, echo, resume: bool) -> dict:
    """run_dpo's steps, once the folder is held."""
    profile, inputs = prepared.profile, prepared.inputs
    pairs = data.make_preference_pairs(inputs.train_rows, config.support_ratio, config.data_size,
                                       spread=config.spread, system_prompt=profile.system_prompt,
                                       split_rule=config.split_rule)
    if is_main_process():
        check_out_dir(Path(out_dir), config, overwrite)
        check_writable(Path(out_dir))
        write_json_atomic(Path(out_dir) / "config.json", asdict(config))
    beta = config.beta if config.beta is not None else profile.beta
    timings = dict(prepared.timings)
    clock = time.perf_counter()
    plan = holdout_plan(config, len(inputs.train_rows)) if config.homework and not config.eval_data else None
    if plan and plan["method"] == "rest" and plan == inputs.holdout:  # every stage was measured on these rows
        plan = None
    measured = None
    if plan and plan["method"] == "kfold":  # before the main run: each fold trains its own adapter on the start model
        def train_fold(fold_pairs, name: str) -> torch.nn.Module:
            set_seed(config.seed)
            return train_dpo(prepared.start_model, prepared.tokenizer, fold_pairs, profile,
                             Path(out_dir) / "checkpoints" / name, beta=beta, num_epochs=config.num_epoch,
                             learning_rate=config.learning_rate, seed=config.seed).model

        measured = kfold_tables(plan, inputs.train_rows, pairs, prepared.tokenizer, profile.system_prompt,
                                train_fold, prepared.release)
        timings["holdout"] = time.perf_counter() - clock
        clock = time.perf_counter()
    set_seed(config.seed)
    checkpoints = Path(out_dir) / "checkpoints" / "dpo"  # `run --resume` continues from the newest one
    result = train_dpo(prepared.start_model, prepared.tokenizer, pairs, profile, checkpoints, beta=beta,
                       num_epochs=config.num_epoch, learning_rate=config.learning_rate, seed=config.seed,
                       checkpoint_every=profile.checkpoint_steps, resume=resume)
    timings["dpo"] = time.perf_counter() - clock
    if not is_main_process():
        prepared.release(result.model)
        return {}
    clock = time.perf_counter()
    stages = {name: copy.deepcopy(stage) for name, stage in prepared.stages.items()}
    stages["dpo"] = measure_stage(result.model, prepared.tokenizer, inputs, profile, prepared.judge)
    preferred = eval_preferences(inputs, config)
    if plan and plan["method"] == "rest":
        measured = rest_tables(plan, inputs.train_rows, result.model, prepared.tokenizer, profile.system_prompt,
                               lambda rows: preferences_of(rows, config))
    if measured is not None:  # the held-out labelled rows: the base model is the trained one with its adapter off
        for name, table in zip(("dpo", "base"), measured[:2]):
            stages[name].logps = table
            stages[name].metrics.update(support_rate=support_rate(table), logp_gap=logp_gap(table))
        preferred = measured[2]
    timings["eval_dpo"] = time.perf_counter() - clock
    reference = stages.get("sft", stages["base"])
    for stage in stages.values():
        add_reward_metrics(stage, reference, preferred, beta)
    add_fluency(stages, profile, prepared.tokenizer, inputs,
                base_model=result.model if prepared.base_under_adapters else None)
    echo(f"dpo: {stages['dpo'].metrics}")
    timings["total"] = sum(timings.values())
    logs = {**prepared.logs, "dpo": result.log_history}
    extra = {"holdout": plan or inputs.holdout,
             "split": {"rule": config.split_rule, "pairs": len(pairs),
                       "support_preferred": sum(p == "support" for p in pairs["preferred"])}}
    metrics = save_run(Path(out_dir), config, inputs, stages, logs, prepared.judge_acc, result.model, timings,
                       sft_dir=prepared.sft_dir, resumed_from=result.resumed_from, extra=extra)
    drop_checkpoints(Path(out_dir))
    prepared.release(result.model)
    return metrics


def drop_checkpoints(out_dir: Path) -> None:
    """Remove a finished run's DPO checkpoints; checkpoints set aside as half-written stay (checkpoints/dpo.incomplete)."""
    shutil.rmtree(out_dir / "checkpoints" / "dpo", ignore_errors=True)
    if (out_dir / "checkpoints").is_dir() and not any((out_dir / "checkpoints").iterdir()):
        (out_dir / "checkpoints").rmdir()


def run_pipeline(config: RunConfig, out_dir: Path, overwrite: bool = False, echo=print, resume: bool = False) -> dict:
    """Base → SFT → DPO on one profile, each stage measured; writes the run folder and returns metrics.json's dict.

    resume: continue an interrupted run in out_dir (same settings, else refused) from its newest complete checkpoint;
    SFT continues from its own cache. Another live process writing out_dir is refused.
    """
    with hold_folder(Path(out_dir)):
        note = print if is_main_process() else (lambda _: None)  # resume notes are printed, not echoed
        if resume and check_resume(config, Path(out_dir), echo=note):
            drop_checkpoints(Path(out_dir))  # in case the kill came between COMPLETE and this clean-up
            return read_json(Path(out_dir) / "metrics.json")
        check_run_request(config, out_dir, overwrite or resume)  # fail fast, before loading any model
        return run_dpo(prepare(config, echo), config, out_dir, overwrite=True, echo=echo, resume=resume)


def ensure_run(config: RunConfig, runs_dir: Path = OUTPUTS_DIR / "runs", echo=print) -> dict:
    """A saved run with these settings, loaded by name, or made now (reusing the cached SFT stage) if missing."""
    name = config.run_name(len(load_inputs(config).train_rows))  # the rows it trains on (English-only: the English)
    folder = Path(runs_dir) / name
    if is_same_run(folder, config):
        return load_run(folder)
    echo(f"no saved run {name!r} with these settings yet: running it now")
    with hold_folder(folder):
        make_room(folder, echo)
        run_pipeline(config, folder, overwrite=True, echo=lambda _: None)
    return load_run(folder)


def ensure_dpo_run(prepared: Prepared, config: RunConfig, folder: Path, overwrite: bool = False,
                   echo=print) -> tuple[dict, bool]:
    """(metrics, reused): the complete run in folder if it has exactly this config, else a new DPO run there.

    The new run trains its own adapter on the prepared start model (taken off again afterwards), so the same Prepared
    serves many runs. An earlier run with other settings is moved aside; overwrite=True retrains even an identical
    run.
    """
    if not overwrite and is_same_run(folder, config):
        return read_json(Path(folder) / "metrics.json"), True
    with hold_folder(folder):
        make_room(folder, echo)
        return run_dpo(prepared, config, folder, overwrite=True, echo=lambda _: None), False
