"""The out-of-topic probes: they load, share no prompt with the rows a run trains or measures on, and follow the
profile's languages like every other file."""

from __future__ import annotations

import json
from collections import Counter

from helpers import data
from helpers.runs import RunConfig, load_inputs


def _same(text: str) -> str:
    """A prompt compared without case, spacing or final punctuation."""
    return " ".join(text.lower().split()).rstrip("?？ ")


def test_probes_load_and_share_no_prompt_with_training_or_held_out_rows():
    probes = data.load_probe_rows()
    assert len(probes) == 48 and Counter(r["topic"] for r in probes) == {
        "novels-to-film": 12, "games-to-film": 12, "remakes": 12, "unrelated": 12}
    used = {_same(r["prompt"]) for r in data.load_homework() + data.load_eval_rows() + data.load_test_prompts()}
    assert not [r["id"] for r in probes if _same(r["prompt"]) in used]
    inputs = load_inputs(RunConfig(profile="tiny"))
    assert [r["id"] for r in inputs.probe_rows] == [r["id"] for r in probes]  # both languages on the tiny model


def test_an_english_only_profile_gets_the_english_probes():
    inputs = load_inputs(RunConfig(profile="smollm2-135m"))
    assert len(inputs.probe_rows) == 24 and {r["lang"] for r in inputs.probe_rows} == {"en"}
    assert {r["lang"] for r in inputs.eval_rows} == {"en"}


def test_a_probe_in_the_training_file_is_not_a_probe(tmp_path):
    probe = data.load_probe_rows()[0]
    rows = data.load_homework()[:10] + [{k: probe[k] for k in ("id", "prompt", "support", "oppose", "lang")} |
                                        {"id": 999}]
    path = tmp_path / "labelled.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    inputs = load_inputs(RunConfig(profile="tiny", data=str(path)))
    assert probe["id"] not in [r["id"] for r in inputs.probe_rows] and len(inputs.probe_rows) == 47
