"""The homework notebook (notebooks/00_homework.ipynb) executed as a student would, on the tiny model: HW7 rehearsed
with papermill (nbval runs HW6 at its defaults), one training and no k-fold, a result file that passes
`homework check`, and every output marked as a rehearsal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.homework_check import check_result_file

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_hw7_rehearsal_writes_a_file_that_passes_the_check(tmp_path):
    env = dict(os.environ, DPO_OUTPUTS_DIR=str(tmp_path / "outputs"), HF_HUB_OFFLINE="1")
    env.pop("DPO_PROFILE", None)
    out = tmp_path / "00.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", "--log-level", "WARNING", "--kernel", "python3",
                           "--cwd", "notebooks", "notebooks/00_homework.ipynb", str(out), "-p", "homework", "hw7",
                           "-p", "student_id", "B12345678", "-p", "profile_name", "tiny", "-p", "support_ratio", "1",
                           "-p", "data_size", "20", "-p", "num_epoch", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    files = list((tmp_path / "outputs" / "runs").glob("*/B12345678_hw7_epoch1_ratio1_size20.json"))
    assert len(files) == 1
    summary = check_result_file(files[0], "hw7")
    assert summary["records"] == 10
    text = "\n".join(json.dumps(cell.get("outputs", []), ensure_ascii=False)
                     for cell in json.loads(out.read_text(encoding="utf-8"))["cells"])
    assert "1 DPO training(s)" in text and "kfold" not in json.loads(
        (files[0].parent / "metrics.json").read_text())["holdout"]["method"]
    assert "REHEARSAL ON TINY, NOT THE COURSE'S MODEL" in text
    assert "Question: " in text and "Response from trained model: " in text


def test_the_course_model_on_a_cpu_stops_in_the_preflight_with_one_line(monkeypatch):
    from helpers.errors import UserError
    from helpers.homework_run import preflight
    from helpers.runs import notebook_config

    monkeypatch.delenv("DPO_PROFILE", raising=False)
    config = notebook_config("hw6", None, support_ratio=0.1, data_size=50, num_epoch=1)
    assert config.profile is None and config.data is None, "nothing chosen for the course's data yet: no download"
    with pytest.raises(UserError, match='no GPU in this runtime.*T4 GPU.*profile_name = "tiny"'):
        preflight(config)


def test_a_rehearsal_preflight_says_what_it_will_do(monkeypatch):
    from helpers.homework_run import preflight
    from helpers.runs import notebook_config

    monkeypatch.delenv("DPO_PROFILE", raising=False)
    config = notebook_config("hw6", "tiny", support_ratio=0.1, data_size=50, num_epoch=1)
    facts = preflight(config)
    assert facts["rehearsal"].startswith("REHEARSAL ON TINY") and facts["GPU"] == "none (this CPU)"
    assert facts["trainings"].startswith("1 DPO training (no SFT stage, no k-fold)")
    assert facts["result file"] == "epoch-1_size-50_ratio-0.1.json"
    assert "assets/data/rehearsal/hw6" in facts["data"]
    kfold = notebook_config("hw6", "tiny", support_ratio=0.1, data_size=50, num_epoch=1, holdout="kfold-5")
    assert preflight(kfold)["trainings"].startswith("6 DPO trainings")


def test_the_course_model_on_a_t4_preflight(fake_gpu, monkeypatch):
    from helpers.homework_run import preflight
    from helpers.runs import notebook_config

    monkeypatch.delenv("DPO_PROFILE", raising=False)
    fake_gpu((7, 5), "Tesla T4")
    facts = preflight(notebook_config("hw7", None, student_id="B1", support_ratio=1, data_size=50, num_epoch=3))
    assert facts["GPU"] == "Tesla T4, compute capability 7.5" and facts["precision"] == "fp16"
    assert "GiB free; this run needs ~8.1 GiB" in facts["memory"] and "fits" in facts["memory"]
    assert facts["rehearsal"].startswith("no: the course's model")
    assert "cloned from https://gitlab.com/lchengtw/ML2025Spring-HW7" in facts["data"]
    assert facts["steps"].startswith("21 optimizer steps")
