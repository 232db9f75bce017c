"""The Colab/Kaggle install cell: one repository address (helpers/install.py) behind every badge and install cell,
and the cell's logic run for real in a fresh venv that already holds a torch build (the platform's, on Colab)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.install import REPO_URL
from helpers.notebook_opening import install_cell, sync_notebooks

ROOT = Path(__file__).resolve().parent.parent


def test_every_notebook_opening_is_generated_from_the_one_address():
    assert sync_notebooks() == [], "run `python -m helpers notebooks --write`"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    holders = [name for name in tracked if not name.endswith(".ipynb")
               and REPO_URL.removeprefix("https://") in (ROOT / name).read_text(encoding="utf-8", errors="ignore")]
    assert holders == ["README.md", "README.zh-TW.md", "helpers/install.py"], holders  # the READMEs: synced badges
    assert "DPO_NOTEBOOKS_REPO_URL" in install_cell() and "%run dpo-notebooks/helpers/install.py" in install_cell()


# What the install cell does once IPython has turned `!git clone {url}` and `%run FILE ARGS` into Python: the clone
# address from the environment, then install.py run as __main__ in this very process, then the import. Like Colab's
# kernel, it has imported pandas (an older one) before the cell runs.
CELL_AS_PYTHON = """
import json, os, runpy, subprocess, sys
import pandas
url = os.environ.get("DPO_NOTEBOOKS_REPO_URL", "unused")
if not os.path.isdir("dpo-notebooks"):
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", url, "dpo-notebooks"], check=True)
sys.argv = ["dpo-notebooks/helpers/install.py", "dpo-notebooks"]
runpy.run_path("dpo-notebooks/helpers/install.py", run_name="__main__")
import helpers, torch
print(json.dumps({"helpers": helpers.__file__, "torch": torch.__version__, "torch_file": torch.__file__,
                  "pandas": pandas.__version__}))
"""
OLD_PANDAS = "pandas==2.2.3"  # below the project's floor, as a platform image may hold


@pytest.mark.slow
@pytest.mark.install
def test_install_cell_keeps_torch_and_asks_for_a_restart_only_when_it_must(tmp_path):
    """Costs one real install (about two minutes from the local package mirror): the only test that does. The first
    run upgrades the pandas the kernel had imported, so it stops with one restart line; the run after the restart
    imports everything in-process."""
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "torch==2.13.0", OLD_PANDAS], check=True,
                   timeout=600)
    before = subprocess.run([str(python), "-c", "import torch; print(torch.__version__, torch.__file__)"],
                            capture_output=True, text=True, check=True).stdout.split()
    torch_init = Path(before[1])
    stamp = torch_init.stat().st_mtime_ns
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["DPO_NOTEBOOKS_REPO_URL"] = f"file://{ROOT}"
    work = tmp_path / "content"  # Colab's working folder
    work.mkdir()
    first = subprocess.run([str(python), "-c", CELL_AS_PYTHON], cwd=work, env=env, capture_output=True, text=True,
                           timeout=1200)
    assert first.returncode != 0
    message = first.stderr.strip().splitlines()[-1]
    assert "Restart needed" in message and "pandas 2.2.3 → " in message and "Runtime → Restart session" in message
    after_restart = subprocess.run([str(python), "-c", CELL_AS_PYTHON], cwd=work, env=env, capture_output=True,
                                   text=True, timeout=1200)
    assert after_restart.returncode == 0, after_restart.stderr[-2000:]
    seen = json.loads(after_restart.stdout.strip().splitlines()[-1])
    assert Path(seen["helpers"]).is_relative_to(work / "dpo-notebooks"), seen  # the clone, imported in-process
    assert seen["torch"] == before[0] and Path(seen["torch_file"]) == torch_init
    assert seen["pandas"] != "2.2.3"
    assert torch_init.stat().st_mtime_ns == stamp, "pip replaced torch"
