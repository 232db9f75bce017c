"""Scaling out: the accelerate configs load, and the tiny pipeline runs data-parallel on two CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_accelerate_accepts_the_config(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 1 and config.num_machines == 1
    assert path.read_text().lstrip().startswith("#"), "every config starts with notes for the user"


def test_the_expected_configs_are_there():
    assert {p.stem for p in CONFIGS} == {"single_gpu", "multi_gpu", "cpu_2proc"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_leave_precision_to_the_trainer(path):
    """The trainers' fp16/bf16 flags (from the card's capability) override a config's mixed_precision: say 'no'."""
    from accelerate.commands.config.config_args import load_config_from_file

    assert load_config_from_file(str(path)).mixed_precision == "no"


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tmp_path):
    """A real 2-process DDP run (gloo): main process writes once, world size recorded, stance moves like 1 process."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    args = ["run", "--profile", "tiny", "--support-ratio", "1", "--data-size", "64", "--num-epoch", "2"]
    ddp = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          str(ROOT / "configs/accelerate/cpu_2proc.yaml"), "-m", "helpers", *args,
                          "--out", str(tmp_path / "ddp")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert ddp.stdout.count("results in") == 1, "only the main process prints"
    from helpers.pipeline import RunConfig, run_pipeline  # the same run in one process, for comparison

    run_pipeline(RunConfig(support_ratio=1.0, data_size=64, num_epoch=2), tmp_path / "single", echo=lambda _: None)
    runs = {name: json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("ddp", "single")}
    assert runs["ddp"]["environment"]["world_size"] == 2 and runs["single"]["environment"]["world_size"] == 1
    ddp_steps = len(json.loads((tmp_path / "ddp" / "logs.json").read_text())["dpo"])
    single_steps = len(json.loads((tmp_path / "single" / "logs.json").read_text())["dpo"])
    assert ddp_steps < single_steps, "two processes split the pairs: fewer optimizer steps"
    for metrics in runs.values():
        stages = metrics["stages"]
        assert stages["dpo"]["support_rate"] > stages["sft"]["support_rate"], "DPO at ratio 1 must raise support_rate"
        assert stages["dpo"]["pair_accuracy"] > 0.5


def test_the_reference_is_precomputed_only_in_one_process(monkeypatch, tmp_path):
    """TRL's precomputed column lives in the main process's temporary folder: several processes keep it live."""
    from helpers.config import load_profile
    from helpers.trainer_args import dpo_arguments

    tiny = load_profile("tiny")
    assert tiny.precompute_ref_log_probs
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert dpo_arguments(tiny, tmp_path)["precompute_ref_log_probs"] is True
    assert dpo_arguments(tiny, tmp_path, precompute_ref_log_probs=False)["precompute_ref_log_probs"] is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dpo_arguments(tiny, tmp_path)["precompute_ref_log_probs"] is False
