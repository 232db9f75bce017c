"""The whole flow, base → SFT → DPO → measured, as functions the notebooks call one by one and `run` calls in turn.
The SFT stage is cached by a hash of its settings, so every notebook, run and sweep trains it once."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from helpers import data
from helpers.config import CACHE_DIR, OUTPUTS_DIR, Profile, load_profile
from helpers.errors import UserError
from helpers.evaluation import (generation_metrics, implicit_reward_metrics, judge_accuracy, stance_logps,
                                support_rate, train_stance_judge)
from helpers.files import read_json, write_json_atomic
from helpers.generation import generate_answers
from helpers.models import copy_model, load_model, load_tokenizer
from helpers.notebook import set_seed
from helpers.training import TrainResult, prepare_for_dpo, train_dpo, train_sft

COMPLETE_MARKER = "COMPLETE"  # written last: a run folder without it was interrupted


@dataclass
class RunConfig:
    """The knobs of one run: the homework's three, DPO's two, the data files and the seed."""

    profile: str = "tiny"
    support_ratio: float = 1.0  # share of training pairs that prefer the support answer
    data_size: int | None = None  # how many labelled rows become pairs (None: all of them)
    num_epoch: float = 3  # DPO epochs
    beta: float | None = None  # None: the profile's (0.1)
    learning_rate: float | None = None  # None: the profile's DPO learning rate
    spread: bool = False  # spread the support-preferred rows evenly instead of taking the first ones
    data: str | None = None  # labelled rows (homework schema); None: assets/data/labelled_data.json
    eval_data: str | None = None  # held-out rows for measurement; None: assets/data/eval_data.json
    test_prompts: str | None = None  # prompts to generate for; None: assets/data/test_prompt.json
    seed: int = 0
    model: str | None = None  # a local folder or hub id instead of the profile's model

    def answers_file_name(self, n_rows: int) -> str:
        """The homework's result file name, epoch-{num_epoch}_size-{data_size}_ratio-{support_ratio}.json."""
        size = self.data_size or n_rows
        return f"epoch-{_num(self.num_epoch)}_size-{size}_ratio-{_num(self.support_ratio)}.json"

    def run_name(self, n_rows: int) -> str:
        """A folder name that says what the run was."""
        name = f"{self.profile}_" + self.answers_file_name(n_rows).removesuffix(".json")
        return name + (f"_seed-{self.seed}" if self.seed else "")


def _num(value: float) -> str:
    """1.0 → "1", 0.25 → "0.25": short, stable names."""
    return f"{value:g}"


@dataclass
class Inputs:
    """The rows a run reads, loaded and validated once."""

    train_rows: list[dict]
    eval_rows: list[dict]
    test_rows: list[dict]
    files: dict[str, str] = field(default_factory=dict)


def load_inputs(config: RunConfig) -> Inputs:
    """Load and validate the training, held-out and test files named by the config (the bundled ones by default)."""
    return Inputs(
        train_rows=data.load_homework(config.data),
        eval_rows=data.load_eval_rows(config.eval_data),
        test_rows=data.load_test_prompts(config.test_prompts),
        files={"data": str(config.data or "bundled"), "eval_data": str(config.eval_data or "bundled"),
               "test_prompts": str(config.test_prompts or "bundled")},
    )


# --- several processes (accelerate launch) ---------------------------------------------------------------


def is_main_process() -> bool:
    """True in a single process, and in rank 0 of a data-parallel run: the one that measures, writes and prints."""
    return int(os.environ.get("RANK", "0")) == 0


def wait_for_everyone() -> None:
    """A barrier across data-parallel processes; nothing in a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# --- stage measurement ---------------------------------------------------------------------------------------


@dataclass
class StageResult:
    """One stage's measurements, its answers to the test prompts and its per-row log-probs."""

    metrics: dict
    answers: list[str]
    logps: pd.DataFrame


