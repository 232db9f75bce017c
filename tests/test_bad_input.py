"""Bad input at the top level: one line on stderr, exit 2, fast, and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")


def run(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True, text=True, cwd=ROOT,
                          env=OFFLINE, timeout=timeout)
    return done, time.perf_counter() - start


def assert_one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("args, words", [
    (["--data", "does/not/exist.json"], ["does/not/exist.json", "file not found"]),
    (["--profile", "breeze-7b"], ["breeze-7b", "needs a CUDA GPU"]),
    (["--profile", "no-such-profile"], ["unknown profile", "tiny", "breeze-7b"]),
    (["--model", "no-such-org/no-such-model"], ["no-such-org/no-such-model", "HF_HUB_OFFLINE"]),
], ids=["missing-data", "gpu-profile-on-cpu", "unknown-profile", "model-offline"])
def test_run_rejects_bad_input_fast(tmp_path, args, words):
    out = tmp_path / "run"
    done, seconds = run("run", "--support-ratio", "1", "--out", str(out), *args)
    assert_one_line_error(done, *words)
    assert seconds < 30, f"took {seconds:.0f} s: something retried"
    assert not out.exists(), "a rejected run must not leave a folder behind"


def test_run_rejects_an_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done, _ = run("run", "--support-ratio", "1", "--out", str(blocker / "run"))
    assert_one_line_error(done, "cannot write the run folder")


def test_bad_support_ratio_is_one_line_naming_the_knob(tmp_path):
    done, _ = run("run", "--support-ratio", "1.5", "--out", str(tmp_path / "x"))
    assert_one_line_error(done, "support_ratio (--support-ratio) is 1.5", "at least 0 and at most 1")
    assert not (tmp_path / "x").exists()
