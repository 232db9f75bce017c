"""Crash safety: a run killed with SIGKILL during DPO resumes from its checkpoint and ends exactly where an
uninterrupted run ends; an interrupted run never looks complete; finished runs are not overwritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.config import CACHE_DIR

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
ARGS = ["-m", "helpers", "run", "--profile", "tiny", "--support-ratio", "1", "--data-size", "48", "--num-epoch", "2"]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *ARGS, "--out", str(out), *extra], capture_output=True, text=True,
                          cwd=ROOT, env=ENV, timeout=600)


def _final_loss(out: Path) -> float:
    return [e["loss"] for e in json.loads((out / "logs.json").read_text())["dpo"] if "loss" in e][-1]


@pytest.mark.slow
def test_sigkill_during_dpo_then_resume_matches_an_uninterrupted_run(tmp_path):
    from helpers.pipeline import RunConfig, run_pipeline

    whole = tmp_path / "whole"  # uninterrupted, in this process (the same code as the command's)
    run_pipeline(RunConfig(support_ratio=1.0, data_size=48, num_epoch=2), whole, echo=lambda _: None)
    sft_adapters = sorted(CACHE_DIR.glob("sft-tiny-*/adapter_model.safetensors"))
    sft_mtimes = [p.stat().st_mtime_ns for p in sft_adapters]

    crashed = tmp_path / "crashed"
    process = subprocess.Popen([sys.executable, *ARGS, "--out", str(crashed)], cwd=ROOT, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((crashed / "checkpoints" / "dpo").glob("checkpoint-*/trainer_state.json")):
        assert process.poll() is None, "the run ended before a DPO checkpoint appeared"
        assert time.time() < deadline, "no DPO checkpoint within 5 minutes"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (crashed / "COMPLETE").exists() and not (crashed / "metrics.json").exists()

    resumed = _run(crashed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    assert json.loads((crashed / "metrics.json").read_text())["resumed_from"].startswith("checkpoint-")
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, crashed))
    assert a["stages"]["dpo"]["support_rate"] == b["stages"]["dpo"]["support_rate"]
    assert abs(_final_loss(whole) - _final_loss(crashed)) <= 1e-4
    assert [p.stat().st_mtime_ns for p in sft_adapters] == sft_mtimes, "the finished SFT stage was retrained"
    assert (crashed / "COMPLETE").exists() and not (crashed / "checkpoints").exists()


def test_resume_of_a_complete_run_does_nothing(tmp_path):
    from helpers.pipeline import COMPLETE_MARKER, RunConfig, run_pipeline
    from helpers.files import write_json_atomic
    from dataclasses import asdict

    config = RunConfig(support_ratio=1.0)
    write_json_atomic(tmp_path / "config.json", asdict(config))
    write_json_atomic(tmp_path / "metrics.json", {"stages": {}, "marker": "earlier"})
    (tmp_path / COMPLETE_MARKER).write_text("complete\n")
    assert run_pipeline(config, tmp_path, resume=True, echo=lambda _: None)["marker"] == "earlier"


def test_refuses_a_complete_run_and_a_folder_with_other_settings(tmp_path):
    from dataclasses import asdict

    from helpers.errors import UserError
    from helpers.files import write_json_atomic
    from helpers.pipeline import COMPLETE_MARKER, RunConfig, check_out_dir

    write_json_atomic(tmp_path / "config.json", asdict(RunConfig(support_ratio=0.5)))
    with pytest.raises(UserError, match="other settings"):
        check_out_dir(tmp_path, RunConfig(support_ratio=1.0), overwrite=False)
    check_out_dir(tmp_path, RunConfig(support_ratio=0.5), overwrite=False)  # same settings, unfinished: fine
    (tmp_path / COMPLETE_MARKER).write_text("complete\n")
    with pytest.raises(UserError, match="--overwrite"):
        check_out_dir(tmp_path, RunConfig(support_ratio=0.5), overwrite=False)
    check_out_dir(tmp_path, RunConfig(support_ratio=0.5), overwrite=True)


def test_result_files_are_replaced_atomically(tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous file intact and no temporary file behind."""
    from helpers import files

    target = tmp_path / "metrics.json"
    files.write_json_atomic(target, {"run": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError):
        files.write_json_atomic(target, {"run": 2})
    assert json.loads(target.read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