def measure_stage(model: torch.nn.Module, tokenizer, inputs: Inputs, profile: Profile, judge,
                  progress: bool = False) -> StageResult:
    """support_rate on the held-out rows, plus the greedy answers to the test prompts and their stance/fluency."""
    if not is_main_process():  # evaluation runs once, on the main process
        return StageResult(metrics={}, answers=[], logps=pd.DataFrame())
    table = stance_logps(model, tokenizer, inputs.eval_rows, profile.system_prompt)
    answers = generate_answers(model, tokenizer, [r["prompt"] for r in inputs.test_rows], profile.system_prompt,
                               max_new_tokens=profile.max_new_tokens, batch_size=profile.gen_batch_size,
                               progress=progress)
    metrics = {"support_rate": support_rate(table), **generation_metrics(judge, answers)}
    return StageResult(metrics=metrics, answers=answers, logps=table)


def measure_base(profile: Profile, inputs: Inputs, judge) -> StageResult:
    """Load the untrained model, measure it like any stage, and free it again."""
    model = load_model(profile)
    stage = measure_stage(model, load_tokenizer(profile), inputs, profile, judge)
    del model
    return stage


def add_reward_metrics(stage: StageResult, reference: StageResult, preferred: list[str], beta: float) -> None:
    """Add pair_accuracy and mean_margin of a stage against the reference stage (SFT, or base when SFT is off)."""
    stage.metrics.update(implicit_reward_metrics(stage.logps, reference.logps, preferred, beta))


def eval_preferences(inputs: Inputs, config: RunConfig) -> list[str]:
    """Which answer each held-out row prefers under the run's support_ratio rule (its trained direction)."""
    pairs = data.make_preference_pairs(inputs.eval_rows, config.support_ratio, spread=config.spread)
    return list(pairs["preferred"])


# --- SFT, cached --------------------------------------------------------------------------------------------


