"""Real-world preference files: repeated speakers refused, bad rows skipped with a report, duplicates counted,
JSON Lines streamed, Parquet and datasets-folder outputs; and a property test that check and convert agree."""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import cli, data, data_stream
from helpers.config import SAMPLES_DIR
from helpers.errors import DataError, UserError


def hh(*turns: tuple[str, str]) -> str:
    """An hh-rlhf transcript: "\\n\\nHuman: …\\n\\nAssistant: …"."""
    return "".join(f"\n\n{who}: {text}" for who, text in turns)


def hh_pair(prefix: list[tuple[str, str]], chosen: str, rejected: str) -> dict:
    return {"chosen": hh(*prefix, ("Assistant", chosen)), "rejected": hh(*prefix, ("Assistant", rejected))}


def write_jsonl(path: Path, rows: list) -> Path:
    """One JSON object per line; a str row is written as it is (a malformed line)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


GOOD = hh_pair([("Human", "How do I boil an egg?")], "Simmer it for nine minutes.", "Just microwave it.")

# hh-rlhf's quirks, each as the second row of a file (line 2)
QUIRKS = {
    "glued Human inside an assistant turn": (
        {"chosen": hh(("Human", "How do I boil an egg?"),
                      ("Assistant", "Simmer it for nine minutes.  Human: And a soft one?"),
                      ("Assistant", "About six minutes.")),
         "rejected": hh(("Human", "How do I boil an egg?"),
                        ("Assistant", "Simmer it for nine minutes.  Human: And a soft one?"),
                        ("Assistant", "Boil it for an hour."))},
        "chosen", r"turn 2 \(Assistant\) holds a 'Human:' without the blank line before it"),
    "glued Human in the final reply": (
        hh_pair([("Human", "Name a red fruit.")], "A strawberry.\nHuman: thanks", "A banana."),
        "chosen", r"turn 2 \(Assistant\) holds a 'Human:'"),
    "two Human turns in a row": (
        hh_pair([("Human", "Hi"), ("Human", "Are you there?")], "Yes, how can I help?", "No."),
        "chosen", "turns 1 and 2 are both the Human's"),
    "two Assistant turns in a row": (
        hh_pair([("Human", "Hi"), ("Assistant", "Hello!")], "How can I help?", "What?"),
        "chosen", "turns 2 and 3 are both the Assistant's"),
    "an empty final reply": (
        {"chosen": hh(("Human", "Tell me a joke."), ("Assistant", "Why did the chicken cross the road?")),
         "rejected": hh(("Human", "Tell me a joke."), ("Assistant", ""))},
        "rejected", r"turn 2 \(Assistant\) is empty"),
    "a transcript ending with the Human": (
        {"chosen": hh(("Human", "Hi"), ("Assistant", "Hello."), ("Human", "Bye")),
         "rejected": hh(("Human", "Hi"), ("Assistant", "Go away."), ("Human", "Bye"))},
        "chosen", "ends with turn 3, the Human's"),
}


@pytest.mark.parametrize("quirk", QUIRKS)
def test_hh_rlhf_quirks_are_refused_by_check_and_convert(tmp_path, quirk):
    record, field, problem = QUIRKS[quirk]
    source = write_jsonl(tmp_path / "hh.jsonl", [GOOD, record])
    expected = f"^{re.escape(str(source))}: line 2: field '{field}': {problem}"
    with pytest.raises(DataError, match=expected):
        data.check_file(source)
    out = tmp_path / "out" / "pairs.jsonl"
    with pytest.raises(DataError, match=expected):
        data.convert_file(source, "auto", out)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["hh.jsonl"]  # nothing written, no folder left


@pytest.mark.parametrize("quirk", QUIRKS)
def test_hh_rlhf_quirks_are_skipped_and_listed(tmp_path, quirk):
    record, field, problem = QUIRKS[quirk]
    source = write_jsonl(tmp_path / "hh.jsonl", [GOOD, record, GOOD])
    report = data.convert_file(source, "auto", tmp_path / "pairs.jsonl", skip_bad_rows=True)
    assert (report.rows, report.pairs, report.duplicated) == (3, 2, 1)
    [skipped] = read_jsonl(tmp_path / "skipped_rows.jsonl")
    assert (skipped["line"], skipped["field"], skipped["file"]) == (2, field, str(source))
    assert re.match(problem, skipped["reason"])
    assert read_jsonl(tmp_path / "pairs.jsonl") == [data.load_preference_file(source, skipped=data.Skipped())[0]] * 2


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


SAMPLE_OF = {"multi-turn": "multi-turn.json", "sft-messages": "sft-messages.jsonl",
             "trl-conversational": "trl-conversational.jsonl",
             "trl-conversational-implicit": "trl-conversational-implicit.jsonl"}


@pytest.mark.parametrize("record, fmt, field, problem", [
    ({"messages": [{"role": "user", "value": "a"}, {"role": "user", "value": "b"},
                   {"role": "assistant", "chosen_value": "c", "rejected_value": "d"}]},
     "multi-turn", "messages[1]", "is a second user message in a row"),
    ({"messages": [{"role": "user", "value": "a"}, {"role": "assistant", "value": "b"},
                   {"role": "assistant", "chosen_value": "c", "rejected_value": "d"}]},
     "multi-turn", "messages[2]", "is a second assistant message in a row"),
    ({"messages": [user("a"), user("b"), assistant("c")]}, "sft-messages", "messages[1]", "second user message"),
    ({"messages": [user("a"), assistant("b"), user("c")]}, "sft-messages", "messages", "must end with an assistant"),
    ({"messages": [assistant("a"), user("b"), assistant("c")]}, "sft-messages", "messages[0]", "must start with"),
    ({"messages": [user("a"), {"role": "system", "content": "s"}, assistant("c")]}, "sft-messages", "messages[1]",
     "only the first message may be one"),
    ({"prompt": [user("a"), user("b")], "chosen": [assistant("c")], "rejected": [assistant("d")]},
     "trl-conversational", "prompt[1]", "second user message"),
    ({"prompt": [user("a")], "chosen": [assistant("c"), assistant("e")], "rejected": [assistant("d")]},
     "trl-conversational", "chosen", r"holds \[assistant, assistant\]; expected exactly one assistant message"),
    ({"chosen": [user("a"), assistant("b"), assistant("c")], "rejected": [user("a"), assistant("b"), assistant("d")]},
     "trl-conversational-implicit", "chosen[2]", "second assistant message"),
    ({"chosen": [user("a"), assistant("b"), user("c"), assistant("d")],
      "rejected": [user("a"), assistant("x"), user("c"), assistant("d")]},
     "trl-conversational-implicit", "chosen", "goes on for 3 turns after the prompt"),
])
def test_consecutive_turns_are_refused_in_every_multi_turn_format(tmp_path, record, fmt, field, problem):
    good = data.read_records(SAMPLES_DIR / SAMPLE_OF[fmt])[0]
    source = write_jsonl(tmp_path / "rows.jsonl", [good, record])
    with pytest.raises(DataError, match=f"line 2: field '{re.escape(field)}': .*{problem}"):
        data.check_file(source, fmt)
    with pytest.raises(DataError, match=f"line 2: field '{re.escape(field)}'"):
        data.convert_file(source, fmt, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


# ---------------------------------------------------------------- --skip-bad-rows on 3 bad rows among 1,000


def thousand_rows(tmp_path: Path) -> tuple[Path, list[int]]:
    """1,000 hh-rlhf rows (every pair twice), three of them bad: lines 17, 500 and 1000."""
    rows: list = [hh_pair([("Human", f"Question {i // 2}?")], f"Answer {i // 2}.", "No idea.") for i in range(1000)]
    rows[16] = QUIRKS["two Human turns in a row"][0]
    rows[499] = '{"chosen": "\\n\\nHuman: cut off'
    rows[999] = hh_pair([("Human", "Same?")], "Same.", "Same.")
    return write_jsonl(tmp_path / "thousand.jsonl", rows), [17, 500, 1000]


def test_skip_bad_rows_writes_997_pairs_and_lists_3_lines(tmp_path, capsys):
    source, bad = thousand_rows(tmp_path)
    out = tmp_path / "out" / "pairs.jsonl"
    assert cli.main(["data", "convert", str(source), "--out", str(out), "--skip-bad-rows"]) == 0
    printed = capsys.readouterr().out
    assert len(read_jsonl(out)) == 997
    assert f"wrote 997 pairs to {out} (1,000 rows in" in printed
    assert "skipped 3 bad rows:" in printed and "first at line 17, line 500, line 1000" in printed
    assert "1 × field 'chosen': turns N and N are both the Human's" in printed
    assert "497 duplicated pairs" in printed  # 500 distinct pairs in 997: three lost their second copy
    listed = read_jsonl(out.parent / "skipped_rows.jsonl")
    assert [row["line"] for row in listed] == bad
    assert [row["field"] for row in listed] == ["chosen", None, "chosen"]
    assert "malformed JSON" in listed[1]["reason"] and "identical" in listed[2]["reason"]
    assert cli.main(["data", "check", str(source), "--skip-bad-rows"]) == 0
    assert "997 valid pairs (1,000 rows in" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["check", "convert"])
def test_without_the_flag_the_first_bad_row_is_the_error(tmp_path, capsys, command):
    source, _ = thousand_rows(tmp_path)
    out = tmp_path / "out" / "pairs.jsonl"
    args = ["data", command, str(source)] + (["--out", str(out)] if command == "convert" else [])
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: {source}: line 17: field 'chosen': turns 1 and 2 are both the "
                                         "Human's; Human and Assistant must take turns"]
    assert not (tmp_path / "out").exists()
    if command == "convert":
        assert captured.out == ""
    else:  # check goes on to the end of the file: the three bad rows by reason, and how to convert the others
        assert "997 valid pairs (1,000 rows in" in captured.out and "3 bad rows, by reason" in captured.out
        assert f"python -m helpers data convert {source} --out pairs.jsonl --skip-bad-rows" in captured.out


def several_kinds_of_bad_rows(tmp_path: Path) -> Path:
    """20 hh-rlhf rows, 10 of them bad in four ways: 6 repeated speakers (lines 2, 4, …, 12), 2 cut-off lines (13 and
    15), an identical pair (17) and an empty answer (19); line 20 repeats line 1."""
    rows: list = [hh_pair([("Human", f"Question {i}?")], f"Answer {i}.", "No idea.") for i in range(20)]
    for line in (2, 4, 6, 8, 10, 12):
        rows[line - 1] = QUIRKS["two Human turns in a row"][0]
    rows[12] = rows[14] = '{"chosen": "\\n\\nHuman: cut off'
    rows[16] = hh_pair([("Human", "Same?")], "Same.", "Same.")
    rows[18] = QUIRKS["an empty final reply"][0]
    rows[19] = rows[0]
    return write_jsonl(tmp_path / "mixed.jsonl", rows)


def test_check_reports_every_bad_row_by_reason_and_how_to_convert_the_rest(tmp_path, capsys):
    source = several_kinds_of_bad_rows(tmp_path)
    assert cli.main(["data", "check", str(source)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: {source}: line 2: field 'chosen': turns 1 and 2 are both the "
                                         "Human's; Human and Assistant must take turns"]
    first, *lines = captured.out.splitlines()
    assert first.startswith(f"{source}: format hh-rlhf, 10 valid pairs (20 rows in ")
    assert lines[0].startswith("1 duplicated pair (equal to an earlier one)")
    assert lines[1] == "10 bad rows, by reason (the first lines of each):"
    assert lines[2] == ("  6 × field 'chosen': turns N and N are both the Human's; Human and Assistant must take "
                        "turns (at lines 2, 4, 6, 8, 10, …)")
    assert re.fullmatch(r"  2 × malformed JSON: .* \(at lines 13, 15\)", lines[3])
    assert sorted(lines[4:6]) == [
        "  1 × field 'chosen': is identical to 'rejected', or a prefix of it; no answer to prefer (at line 17)",
        "  1 × field 'rejected': turn N (Assistant) is empty (at line 19)"]
    command = f"python -m helpers data convert {source} --out pairs.jsonl --skip-bad-rows"
    assert lines[6:] == ["to convert the 10 valid pairs and list the bad rows in skipped_rows.jsonl beside the "
                         "output:", "  " + command]
    report = data.check_file(source, every_row=True)  # the counts only, not a list of every bad row
    assert (report.pairs, len(report.skipped), report.skipped.rows) == (10, 10, [])
    out = tmp_path / "pairs.jsonl"  # the printed command, writing into this test's folder
    assert cli.main(shlex.split(command.replace("pairs.jsonl", str(out)))[3:]) == 0
    assert "wrote 10 pairs" in capsys.readouterr().out and len(read_jsonl(out)) == 20 - 10
    assert [row["line"] for row in read_jsonl(tmp_path / "skipped_rows.jsonl")] == [2, 4, 6, 8, 10, 12, 13, 15, 17,
                                                                                    19]
    assert cli.main(["data", "check", str(source), "--skip-bad-rows"]) == 0  # the bad rows accepted as skipped
    assert "10 bad rows, by reason" in capsys.readouterr().out


def test_check_of_a_file_with_no_valid_row_reports_it_and_exits_2(tmp_path, capsys):
    source = write_jsonl(tmp_path / "bad.jsonl", [hh_pair([("Human", "Hi")], "Same.", "Same.")] * 3)
    for flag in ([], ["--skip-bad-rows"]):
        assert cli.main(["data", "check", str(source), *flag]) == 2
        captured = capsys.readouterr()
        assert "format hh-rlhf, 0 valid pairs (3 rows in" in captured.out and "data convert" not in captured.out
        assert "  3 × field 'chosen': is identical to 'rejected'" in captured.out
        assert captured.err.startswith(f"error: {source}: line 1: field 'chosen': is identical")


def test_duplicates_are_counted_without_skipping(tmp_path):
    rows = [hh_pair([("Human", f"Q{i % 3}")], f"A{i % 3}", "B") for i in range(10)]  # 3 distinct pairs, 10 rows
    report = data.check_file(write_jsonl(tmp_path / "dup.jsonl", rows))
    assert (report.pairs, report.duplicated, report.repeated, report.most_repeats) == (10, 7, 3, 4)
    assert report.skipped is None and "7 duplicated pairs" in report.lines()[1]


def test_a_file_of_only_bad_rows_is_refused_even_when_skipping(tmp_path):
    source = write_jsonl(tmp_path / "bad.jsonl", ["{oops", QUIRKS["an empty final reply"][0]])
    with pytest.raises(DataError, match="no valid rows: all 2 are bad"):
        data.convert_file(source, "auto", tmp_path / "out.jsonl", skip_bad_rows=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


# ---------------------------------------------------------------- streaming, progress, outputs


def test_json_lines_are_streamed_not_read_whole(tmp_path, monkeypatch):
    source = write_jsonl(tmp_path / "pairs.jsonl", [GOOD] * 3)

    def whole_file(*args, **kwargs):
        raise AssertionError("a .jsonl file was read whole")

    monkeypatch.setattr(Path, "read_text", whole_file)
    monkeypatch.setattr(Path, "read_bytes", whole_file)
    assert data.check_file(source).pairs == 3
    assert data.check_file(source, every_row=True).pairs == 3
    assert data.convert_file(source, "auto", tmp_path / "out.jsonl").pairs == 3


def test_progress_bar_only_past_a_few_thousand_rows(tmp_path, capsys, monkeypatch):
    source = write_jsonl(tmp_path / "pairs.jsonl", [GOOD] * 2000)
    data.check_file(source, progress=True)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(data_stream, "PROGRESS_AFTER", 1000)
    data.check_file(source, progress=True)
    assert "pairs.jsonl" in capsys.readouterr().err  # the bar, named after the file


@pytest.mark.parametrize("out_name", ["pairs.parquet", "pairs/"])
def test_parquet_and_datasets_folder_hold_the_same_pairs(tmp_path, out_name):
    from datasets import Dataset, load_from_disk

    source, _ = thousand_rows(tmp_path)
    reference = data.convert_file(source, "auto", tmp_path / "ref.jsonl", skip_bad_rows=True)
    out = f"{tmp_path}/{out_name}"
    report = data.convert_file(source, "auto", out, skip_bad_rows=True)
    assert report.pairs == reference.pairs == 997
    written = load_from_disk(out) if out.endswith("/") else Dataset.from_parquet(out)
    assert written.to_list() == read_jsonl(tmp_path / "ref.jsonl")
    listed = Path(out) / "skipped_rows.jsonl" if out.endswith("/") else tmp_path / "skipped_rows.jsonl"
    assert len(read_jsonl(listed)) == 3


def test_a_folder_of_other_files_is_not_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(UserError, match="holding other files"):
        data.convert_file(SAMPLES_DIR / "orca.jsonl", "auto", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_standard_input_stays_standard_text(tmp_path):
    out = tmp_path / "standard.jsonl"
    data.convert_file(SAMPLES_DIR / "trl-standard.jsonl", "auto", out)
    first = read_jsonl(out)[0]
    assert first == {"prompt": "The capital of France is", "chosen": " Paris.", "rejected": " London."}


# ---------------------------------------------------------------- check and convert agree (property test)

TEXTS = ["Hi", "Sure, here you go.", "two\nlines", "多謝", "  ", "", "ok  Human: more", "Assistant: again"]
GLUED = {"ok  Human: more", "Assistant: again"}
turns = st.lists(st.tuples(st.sampled_from(["user", "assistant"]), st.sampled_from(TEXTS)), min_size=1, max_size=5)


def is_well_formed(prompt: list[dict], text_rules: bool) -> bool:
    """The oracle: user first, user and assistant taking turns, ending with the user; no empty (or glued) text."""
    roles = [m["role"] for m in prompt]
    if not roles or roles[-1] != "user" or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        return False
    return all(m["content"].strip() and not (text_rules and m["content"] in GLUED) for m in prompt)


def expected_pair(prefix: list, chosen: str, rejected: str, hh_format: bool) -> dict | None:
    """The pair a valid row must become, or None when the row must be refused."""
    prompt = [{"role": role, "content": text} for role, text in prefix]
    if not is_well_formed(prompt, hh_format) or not chosen.strip() or not rejected.strip():
        return None
    if hh_format and (chosen in GLUED or rejected in GLUED):
        return None
    if chosen.strip() == rejected.strip():
        return None
    strip = (lambda s: s.strip()) if hh_format else (lambda s: s)
    return {"prompt": [{"role": m["role"], "content": strip(m["content"])} for m in prompt],
            "chosen": [assistant(strip(chosen))], "rejected": [assistant(strip(rejected))]}


def as_record(prefix: list, chosen: str, rejected: str, hh_format: bool) -> dict:
    if hh_format:
        names = {"user": "Human", "assistant": "Assistant"}
        return hh_pair([(names[role], text) for role, text in prefix], chosen, rejected)
    messages = [{"role": role, "content": text} for role, text in prefix]
    return {"chosen": messages + [assistant(chosen)], "rejected": messages + [assistant(rejected)]}


def alternates(pair: dict) -> bool:
    roles = [m["role"] for m in pair["prompt"]]
    return (all(a != b for a, b in zip(roles, roles[1:])) and roles[0] == "user" and roles[-1] == "user"
            and [m["role"] for m in pair["chosen"]] == ["assistant"] == [m["role"] for m in pair["rejected"]])


@settings(max_examples=60, deadline=None)
@given(st.booleans(), st.lists(st.tuples(turns, st.sampled_from(TEXTS), st.sampled_from(TEXTS)), min_size=1,
                               max_size=8))
def test_a_row_check_calls_valid_is_a_row_convert_writes_correctly(hh_format, rows):
    fmt = "hh-rlhf" if hh_format else "trl-conversational-implicit"
    records = [as_record(prefix, chosen, rejected, hh_format) for prefix, chosen, rejected in rows]
    expected = {line: pair for line, pair in enumerate(
        (expected_pair(prefix, chosen, rejected, hh_format) for prefix, chosen, rejected in rows), start=1) if pair}
    with tempfile.TemporaryDirectory() as scratch:
        source = write_jsonl(Path(scratch) / "rows.jsonl", records)
        try:
            checked = data.check_file(source, fmt, skip_bad_rows=True)
        except DataError as error:  # no row at all passed
            assert not expected and "no valid rows" in str(error)
            return
        converted = data.convert_file(source, fmt, Path(scratch) / "out.jsonl", skip_bad_rows=True)
        written = read_jsonl(Path(scratch) / "out.jsonl")
        try:  # without skipping, both refuse the same first row, or both pass
            strict = data.check_file(source, fmt).pairs
        except DataError as error:
            strict = error.row
            with pytest.raises(DataError, match=f": {strict}: "):
                data.convert_file(source, fmt, Path(scratch) / "strict.jsonl")
    assert checked.skipped.rows == converted.skipped.rows
    assert [row["line"] for row in checked.skipped.rows] == [n for n in range(1, len(rows) + 1) if n not in expected]
    assert checked.pairs == converted.pairs == len(written) == len(expected)
    assert written == list(expected.values())  # each valid row written exactly as the oracle says
    assert all(alternates(pair) for pair in written)
    first_bad = min(set(range(1, len(rows) + 1)) - set(expected), default=None)
    assert strict == (len(expected) if first_bad is None else f"line {first_bad}")


# ---------------------------------------------------------------- run --skip-bad-rows


def broken_labelled_file(tmp_path: Path) -> Path:
    """20 labelled rows of the bundled data, three of them broken (indexes 3, 9 and 15)."""
    rows = [dict(row) for row in data.load_homework()[:20]]
    rows[3]["support"] = ""
    rows[9]["id"] = rows[8]["id"]
    rows[15]["support"] = rows[15]["oppose"]
    path = tmp_path / "labelled.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def test_run_refuses_bad_rows_without_the_flag_and_skips_them_with_it(tmp_path, monkeypatch, capsys):
    import sys
    import types

    source, out = broken_labelled_file(tmp_path), tmp_path / "run"
    args = ["run", "--profile", "tiny", "--support-ratio", "1", "--data", str(source), "--out", str(out)]
    assert cli.main(args) == 2
    assert capsys.readouterr().err == f"error: {source}: id 4: field 'support': is empty\n" and not out.exists()

    trained = {}

    def fake_pipeline(config, out_dir, **kwargs):  # stands in for training: what would it have been given?
        from helpers.runs import load_inputs

        trained["rows"] = [row["id"] for row in load_inputs(config).train_rows]
        Path(out_dir).mkdir(exist_ok=True)  # check_run_request has made it
        return {"stages": {"dpo": {"support_rate": 1.0}}, "timings": {"total": 0.0}}

    monkeypatch.setitem(sys.modules, "helpers.pipeline", types.SimpleNamespace(run_pipeline=fake_pipeline))
    assert cli.main(args + ["--skip-bad-rows"]) == 0
    assert "skipped 3 bad rows" in capsys.readouterr().out
    assert trained["rows"] == [i for i in range(1, 21) if i not in (4, 10, 16)]
    listed = read_jsonl(out / "skipped_rows.jsonl")
    assert [(r["index"], r.get("row"), r["field"]) for r in listed] == [
        (3, "id 4", "support"), (9, "id 9", "id"), (15, "id 16", "support")]


def test_runs_saved_before_skip_bad_rows_existed_are_the_same_run(tmp_path):
    from dataclasses import asdict

    from helpers.files import write_json_atomic
    from helpers.runs import COMPLETE_MARKER, RunConfig, check_out_dir, is_same_run

    saved = asdict(RunConfig(support_ratio=0.5))
    del saved["skip_bad_rows"]  # a config.json written before the setting was added
    write_json_atomic(tmp_path / "config.json", saved)
    check_out_dir(tmp_path, RunConfig(support_ratio=0.5), overwrite=False)  # not "other settings"
    (tmp_path / COMPLETE_MARKER).write_text("complete\n")
    assert is_same_run(tmp_path, RunConfig(support_ratio=0.5))
    assert not is_same_run(tmp_path, RunConfig(support_ratio=0.5, skip_bad_rows=True))
    assert not is_same_run(tmp_path, RunConfig(support_ratio=1.0))


# ---------------------------------------------------------------- the data bench's file and its two paths


def test_bench_file_and_both_paths_agree(tmp_path):
    from helpers.data_bench import _child, make_hh_file

    source = tmp_path / "hh.jsonl"
    facts = make_hh_file(source, rows=400, repeats=20)
    report = data.check_file(source, skip_bad_rows=True)
    assert (report.rows, report.pairs) == (400, 395) and facts["distinct_pairs"] == 20
    assert [row["line"] for row in report.skipped.rows] == facts["bad_lines"]
    assert report.duplicated == 395 - report.repeated and report.repeated <= 20  # each pair about 20 times
    streamed = _child("convert to JSONL, streamed", source, tmp_path / "streamed" / "pairs.jsonl")
    whole = _child("convert to JSONL, whole file", source, tmp_path / "whole" / "pairs.jsonl")
    assert streamed["pairs"] == whole["pairs"] == 395 and streamed["rows"] == whole["rows"] == 400
    assert (tmp_path / "streamed" / "pairs.jsonl").read_bytes() == (tmp_path / "whole" / "pairs.jsonl").read_bytes()
