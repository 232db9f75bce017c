"""Crash safety: a run killed with SIGKILL at any of its named moments resumes with `--resume` and ends exactly where
an uninterrupted run ends; an interrupted run never looks complete; finished runs are not overwritten.

The kill-point cases tell one story, in order, in one run folder and one SFT cache: each case resumes what the one
before it left and is killed at its own point (helpers/killpoints.py), so six crashes cost six short processes
rather than twelve; the last resume must then match an uninterrupted run, to which every resume contributed. A case
whose predecessors did not all pass is skipped. (The tiny model's cache build is killed in test_folders.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import DATA_DIR

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
N_ROWS = 24  # SFT: 48 examples, 24 steps (checkpoints 5…20, 24); DPO: 24 pairs × 4 epochs, 12 steps (5, 10, 12)
KNOBS = ["--support-ratio", "1", "--num-epoch", "4"]

# (kill point, lines the process killed there must have printed: each a set of words found on one line)
STORY = [
    ("sft-step:7", [("nothing to resume in", "starting a new run")]),
    ("sft-checkpoint:2", [("took over the lock", "is gone"), ("sft: resuming from", "checkpoint-5")]),  # dies in 15
    ("sft-cache", [("set aside", "checkpoint-15", "no trainer_state.json"), ("sft: resuming from", "checkpoint-10")]),
    ("dpo-checkpoint:2", [("removed", ".staging-", "is gone"), ("sft: resuming from", "checkpoint-24")]),  # in 10
    # DPO's measurement: the base and SFT models' were kept in the cache by earlier processes (helpers.measure_cache)
    ("measure:1", [("set aside", "checkpoint-10"), ("dpo: resuming from", "checkpoint-5")]),
    ("save-run", [("dpo: resuming from", "checkpoint-12")]),
]
done_points: list[str] = []


def _final_loss(metrics_dir: Path, stage: str) -> float:
    return [e["loss"] for e in json.loads((metrics_dir / "logs.json").read_text())[stage] if "loss" in e][-1]


def _false_claims(root: Path) -> list[str]:
    """Folders under root that hold a COMPLETE marker but are not complete."""
    from helpers.folders import incomplete_reason

    return [f"{m.parent}: {incomplete_reason(m.parent)}" for m in root.rglob("COMPLETE")
            if incomplete_reason(m.parent)]


@pytest.fixture(scope="module")
def story(tmp_path_factory, tiny_path):
    """The shared world: a small training file, an empty cache with the tiny model, and an uninterrupted run."""
    from helpers.pipeline import RunConfig, run_pipeline

    root = tmp_path_factory.mktemp("killed")
    rows = json.loads((DATA_DIR / "labelled_data.json").read_text(encoding="utf-8"))[:N_ROWS]
    data = root / "train.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    cache = root / "cache"
    shutil.copytree(tiny_path, cache / tiny_path.name)
    whole = root / "whole"  # uninterrupted, in this process (the same code as the command's; its SFT cache is .cache)
    run_pipeline(RunConfig(support_ratio=1.0, num_epoch=4, data=str(data)), whole, echo=lambda _: None)
    env = dict(ENV, DPO_CACHE_DIR=str(cache), DPO_OUTPUTS_DIR=str(root / "outputs"))
    command = [sys.executable, "-m", "helpers", "run", *KNOBS, "--data", str(data), "--out", str(root / "run"),
               "--resume"]
    return {"root": root, "cache": cache, "run": root / "run", "whole": whole, "env": env, "command": command}


def _resume(story: dict, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(story["env"], **({"DPO_KILL_AT": kill_at} if kill_at else {}))
    return subprocess.run(story["command"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("point, said", STORY, ids=[point.split(":")[0] for point, _ in STORY])
def test_killed_at(story, point, said):
    before = [p for p, _ in STORY][:[p for p, _ in STORY].index(point)]
    if done_points != before:
        pytest.skip(f"continues the run the cases before it left ({', '.join(before)})")
    killed = _resume(story, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, f"not killed at {point}: {killed.stderr[-1500:]}"
    for words in said:
        assert any(all(w in line for w in words) for line in killed.stdout.splitlines()), \
            f"no line with {words} in:\n{killed.stdout}"
    assert not (story["run"] / "COMPLETE").exists(), "an interrupted run must not look complete"
    assert not _false_claims(story["root"])
    done_points.append(point)


@pytest.mark.slow
def test_the_resumed_run_ends_where_an_uninterrupted_one_ends(story):
    from helpers.folders import is_complete, lock_path
    from helpers.training import checkpoint_problem

    if done_points != [p for p, _ in STORY]:
        pytest.skip("needs every kill point before it")
    resumed = _resume(story)
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    run, whole = story["run"], story["whole"]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, run))
    for stage in ("sft", "dpo"):
        assert a["stages"][stage]["support_rate"] == b["stages"][stage]["support_rate"], stage
        assert abs(_final_loss(whole, stage) - _final_loss(run, stage)) <= 1e-4, stage
    assert b["resumed_from"] == "checkpoint-12"
    assert is_complete(run) and not _false_claims(story["root"])
    assert not (run / "checkpoints" / "dpo").exists(), "a finished run drops its checkpoints"
    set_aside = [run / "checkpoints" / "dpo.incomplete" / "checkpoint-10",
                 *story["cache"].glob("sft-*.checkpoints.incomplete/checkpoint-15")]
    assert len(set_aside) == 2 and all(checkpoint_problem(p) for p in set_aside), "half-written, kept, not deleted"
    assert not list(story["root"].rglob("*.staging-*")) and not list(story["root"].rglob("*.lock"))
    assert not lock_path(run).exists()


def test_resume_says_what_there_is_to_resume(tmp_path):
    from dataclasses import asdict

    from helpers.files import write_json_atomic
    from helpers.runs import RunConfig, check_resume

    lines: list[str] = []
    assert not check_resume(RunConfig(), tmp_path / "new", echo=lines.append)
    write_json_atomic(tmp_path / "config.json", asdict(RunConfig()))  # killed before its first DPO checkpoint
    assert not check_resume(RunConfig(), tmp_path, echo=lines.append)
    assert lines[0].startswith(f"nothing to resume in {tmp_path / 'new'}: starting a new run")
    assert lines[1] == (f"no DPO checkpoint in {tmp_path} yet: DPO starts from step 0 (SFT continues from its "
                        "cache)")


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