def sft_settings(profile: Profile, train_rows: list[dict], seed: int) -> dict:
    """Everything the SFT stage depends on; its hash names the cache folder."""
    digest = hashlib.sha256(json.dumps(train_rows, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:12]
    return {"profile": asdict(profile), "train_rows": digest, "seed": seed, "version": 1}


def sft_cache_dir(settings: dict, cache_dir: Path = CACHE_DIR) -> Path:
    """The cache folder of one SFT setting."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"sft-{settings['profile']['name']}-{key}"


def get_sft_model(profile: Profile, train_rows: list[dict], seed: int = 0, retrain: bool = False,
                  cache_dir: Path = CACHE_DIR) -> tuple[torch.nn.Module, TrainResult | None, Path]:
    """The SFT model (base + SFT adapter): loaded from the cache, or trained on both answers of every row and cached."""
    folder = sft_cache_dir(sft_settings(profile, train_rows, seed), cache_dir)
    if retrain or not (folder / "log_history.json").exists():
        set_seed(seed)
        tokenizer = load_tokenizer(profile)
        model = load_model(profile, trainable=True)
        examples = data.make_sft_examples(train_rows, profile.system_prompt)
        checkpoints = folder.with_name(folder.name + ".checkpoints")  # a killed SFT resumes from here
        result = train_sft(model, tokenizer, examples, profile, checkpoints, seed=seed,
                           checkpoint_every=profile.checkpoint_steps, resume=not retrain)
        if is_main_process():
            staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=_mkdir(folder.parent)))
            result.model.save_pretrained(staging, safe_serialization=True)
            write_json_atomic(staging / "log_history.json", {"log_history": result.log_history,
                                                             "seconds": result.seconds})
            _replace_dir(staging, folder)
            shutil.rmtree(checkpoints, ignore_errors=True)
        wait_for_everyone()
        result.model.eval()
        return result.model, result, folder
    model = load_model(profile, adapter_dir=folder)
    cached = read_json(folder / "log_history.json")
    return model, TrainResult(model=model, log_history=cached["log_history"], seconds=cached["seconds"]), folder


def _replace_dir(staging: Path, target: Path) -> None:
    """Put a fully written folder in place of target."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- saved runs ---------------------------------------------------------------------------------------------


def check_out_dir(out_dir: Path, config: RunConfig, overwrite: bool) -> None:
    """Refuse to replace a finished run, or a folder holding a run with other settings, unless overwrite."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder")
    if overwrite or not out_dir.exists():
        return
    if (out_dir / COMPLETE_MARKER).exists():
        raise UserError(f"{out_dir} already holds a complete run; pass --overwrite to replace it, "
                        "or choose another --out")
    saved = out_dir / "config.json"
    if saved.exists() and read_json(saved) != asdict(config):
        raise UserError(f"{out_dir} holds an unfinished run with other settings; pass --overwrite or another --out")


def check_writable(out_dir: Path) -> None:
    """Fail before any training if the run folder cannot be created or written."""
    try:
        _mkdir(out_dir)
        probe = out_dir / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write the run folder {out_dir}: {error.strerror or error}") from None


def list_runs(runs_dir: Path = OUTPUTS_DIR / "runs") -> list[str]:
    """Names of the complete runs saved under runs_dir."""
    if not Path(runs_dir).exists():
        return []
    return sorted(p.name for p in Path(runs_dir).iterdir() if (p / COMPLETE_MARKER).exists())


def load_run(name_or_dir: str | Path, runs_dir: Path = OUTPUTS_DIR / "runs") -> dict:
    """A saved run's metrics.json, answers and training logs, by folder or by name under runs_dir."""
    folder = Path(name_or_dir)
    if not folder.is_dir():
        folder = Path(runs_dir) / str(name_or_dir)
    if not (folder / COMPLETE_MARKER).exists():
        known = ", ".join(list_runs(runs_dir)) or "none yet"
        raise UserError(f"no complete run at {folder}; saved runs: {known}")
    run = read_json(folder / "metrics.json")
    run["answers"] = pd.DataFrame(read_json(folder / "answers.json"))
    run["logs"] = read_json(folder / "logs.json")
    run["dir"] = str(folder)
    return run


def environment_facts() -> dict:
    """Library versions and hardware, recorded with every run."""
    import peft
    import transformers
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "peft": peft.__version__,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "world_size": int(os.environ.get("WORLD_SIZE", "1"))}


def save_answers(name: str, rows: list[dict], answers: list[str], profile: Profile,
                 folder: Path = OUTPUTS_DIR / "answers") -> Path:
    """Save one stage's answers to the test prompts as JSON (id, prompt, answer), atomically."""
    records = [{"id": r["id"], "prompt": r["prompt"], "answer": a} for r, a in zip(rows, answers)]
    return write_json_atomic(Path(folder) / f"{profile.name}_{name}.json", records)


def save_run(out_dir: Path, config: RunConfig, inputs: Inputs, stages: dict[str, StageResult],
             logs: dict[str, list[dict]], judge_acc: float, dpo_model: torch.nn.Module | None = None,
             timings: dict[str, float] | None = None, sft_dir: Path | None = None,
             resumed_from: str | None = None) -> dict:
    """Write metrics.json, the answers (also under the homework's file name), the logs and the adapter; marker last."""
    out_dir = _mkdir(Path(out_dir))
    (out_dir / COMPLETE_MARKER).unlink(missing_ok=True)
    write_json_atomic(out_dir / "config.json", asdict(config))
    metrics = {
        "config": asdict(config),
        "stages": {name: stage.metrics for name, stage in stages.items()},
        "judge_heldout_accuracy": judge_acc,
        "n_train_pairs": config.data_size or len(inputs.train_rows),
        "n_eval_rows": len(inputs.eval_rows),
        "timings": {k: round(v, 2) for k, v in (timings or {}).items()},
        "resumed_from": resumed_from,  # the DPO checkpoint a --resume continued from
        "environment": environment_facts(),
    }
    answers = [{"id": row["id"], "prompt": row["prompt"], **{name: s.answers[i] for name, s in stages.items()}}
               for i, row in enumerate(inputs.test_rows)]
    homework = [{"id": a["id"], "prompt": a["prompt"], "base_answer": a["base"], "trained_answer": a["dpo"]}
                for a in answers]
    write_json_atomic(out_dir / "answers.json", answers)
    write_json_atomic(out_dir / config.answers_file_name(len(inputs.train_rows)), homework)
    write_json_atomic(out_dir / "logs.json", logs)
    if dpo_model is not None and hasattr(dpo_model, "peft_config"):
        staging = Path(tempfile.mkdtemp(prefix=".adapter.", dir=out_dir))
        dpo_model.save_pretrained(staging, safe_serialization=True)
        _replace_dir(staging, out_dir / "adapter")
    if sft_dir is not None:  # the SFT adapter under the DPO one: export folds both into the base weights
        staging = Path(tempfile.mkdtemp(prefix=".sft_adapter.", dir=out_dir))
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(Path(sft_dir) / name, staging / name)
        _replace_dir(staging, out_dir / "sft_adapter")
    write_json_atomic(out_dir / "metrics.json", metrics)
    (out_dir / COMPLETE_MARKER).write_text("complete\n", encoding="utf-8")
    return metrics


