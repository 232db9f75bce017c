"""What may be committed: clean notebooks (no errors, no absolute paths, no tokens, no widget state), safetensors only."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
ABSOLUTE = re.compile(r"(/home/|/root/|/Users/|/work/|/tmp/|[A-Z]:\\\\)")


def _tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_notebooks_exist_in_order():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(len(numbers))), [p.name for p in NOTEBOOKS]
    assert NOTEBOOKS[0].name == "00_homework.ipynb", "the homework notebook comes first"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_parameters_cell_comes_before_the_setup_that_uses_it(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = next(i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", []))
    setup = next(i for i, c in enumerate(code) if "setup_notebook(" in "".join(c["source"]))
    assert tagged < setup and "setup_notebook(profile_name" in "".join(code[setup]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert "widgets" not in nb.get("metadata", {}), "widget state is committed"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code if c.get("outputs")]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), "execution counts are not one clean run"
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        assert source.strip(), "empty cell"
        assert not TOKEN.search(source), "a token in a cell"
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"stored error output: {source[:60]}"
            text = json.dumps(out, ensure_ascii=False)
            assert not TOKEN.search(text), "a token in an output"
            assert not ABSOLUTE.search(text), f"an absolute path in an output: {ABSOLUTE.search(text).group(0)}"
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_the_common_opening_and_closing(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert sources[0].startswith("# ") and "What you'll learn" in sources[0] and "Open In Colab" in sources[0]
    assert any("setup_notebook(" in s for s in sources[:8])
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one parameters cell"
    assert "## Summary" in "\n".join(sources[-3:]) and "## Exercises" in sources[-1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_trust_remote_code_only_where_said(path):
    text = path.read_text(encoding="utf-8")
    assert "trust_remote_code=True" not in text


def test_no_weights_or_outputs_committed():
    tracked = _tracked()
    assert not [f for f in tracked if f.endswith((".bin", ".pt", ".pth", ".ckpt", ".safetensors"))]
    assert not [f for f in tracked if f.startswith(("outputs/", ".cache/", ".venv/"))]


def test_models_are_saved_and_loaded_as_safetensors():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "helpers").glob("*.py"))
    assert "torch.save(" not in source and "torch.load(" not in source
    assert "safe_serialization=False" not in source
