"""Notebook 04 run three times as a student switches a setting back and forth (beta 0.2, 0.1, 0.2): two run folders,
nothing moved aside, and the third execution loads the saved run and trains nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def execute_04(tmp_path: Path, beta: float, n: int) -> str:
    """Run notebook 04 on the tiny model with this beta (20 pairs, 1 epoch); its outputs as one text."""
    env = dict(os.environ, DPO_OUTPUTS_DIR=str(tmp_path / "outputs"), HF_HUB_OFFLINE="1")
    env.pop("DPO_PROFILE", None)
    out = tmp_path / f"04-{n}.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", "--log-level", "WARNING", "--kernel", "python3",
                           "--cwd", "notebooks", "notebooks/04_dpo.ipynb", str(out), "-p", "profile_name", "tiny",
                           "-p", "beta", str(beta), "-p", "data_size", "20", "-p", "num_epoch", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return "\n".join(json.dumps(cell.get("outputs", []), ensure_ascii=False)
                     for cell in json.loads(out.read_text(encoding="utf-8"))["cells"])


@pytest.mark.slow
def test_switching_beta_back_reuses_both_saved_runs(tmp_path):
    runs = tmp_path / "outputs" / "runs"
    first = execute_04(tmp_path, 0.2, 1)
    assert "nothing trained" not in first
    adapter = runs / "tiny_epoch-1_size-20_ratio-1_beta-0.2" / "adapter" / "adapter_model.safetensors"
    written = adapter.stat().st_mtime_ns
    execute_04(tmp_path, 0.1, 2)
    third = execute_04(tmp_path, 0.2, 3)
    assert sorted(p.name for p in runs.iterdir()) == ["tiny_epoch-1_size-20_ratio-1_beta-0.1",
                                                      "tiny_epoch-1_size-20_ratio-1_beta-0.2"]  # no .earlier-N
    assert "loaded the saved run tiny_epoch-1_size-20_ratio-1_beta-0.2: same settings, nothing trained" in third
    assert "'train_seconds': 0.0" in third and "already holds this run: left as it is" in third
    assert adapter.stat().st_mtime_ns == written  # the saved run was neither retrained nor rewritten
