"""Reading preference files record by record, and the checks every row passes.

Every problem raises DataError ("FILE: row ROW: field 'FIELD': problem") before any tokenization. Rows are named the
same way everywhere: "id 7" (or "qid 7") when the record has an id, else "line 3" in a JSON Lines file (the 1-based
line) or "index 2" in a JSON list (the 0-based position).

JSON Lines files are read one line at a time, never whole; a bad line comes out as its DataError, so a caller can
refuse the file (the default) or leave the row out and record it in a Skipped.

Conversations are well-formed or refused (check_turns): a prompt is an optional system message, then user and
assistant turns taking turns, ending with the user's; chosen and rejected are exactly one assistant message each;
an SFT conversation alternates the same way and ends with the assistant's answer. Two turns of one speaker in a row
are refused, not merged: in real transcripts they are mostly a mistake (a "Human:" glued into the assistant's text,
an answer lost between two questions), and joining them would train on a conversation nobody had.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers.errors import DataError

ROLES = ("system", "user", "assistant")
Where = str | Path | None  # a file path (None: no file to name)
Located = tuple[str, Any]  # ("line 3", a record, or the DataError that stands for a bad one)

# ---------------------------------------------------------------- reading files


def _kind(value: Any) -> str:
    """How a JSON value is named in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Number):
        return f"a number ({value})"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else type(value).__name__


def _parse_lines(lines: Iterator[str | DataError], path: Path) -> Iterator[Located]:
    """Records of JSON Lines (blank lines skipped) named "line N"; a bad line comes as its DataError."""
    any_rows = False
    for number, line in enumerate(lines, start=1):
        place = f"line {number}"
        if isinstance(line, DataError):
            any_rows = True
            yield place, line
            continue
        if not line.strip():
            continue
        any_rows = True
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield place, DataError(f"malformed JSON: {error.msg} (column {error.colno})", path, place)
            continue
        if not isinstance(record, dict):
            yield place, DataError(f"is {_kind(record)}; expected an object", path, place)
            continue
        yield place, record
    if not any_rows:
        raise DataError("no rows", path)


def _file_lines(path: Path, advance: Callable[[int], None] | None) -> Iterator[str | DataError]:
    """The lines of a UTF-8 file, read one at a time (split at "\\n" only: U+2028 may sit inside a string)."""
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if advance:
                advance(len(raw))
            start = 3 if number == 1 and raw.startswith(b"\xef\xbb\xbf") else 0
            try:
                yield raw[start:].decode("utf-8")
            except UnicodeDecodeError as error:
                yield DataError(f"not UTF-8 text (byte {offset + start + error.start})", path, f"line {number}")
            offset += len(raw)


def _json_list(text: str, path: Path) -> Iterator[Located]:
    """Records of a JSON list of objects named "index N" (JSON Lines in a .json file are read as such)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data" and text.lstrip().startswith("{"):
            yield from _parse_lines(iter(text.split("\n")), path)  # Dataset.to_json writes JSON Lines into .json
            return
        raise DataError(f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}", path) from None
    if not isinstance(data, list):
        raise DataError(f"holds {_kind(data)}; expected a list of objects", path)
    if not data:
        raise DataError("no rows", path)
    for index, record in enumerate(data):
        place = f"index {index}"
        yield place, record if isinstance(record, dict) else DataError(
            f"is {_kind(record)}; expected an object", path, place)


def iter_located(path: str | Path, advance: Callable[[int], None] | None = None) -> Iterator[Located]:
    """(place, record) for each record of a .json or .jsonl file; a bad record comes as the DataError naming it.

    .jsonl is streamed line by line; a .json list is parsed whole. advance(n) is told how many bytes were read.
    """
    path = Path(path)
    if path.suffix not in (".json", ".jsonl"):
        raise DataError("unsupported file type; expected .json (a list of objects) or .jsonl (one per line)", path)
    try:
        size = path.stat().st_size
        if path.suffix == ".json":
            text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text (byte {error.start})", path) from None
    except OSError as error:
        raise DataError(f"cannot read: {error.strerror}", path) from None
    if size == 0 or (path.suffix == ".json" and not text.strip()):
        raise DataError("no rows (the file is empty)", path)
    if path.suffix == ".jsonl":
        yield from _parse_lines(_file_lines(path, advance), path)
        return
    if advance:
        advance(size)
    yield from _json_list(text, path)


def _read_located(path: str | Path) -> tuple[list[dict], list[str]]:
    """The records of a .json or .jsonl file and where each one is ("line 3", "index 2"); the first bad one raises."""
    records, places = [], []
    for place, record in iter_located(path):
        if isinstance(record, DataError):
            raise record
        records.append(record)
        places.append(place)
    return records, places


def read_records(path: str | Path) -> list[dict]:
    """The objects of a .json file (a list of objects) or a .jsonl file (one object per line)."""
    return _read_located(path)[0]


# ---------------------------------------------------------------- checking fields


def _row_name(record: Any, place: str) -> str:
    """A record's name in errors: "id 7" or "qid 7" when it has one, else its place ("line 3", "index 2")."""
    for key in ("id", "qid"):
        value = record.get(key) if isinstance(record, dict) else None
        if isinstance(value, (int, str)) and not isinstance(value, bool) and str(value).strip():
            return f"{key} {value}"
    return place


