"""Notebook 05's glossary names every measurement a run saves and every curve DPO logs."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.plots import DPO_CURVES
from helpers.row_values import ROW_METRICS

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_compare.ipynb"


def test_the_glossary_covers_every_measurement_and_logged_curve():
    cells = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]]
    glossary = next(c for c in cells if c.startswith("## 3 What the numbers mean"))
    rows = [line for line in glossary.splitlines() if line.startswith("| `")]
    named = {name for line in rows for name in line.split("|")[1].replace("(logs)", "").replace("`", "").split(",")}
    names = {name.strip() for name in named}
    missing = ({*ROW_METRICS, "judge_heldout_accuracy", *DPO_CURVES} - names)
    assert not missing, f"not in 05's glossary: {sorted(missing)}"
    assert all(len(line.split("|")) == 7 for line in rows), "every row has: name, what, good, trouble, where"
