"""Check a homework result file against its course's format: the file name, the JSON inside it, and its text.

Every fact comes from the preset that writes these files (helpers.homework): the name from result_name, the keys and
their order from result_payload, the text from result_text (indent 4, the course's ensure_ascii), the ids from
test_ids. The first problem found is one line naming the file, the record (index and id) and the key.

What is accepted, and why:
- Answers of any length: the courses ask for short answers, but real, graded submissions exceed the limit.
- An empty answer: the course's code writes whatever greedy decoding returned, and a model that ends at once
  gives "" (a graded answer with no stance). A null or a number is refused: the course's code only writes text.
- One newline at the end, and CRLF line ends: the grader reads the file with a JSON parser, which ignores both; an
  editor adds the first on save, and the course's own `open(..., "w")` writes the second on Windows. Every other
  character must be what the course's json.dump writes (indent 4; HW6 Chinese as is, HW7 ASCII only).
- Ids in any order: each of the course's test ids exactly once; the course's code writes them in its test file's
  order, and the answers are matched to prompts by id.
"""

from __future__ import annotations

import json
import re
import string
from itertools import zip_longest
from pathlib import Path

from helpers.data_rows import _kind
from helpers.errors import DataError
from helpers.homework import HOMEWORKS, Homework, load_homework_preset
from helpers.homework_data import load_test_prompts
from helpers.knobs import KNOBS, STUDENT_ID, KnobError, parse_number

_NUMBER = r"\d+(?:\.\d+)?(?:e[+-]?\d+)?"  # str() of an int or a float: 3, 0.1, 1.0, 1e-05
_PLACEHOLDERS = {"num_epoch": _NUMBER, "data_size": r"\d+", "support_ratio": _NUMBER, "student_id": STUDENT_ID.pattern}


def name_pattern(preset: Homework) -> re.Pattern:
    """The preset's result_name as a regular expression, one named group per placeholder."""
    parts = []
    for literal, field, _, _ in string.Formatter().parse(preset.result_name):
        parts.append(re.escape(literal))
        if field:
            parts.append(f"(?P<{field}>{_PLACEHOLDERS[field]})")
    return re.compile("".join(parts))


def read_name(path: Path, homework: str | None = None) -> tuple[Homework, dict[str, str]]:
    """The homework a file name belongs to (the one given, else the one it matches) and its placeholders' text."""
    matches = {name: found.groupdict() for name, preset in HOMEWORKS.items()
               if (found := name_pattern(preset).fullmatch(path.name))}
    if homework is not None:
        preset = load_homework_preset(homework)
        if homework not in matches:
            other = f" (it is {', '.join(matches)}'s)" if matches else ""
            raise DataError(f"the name is not {homework}'s {preset.result_name}{other}", path)
        return preset, matches[homework]
    if len(matches) != 1:
        names = "; ".join(f"{name} {preset.result_name}" for name, preset in HOMEWORKS.items())
        raise DataError(f"the name matches no homework's result file ({names})", path)
    name, knobs = matches.popitem()
    return HOMEWORKS[name], knobs


def _check_name_knobs(knobs: dict[str, str], path: Path) -> None:
    """The numbers in the name are in their knobs' ranges."""
    for name, text in knobs.items():
        if name in KNOBS:
            try:
                KNOBS[name].check(parse_number(text))
            except (KnobError, ValueError):
                raise DataError(f"the name's {name} is {text}; allowed: {KNOBS[name].allowed()}", path) from None


def _check_keys(found: list, expected: list[str], path: Path, row: str | None) -> None:
    """found has exactly the keys expected, in their order."""
    missing = [key for key in expected if key not in found]
    extra = [key for key in found if key not in expected]
    if missing:
        raise DataError("is missing" + (f"; found {extra[0]!r} instead" if extra else ""), path, row, missing[0])
    if extra:
        raise DataError(f"is not a key of the course's file ({', '.join(expected)})", path, row, extra[0])
    if found != expected:
        raise DataError(f"keys are in the order {', '.join(found)}; the course writes {', '.join(expected)}", path, row)


def _check_record(record, index: int, keys: list[str], path: Path) -> int:
    """One result record: an object with the course's keys in order, an integer id, a prompt, two text answers."""
    if not isinstance(record, dict):
        raise DataError(f"is {_kind(record)}; expected an object", path, f"index {index}")
    whole = isinstance(record.get("id"), int) and not isinstance(record["id"], bool)
    row = f"index {index} (id {record['id']})" if whole else f"index {index}"
    _check_keys(list(record), keys, path, row)
    if not whole:
        raise DataError(f"is {_kind(record['id'])}; expected an integer", path, row, "id")
    for key in keys[1:]:
        if not isinstance(record[key], str):
            raise DataError(f"is {_kind(record[key])}; expected text", path, row, key)
    if not record["prompt"].strip():
        raise DataError("is empty; expected the test prompt", path, row, "prompt")
    return record["id"]