# --- the whole pipeline -------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What every DPO run of one profile, data and seed shares: the inputs, the judge, base and SFT measured once."""

    profile: Profile
    tokenizer: object
    inputs: Inputs
    judge: object
    judge_acc: float
    stages: dict[str, StageResult]
    start_model: torch.nn.Module  # the SFT model folded into plain weights (or the base model without SFT)
    logs: dict[str, list[dict]]
    timings: dict[str, float]
    sft_dir: Path | None = None  # the SFT adapter folded into start_model (None: no SFT, or kept as an adapter)


def resolve_profile(config: RunConfig) -> Profile:
    """The config's profile, with its model replaced when the config names one."""
    profile = load_profile(config.profile)
    return profile.replace(model_name=config.model) if config.model else profile


def prepare(config: RunConfig, echo=print) -> Prepared:
    """Load and check the inputs, measure the base model, get the SFT model (cached) and measure it."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    profile = resolve_profile(config)
    inputs = load_inputs(config)
    set_seed(config.seed)
    judge = train_stance_judge(inputs.train_rows, seed=config.seed)
    tokenizer = load_tokenizer(profile)
    stages = {"base": measure_base(profile, inputs, judge)}
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
        stages["sft"] = measure_stage(model, tokenizer, inputs, profile, judge)
        echo(f"sft: {stages['sft'].metrics}")
        timings["eval_sft"] = time.perf_counter() - clock
    else:
        model = load_model(profile, trainable=True)
    return Prepared(profile, tokenizer, inputs, judge, judge_accuracy(judge, inputs.eval_rows), stages,
                    prepare_for_dpo(model, profile), logs, timings,
                    sft_dir=None if profile.load_in_4bit else sft_dir)


def run_dpo(prepared: Prepared, config: RunConfig, out_dir: Path, overwrite: bool = False, echo=print,
            fresh_copy: bool = False, resume: bool = False) -> dict:
    """One DPO run from the prepared SFT model: train, measure, save the run folder; returns metrics.json's dict."""
    profile, inputs = prepared.profile, prepared.inputs
    pairs = data.make_preference_pairs(inputs.train_rows, config.support_ratio, config.data_size,
                                       spread=config.spread, system_prompt=profile.system_prompt)
    if is_main_process():
        check_out_dir(Path(out_dir), config, overwrite)
        check_writable(Path(out_dir))
        write_json_atomic(Path(out_dir) / "config.json", asdict(config))
    beta = config.beta if config.beta is not None else profile.beta
    model = copy_model(prepared.start_model) if fresh_copy else prepared.start_model
    timings = dict(prepared.timings)
    clock = time.perf_counter()
    set_seed(config.seed)
    checkpoints = Path(out_dir) / "checkpoints" / "dpo"  # `run --resume` continues from the newest one
    result = train_dpo(model, prepared.tokenizer, pairs, profile, checkpoints, beta=beta,
                       num_epochs=config.num_epoch, learning_rate=config.learning_rate, seed=config.seed,
                       checkpoint_every=profile.checkpoint_steps, resume=resume)
    timings["dpo"] = time.perf_counter() - clock
    if not is_main_process():
        return {}
    clock = time.perf_counter()
    stages = {name: copy.deepcopy(stage) for name, stage in prepared.stages.items()}
    stages["dpo"] = measure_stage(result.model, prepared.tokenizer, inputs, profile, prepared.judge)
    timings["eval_dpo"] = time.perf_counter() - clock
    reference = stages.get("sft", stages["base"])
    preferred = eval_preferences(inputs, config)
    for stage in stages.values():
        add_reward_metrics(stage, reference, preferred, beta)
    echo(f"dpo: {stages['dpo'].metrics}")
    timings["total"] = sum(timings.values())
    logs = {**prepared.logs, "dpo": result.log_history}
    metrics = save_run(Path(out_dir), config, inputs, stages, logs, prepared.judge_acc, result.model, timings,
                       sft_dir=prepared.sft_dir, resumed_from=result.resumed_from)
    shutil.rmtree(Path(out_dir) / "checkpoints", ignore_errors=True)
    return metrics


