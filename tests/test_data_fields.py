"""No field left behind: every field of a record is read by its format or on the format's short list of ids, scores
and metadata, or the row is refused naming the field; detection picks the one format that reads a record whole."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import data
from helpers.data_fields import IDS_SCORES_METADATA, PROMPT_LIKE, Fields, detect
from helpers.data_formats import FIELDS
from helpers.errors import DataError


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_every_format_declares_its_fields_and_none_may_drop_a_prompt():
    assert set(FIELDS) == set(data.FORMATS) | set(data.SFT_FORMATS)
    assert not set(IDS_SCORES_METADATA) & set(PROMPT_LIKE)
    for name, fields in FIELDS.items():
        assert not set(fields.ignorable) & set(PROMPT_LIKE), name
        assert not set(fields.ignorable) & {*fields.needed, *fields.optional}, name


# Each record holds a prompt-like field that the named format does not read: converting it would lose the prompt.
# Detected instead, it goes to the format that reads it (MedicalGPT's current layout: sharegpt), or none.
UNREAD_PROMPTS = [
    ({"conversations": [{"from": "human", "value": "問題？"}], "chosen": "好答案。", "rejected": "壞答案。"},
     "trl-standard-implicit", "conversations", "sharegpt"),
    ({"instruction": "Translate to English.", "input": "貓", "chosen": "cat", "rejected": "dog"},
     "trl-standard-implicit", "instruction", None),
    ({"question": "q?", "history": [["hi", "hello"]], "chosen": "a", "rejected": "b"}, "orca", "history", None),
    ({"system": "Be brief.", "prompt": "p", "chosen": "a", "rejected": "b"}, "trl-standard", "system", None),
    ({"id": 1, "prompt": "p?", "support": "a", "oppose": "b", "system": "s"}, "homework", "system", None),
    ({"question": "q?", "response_chosen": "a", "response_rejected": "b", "input": "context"}, "medicalgpt", "input",
     None),
]


@pytest.mark.parametrize("record, fmt, field, detected", UNREAD_PROMPTS)
def test_an_unread_prompt_like_field_is_refused_never_dropped(tmp_path, record, fmt, field, detected):
    source = write_jsonl(tmp_path / "rows.jsonl", [record])
    out = tmp_path / "out.jsonl"
    row = "id 1" if "id" in record else "line 1"
    named = f"^{re.escape(str(source))}: {row}: field '{field}': holds part of the prompt, and format {fmt} does not"
    with pytest.raises(DataError, match=named):  # the format named: the row is refused, naming the field
        data.check_file(source, fmt)
    with pytest.raises(DataError, match=named):
        data.convert_file(source, fmt, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
    if detected:
        [pair] = data.load_preference_file(source).to_list()
        assert data.detect_format([record]) == detected and pair["prompt"] == [{"role": "user", "content": "問題？"}]
        return
    with pytest.raises(DataError, match=f"^{re.escape(str(source))}: (unknown|ambiguous) format: .*{fmt} would "
                                        f"leave '{field}'"):  # detected: no format reads the record whole
        data.convert_file(source, "auto", out)
    assert not out.exists()


def test_a_later_row_with_an_unread_field_is_refused_by_line_and_field(tmp_path):
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    source = write_jsonl(tmp_path / "rows.jsonl", [good, {**good, "model": "x"}, {**good, "system": "s"}, good])
    with pytest.raises(DataError, match=r"line 2: field 'model': is not read by format trl-standard \(it reads "
                                        r"prompt, chosen, rejected, and leaves out only ids, scores and metadata"):
        data.convert_file(source, "auto", tmp_path / "out.jsonl")
    report = data.check_file(source, skip_bad_rows=True)
    assert (report.format, report.pairs) == ("trl-standard", 2)
    assert [(row["line"], row["field"]) for row in report.skipped.rows] == [(2, "model"), (3, "system")]
    assert report.skipped.rows[1]["reason"].startswith("holds part of the prompt, and format trl-standard does not")


def test_ids_scores_and_metadata_may_stay_unread(tmp_path):
    record = {"prompt": "p", "chosen": "a", "rejected": "b", "prompt_id": "x1", "score_chosen": 8.5,
              "score_rejected": 3.0, "source": "web", "metadata": {"judge": "people"}}
    source = write_jsonl(tmp_path / "rows.jsonl", [record])
    report = data.convert_file(source, "auto", tmp_path / "out.jsonl")
    assert (report.format, report.pairs) == ("trl-standard", 1)
    assert json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8")) == {"prompt": "p", "chosen": "a",
                                                                                "rejected": "b"}


def test_detection_prefers_the_format_that_reads_every_field():
    text = {"chosen": "a", "rejected": "b"}
    assert data.detect_format([text]) == "trl-standard-implicit"
    assert data.detect_format([{**text, "prompt": "p"}]) == "trl-standard"
    assert data.detect_format([{**text, "question": "q", "system": ""}]) == "orca"
    assert data.detect_format([{**text, "conversations": [{"from": "human", "value": "q"}]}]) == "sharegpt"
    assert data.detect_format([{"question": "q", "response_chosen": "a", "response_rejected": "b"}]) == "medicalgpt"


def test_an_ambiguous_record_is_refused_naming_the_candidates(tmp_path):
    record = {"prompt": "p?", "question": "q?", "chosen": "a", "rejected": "b"}
    with pytest.raises(DataError, match=r"ambiguous format: the first record has fields \['chosen', 'prompt', "
                                        r"'question', 'rejected'\], and no format reads them all: orca would leave "
                                        r"'prompt' unread; trl-standard would leave 'question' unread; "
                                        r"trl-standard-implicit would leave 'prompt', 'question' unread"):
        data.check_file(write_jsonl(tmp_path / "rows.jsonl", [record]))
    formats = {"one": Fields(("a",), optional=("b",)), "two": Fields(("b",), optional=("a",)), "three": Fields(("c",))}
    assert detect({"a": 1}, formats) == "one"
    with pytest.raises(DataError, match=r"^x.jsonl: ambiguous format: the first record's fields \['a', 'b'\] fit one "
                                        r"and two alike; name the format \(--format\)"):
        detect({"a": 1, "b": 2}, formats, "x.jsonl")