def _check_ids(ids: list[int], expected: tuple[int, ...], path: Path, preset: Homework) -> None:
    """Each expected id exactly once."""
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise DataError(f"id {twice[0]} appears {ids.count(twice[0])} times; each test prompt is answered once", path)
    missing, extra = sorted(set(expected) - set(ids)), sorted(set(ids) - set(expected))
    if missing or extra:
        raise DataError(f"ids are not {preset.name}'s test prompts {ids_text(expected)}: missing "
                        f"{ids_text(missing) or 'none'}, unexpected {ids_text(extra) or 'none'}", path)


def _check_prompts(records: list[dict], test_prompts: Path, path: Path) -> None:
    """The records answer exactly the prompts of the test-prompt file, id for id."""
    tests = {row["id"]: row["prompt"] for row in load_test_prompts(test_prompts)}
    if sorted(tests) != sorted(r["id"] for r in records):
        raise DataError(f"ids are not those of {test_prompts} ({len(tests)} prompts, ids {ids_text(tests)})", path)
    for index, record in enumerate(records):
        if record["prompt"] != tests[record["id"]]:
            raise DataError(f"is not {test_prompts}'s prompt for id {record['id']}", path,
                            f"index {index} (id {record['id']})", "prompt")


def _check_text(text: str, payload, preset: Homework, path: Path) -> None:
    """The text is what the course's json.dump writes (one final newline and CRLF line ends allowed)."""
    found = text.replace("\r\n", "\n").removesuffix("\n").split("\n")
    expected = preset.result_text(payload).split("\n")
    for number, (line, want) in enumerate(zip_longest(found, expected), 1):
        if line == want:
            continue
        where = f"line {number}"
        if line is None or want is None:
            raise DataError("ends early" if line is None else "has more text after the course's json.dump output "
                            "(only one newline may follow it)", path, where)
        escape = re.search(r"\\u([0-9a-fA-F]{4})", line)
        if not preset.ensure_ascii and escape and not want.isascii():
            raise DataError(f"non-ASCII text written as \\u escapes (\\u{escape.group(1)} is "
                            f"{chr(int(escape.group(1), 16))!r}); the course writes it as is: json.dump(..., "
                            "ensure_ascii=False)", path, where)
        if preset.ensure_ascii and not line.isascii():
            char = next(c for c in line if not c.isascii())
            raise DataError(f"non-ASCII character {char!r}; the course escapes it (\\u{ord(char):04x}): json.dump's "
                            "default ensure_ascii=True", path, where)
        indent, wanted = len(line) - len(line.lstrip(" ")), len(want) - len(want.lstrip(" "))
        if indent != wanted:
            raise DataError(f"is indented by {indent} spaces, not {wanted}: the course writes json.dump(..., indent=4)",
                            path, where)
        raise DataError(f"reads {line[:60]!r}; the course's json.dump(..., indent=4) writes {want[:60]!r}", path, where)


def ids_text(ids) -> str:
    """1–10 for a run of ids, else the ids comma-separated."""
    ids = sorted(ids)
    if len(ids) > 1 and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}–{ids[-1]}"
    return ", ".join(map(str, ids))


def check_result_file(path, homework: str | None = None, test_prompts=None) -> dict:
    """Check a result file against its homework's format; the summary, or a DataError naming the first problem."""
    path = Path(path)
    preset, knobs = read_name(path, homework)
    _check_name_knobs(knobs, path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except UnicodeDecodeError as error:
        raise DataError(f"is not UTF-8 text (byte {error.start})", path) from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"is not JSON: {error.msg} (column {error.colno})", path, f"line {error.lineno}") from None
    shape = preset.result_payload([{"id": 0, "prompt": ""}], [""], [""], 0, 0, 0)  # the writer's keys, in order
    records = payload
    if preset.wrapped:
        if not isinstance(payload, dict):
            raise DataError(f"is {_kind(payload)}; {preset.name}'s file is an object ({', '.join(shape)})", path)
        _check_keys(list(payload), list(shape), path, None)
        records = payload["results"]
        for name in (key for key in shape if key != "results"):
            value = payload[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"is {_kind(value)}; expected a number", path, None, name)
            if str(value) != knobs[name]:
                raise DataError(f"is {value}, but the file name says {knobs[name]}", path, None, name)
        shape = shape["results"]
    if not isinstance(records, list):
        raise DataError(f"is {_kind(records)}; expected a list of records", path, None, "results" if preset.wrapped
                        else None)
    expected = preset.test_ids
    if len(records) != len(expected):
        raise DataError(f"has {len(records)} records; {preset.name}'s file has {len(expected)}, one per test prompt "
                        f"(ids {ids_text(expected)})", path)
    ids = [_check_record(record, index, list(shape[0]), path) for index, record in enumerate(records)]
    _check_ids(ids, expected, path, preset)
    if test_prompts is not None:
        _check_prompts(records, Path(test_prompts), path)
    _check_text(text, payload, preset, path)
    return {"file": str(path), "homework": preset.name, "course": preset.course, "knobs": knobs,
            "records": len(records), "ids": ids}


def summary_line(summary: dict) -> str:
    """The one line the command prints for a file that passes."""
    knobs = ", ".join(f"{name} {value}" for name, value in summary["knobs"].items())
    return (f"{summary['file']}: ok, a {summary['homework']} result file; {knobs}; {summary['records']} answers, "
            f"ids {ids_text(summary['ids'])}")