def run_pipeline(config: RunConfig, out_dir: Path, overwrite: bool = False, echo=print, resume: bool = False) -> dict:
    """Base → SFT → DPO on one profile, each stage measured; writes the run folder and returns metrics.json's dict.

    resume: continue an interrupted run in out_dir (same settings) from its newest checkpoint; SFT is cached anyway.
    """
    if resume and (Path(out_dir) / COMPLETE_MARKER).exists():
        if read_json(Path(out_dir) / "config.json") != asdict(config):
            raise UserError(f"{out_dir} holds a complete run with other settings; nothing to resume")
        echo(f"{out_dir} is already complete: nothing to resume")
        return read_json(Path(out_dir) / "metrics.json")
    profile = resolve_profile(config)  # fail fast on a bad profile, data or knob, before loading any model
    inputs = load_inputs(config)
    data.make_preference_pairs(inputs.train_rows, config.support_ratio, config.data_size, spread=config.spread,
                               system_prompt=profile.system_prompt)
    if is_main_process():
        check_out_dir(Path(out_dir), config, overwrite)
        check_writable(Path(out_dir))
    return run_dpo(prepare(config, echo), config, out_dir, overwrite=True, echo=echo, resume=resume)


def keep_earlier_run(out_dir: Path) -> Path | None:
    """Move a complete run out of the way (to NAME.earlier-N) so a notebook rerun never destroys it; returns where."""
    out_dir = Path(out_dir)
    if not (out_dir / COMPLETE_MARKER).exists():
        return None
    n = 1
    while (target := out_dir.with_name(f"{out_dir.name}.earlier-{n}")).exists():
        n += 1
    os.replace(out_dir, target)
    return target


def ensure_run(config: RunConfig, runs_dir: Path = OUTPUTS_DIR / "runs", echo=print) -> dict:
    """A saved run with these settings, loaded by name, or made now (reusing the cached SFT stage) if missing."""
    name = config.run_name(len(data.load_homework(config.data)))
    folder = Path(runs_dir) / name
    if (folder / COMPLETE_MARKER).exists() and read_json(folder / "config.json") == asdict(config):
        return load_run(folder)
    echo(f"no saved run {name!r} with these settings yet: running it now")
    moved = keep_earlier_run(folder)
    if moved:
        echo(f"kept the earlier run with other settings as {moved}")
    run_pipeline(config, folder, overwrite=True, echo=lambda _: None)
    return load_run(folder)


def metrics_table(metrics: dict) -> pd.DataFrame:
    """metrics.json's stages as a table: one row per stage, one column per measurement."""
    return pd.DataFrame(metrics["stages"]).T