@contextmanager
def _at(file: Where, row: str) -> Iterator[None]:
    """Fill in the file and row of a DataError raised inside the block."""
    try:
        yield
    except DataError as error:
        if error.file is not None and error.row is not None:
            raise
        raise DataError(error.problem, error.file or file, row if error.row is None else error.row,
                        error.field) from None


def _as_text(value: Any, name: str) -> str:
    """value when it is non-empty text, else a DataError naming the field."""
    if not isinstance(value, str):
        raise DataError(f"is {_kind(value)}; expected text", field=name)
    if not value or value.isspace():  # isspace: no copy of a long text
        raise DataError("is empty", field=name)
    return value


def _text(record: dict, field: str, name: str | None = None) -> str:
    """record[field] when it is non-empty text, else a DataError naming the field (or `name`)."""
    if field not in record:
        raise DataError("is missing", field=name or field)
    return _as_text(record[field], name or field)


def _distinct(record: dict, better: str, worse: str) -> None:
    """Refuse a pair whose two answers are the same text: DPO learns nothing from it."""
    if _text(record, better).strip() == _text(record, worse).strip():
        raise DataError(f"is identical to {worse!r}; the pair teaches nothing", field=better)


def _messages(value: Any, field: str) -> list[dict]:
    """A non-empty list of {role, content} messages with known roles and non-empty text, cut to those two keys."""
    if not isinstance(value, list):
        raise DataError(f"is {_kind(value)}; expected a list of messages", field=field)
    if not value:
        raise DataError("is an empty list; expected messages", field=field)
    cleaned = []
    for index, message in enumerate(value):
        if not (isinstance(message, dict) and message.get("role") in ROLES and isinstance(message.get("content"), str)
                and message["content"] and not message["content"].isspace()):
            _bad_message(message, f"{field}[{index}]")
        cleaned.append({"role": message["role"], "content": message["content"]})
    return cleaned


def _bad_message(message: Any, name: str) -> None:
    """Raise the DataError that says what is wrong with one message."""
    if not isinstance(message, dict):
        raise DataError(f"is {_kind(message)}; expected a message object", field=name)
    if message.get("role") not in ROLES:
        problem = f"role {message['role']!r} is not one of" if "role" in message else "has no role; expected one of"
        raise DataError(f"{problem} {', '.join(ROLES)}", field=name)
    _text(message, "content", f"{name}.content")


def _msg(role: str, content: str) -> dict:
    """One chat message."""
    return {"role": role, "content": content}


def _prompt(text: str, system_prompt: str | None = None) -> list[dict]:
    """A one-turn conversational prompt, with a system message first when there is one."""
    return ([_msg("system", system_prompt)] if system_prompt else []) + [_msg("user", text)]


def _system(record: dict, field: str = "system") -> str | None:
    """An optional system prompt: its text, or None when the field is absent, null, empty or blank."""
    system = record.get(field)
    if system is not None and not isinstance(system, str):
        raise DataError(f"is {_kind(system)}; expected text", field=field)
    return system if system and not system.isspace() else None


def check_turns(messages: list[dict], field: str, kind: str) -> None:
    """Refuse turns out of order. kind "prompt": [system], user, assistant, …, user; "completion": exactly one
    assistant message; "conversation" (SFT): [system], user, assistant, …, assistant."""
    if kind == "completion":
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            roles = ", ".join(m["role"] for m in messages)
            raise DataError(f"holds [{roles}]; expected exactly one assistant message", field=field)
        return
    last = {"prompt": "user", "conversation": "assistant"}[kind]
    if messages[-1]["role"] != last:
        raise DataError(f"must end with {'a user' if last == 'user' else 'an assistant'} message", field=field)
    start = 1 if messages[0]["role"] == "system" else 0
    for index in range(start, len(messages)):
        role, expected = messages[index]["role"], ("user", "assistant")[(index - start) % 2]
        if role == expected:
            continue
        if role == "system":
            problem = "is a system message after the first turn; only the first message may be one"
        elif index > start and messages[index - 1]["role"] == role:
            problem = f"is a second {role} message in a row; user and assistant turns must alternate"
        else:
            problem = "is an assistant message; the turns must start with the user's"
        raise DataError(problem, field=f"{field}[{index}]")


def _check_pair(example: dict, conversational: bool, built: bool = False) -> dict:
    """Validate one converted preference record (prompt optional: implicit formats) and return it cleaned.

    built: the converter made the messages itself from checked text, so only their order is checked again."""
    checked = dict(example)
    for key in ("prompt", "chosen", "rejected") if "prompt" in example else ("chosen", "rejected"):
        if conversational and not built:
            checked[key] = _messages(example.get(key), key)
        elif not conversational:
            checked[key] = _text(example, key)
    if conversational:
        if "prompt" in checked:
            check_turns(checked["prompt"], "prompt", "prompt")
        for key in ("chosen", "rejected"):
            check_turns(checked[key], key, "completion")
        same = checked["chosen"] == checked["rejected"]
    else:
        same = checked["chosen"].strip() == checked["rejected"].strip()
    if same:
        raise DataError("is identical to 'rejected'; the pair teaches nothing", field="chosen")
    return checked


def _check_conversation(example: dict) -> dict:
    """Validate one converted SFT record {"messages": [...]}: alternating turns ending with the assistant's."""
    check_turns(example["messages"], "messages", "conversation")
    return example
