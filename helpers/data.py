"""Preference data: read it, check it, and turn it into the records TRL's trainers take.

Every problem with the data raises DataError ("FILE: row ROW: field 'FIELD': problem") before any tokenization.
TRL itself fails late (a missing column is a KeyError deep inside), or not at all: chosen == rejected trains at
ln 2 with zero gradient, and prompts longer than max_length are dropped silently (see check_prompt_lengths).

Rows are named the same way everywhere: "id 7" (or "qid 7") when the record has an id, else "line 3" in a JSON
Lines file (the 1-based line) or "index 2" in a JSON list (the 0-based position).

The homework's rule: of the first data_size rows, the first int(data_size × support_ratio) prefer the support
answer. The homework computes the product in binary floating point, where 0.58 is 0.57999…, so its code gives
int(50 × 0.58) = 28. By default we floor the exact decimal product instead: 50 × 0.58 → 29; split_rule="course"
(the homework presets' rule) gives the course's own pairs (see n_support_preferred).

Formats, detected from the fields of the first record (detect_format), all converted to TRL's conversational
preference format {"prompt": [messages], "chosen": [assistant message], "rejected": [assistant message]}:
  homework            id, prompt, support, oppose (lang optional)     support preferred
  orca                system, question, chosen, rejected              Intel/orca_dpo_pairs
  stack-exchange      qid, question, response_j, response_k           lvwerra/stack-exchange-paired (j preferred)
  cvalues             prompt, pos_resp, neg_resp (pos_type, neg_type) CValues-Comparison (pos preferred)
  multi-turn          messages with chosen_value/rejected_value turns  the last assistant turn is the pair
  hh-rlhf             chosen, rejected as "\\n\\nHuman: …\\n\\nAssistant: …" transcripts (Anthropic/hh-rlhf)
  ranked              prompt, responses (best first)                  pairs "all" (i < j) or "adjacent"
  trl-standard        prompt, chosen, rejected (text)                 passed through, standard
  trl-standard-implicit       chosen, rejected (text)                 passed through, standard
  trl-conversational          prompt, chosen, rejected (messages)     passed through
  trl-conversational-implicit chosen, rejected (messages)             shared prefix split off as the prompt
SFT conversations (load_sft_file), as {"messages": [...]}:
  sft-messages        messages with role/content
  sft-llama2          text "<s>[INST] … [/INST] … </s>" (mlabonne/guanaco-llama2-1k), <<SYS>> and several turns
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import numbers
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from datasets import Dataset

from helpers.config import DATA_DIR
from helpers.errors import DataError, UserError
from helpers.files import write_jsonl_atomic

HOMEWORK_DATA_URL = "https://github.com/Baiiiiiiiiii/GenAI_hw6_dataset.git"
# The two courses' data repositories: (clone URL, the labelled file, the test-prompt file). Neither has held-out rows.
COURSE_DATA = {
    "hw6": (HOMEWORK_DATA_URL, "labelled_data.json", "test_prompt.json"),  # NTU GenAI 2024 HW6, on GitHub
    "hw7": ("https://gitlab.com/lchengtw/ML2025Spring-HW7.git", "train.json", "test.json"),  # NTU ML2025 HW7, GitLab
}
SPLIT_RULES = ("exact", "course")  # floor of the exact decimal product, or the course's int(data_size * ratio)
ROLES = ("system", "user", "assistant")
HOMEWORK_FIELDS = ("prompt", "support", "oppose")
Where = str | Path | None  # a file path (None: no file to name)

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


def _parse_jsonl(text: str, path: Path) -> tuple[list[dict], list[str]]:
    """Records of a JSON Lines text (blank lines skipped) and their "line N" names."""
    records, places = [], []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 may sit inside a string
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"malformed JSON: {error.msg} (column {error.colno})", path, f"line {number}") from None
        if not isinstance(record, dict):
            raise DataError(f"is {_kind(record)}; expected an object", path, f"line {number}")
        records.append(record)
        places.append(f"line {number}")
    if not records:
        raise DataError("no rows", path)
    return records, places


def _parse_json_list(text: str, path: Path) -> tuple[list[dict], list[str]]:
    """Records of a JSON list of objects and their "index N" names."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data" and text.lstrip().startswith("{"):
            return _parse_jsonl(text, path)  # Dataset.to_json writes JSON Lines, even into a .json file
        raise DataError(f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}", path) from None
    if not isinstance(data, list):
        raise DataError(f"holds {_kind(data)}; expected a list of objects", path)
    if not data:
        raise DataError("no rows", path)
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise DataError(f"is {_kind(record)}; expected an object", path, f"index {index}")
    return data, [f"index {index}" for index in range(len(data))]


def _read_located(path: str | Path) -> tuple[list[dict], list[str]]:
    """The records of a .json or .jsonl file, and where each one is ("line 3", "index 2")."""
    path = Path(path)
    if path.suffix not in (".json", ".jsonl"):
        raise DataError("unsupported file type; expected .json (a list of objects) or .jsonl (one per line)", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text (byte {error.start})", path) from None
    except OSError as error:
        raise DataError(f"cannot read: {error.strerror}", path) from None
    if not text.strip():
        raise DataError("no rows (the file is empty)", path)
    return _parse_jsonl(text, path) if path.suffix == ".jsonl" else _parse_json_list(text, path)


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
    if not value.strip():
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
        name = f"{field}[{index}]"
        if not isinstance(message, dict):
            raise DataError(f"is {_kind(message)}; expected a message object", field=name)
        if message.get("role") not in ROLES:
            problem = f"role {message['role']!r} is not one of" if "role" in message else "has no role; expected one of"
            raise DataError(f"{problem} {', '.join(ROLES)}", field=name)
        cleaned.append({"role": message["role"], "content": _text(message, "content", f"{name}.content")})
    return cleaned


def _msg(role: str, content: str) -> dict:
    """One chat message."""
    return {"role": role, "content": content}


def _prompt(text: str, system_prompt: str | None = None) -> list[dict]:
    """A one-turn conversational prompt, with a system message first when there is one."""
    return ([_msg("system", system_prompt)] if system_prompt else []) + [_msg("user", text)]


def _check_pair(example: dict, conversational: bool) -> dict:
    """Validate one converted preference record (prompt optional: implicit formats) and return it cleaned."""
    checked = dict(example)
    for key in ("prompt", "chosen", "rejected") if "prompt" in example else ("chosen", "rejected"):
        checked[key] = _messages(example.get(key), key) if conversational else _text(example, key)
    if conversational:
        if "prompt" in checked and checked["prompt"][-1]["role"] != "user":
            raise DataError("must end with a user message", field="prompt")
        for key in ("chosen", "rejected"):
            if checked[key][0]["role"] != "assistant":
                raise DataError("must start with an assistant message", field=key)
        same = checked["chosen"] == checked["rejected"]
    else:
        same = checked["chosen"].strip() == checked["rejected"].strip()
    if same:
        raise DataError("is identical to 'rejected'; the pair teaches nothing", field="chosen")
    return checked


def _check_id(record: dict) -> int | str:
    """The record's id: an integer or non-empty text."""
    if "id" not in record:
        raise DataError("is missing", field="id")
    value = record["id"]
    if isinstance(value, str) and not value.strip():
        raise DataError("is empty; expected an integer or text", field="id")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(f"is {_kind(value)}; expected an integer or text", field="id")
    return value


def _check_homework(records: list, places: list[str], file: Where, fields: tuple[str, ...]) -> None:
    """Every row has an id (unique, all of one type) and non-empty text in `fields`; support differs from oppose."""
    if not records:
        raise DataError("no rows", file)
    seen: dict[Any, str] = {}
    for record, place in zip(records, places):
        row = _row_name(record, place)
        with _at(file, row):
            if not isinstance(record, dict):
                raise DataError(f"is {_kind(record)}; expected an object")
            key = _check_id(record)
            for field in fields:
                _text(record, field)
            if "lang" in record:
                _text(record, "lang")
            if "support" in fields:
                _distinct(record, "support", "oppose")
            if seen and type(key) is not type(next(iter(seen))):
                raise DataError("mixes numbers and text with the ids of earlier rows", field="id")
            if key in seen:
                raise DataError(f"is duplicated (also {seen[key]})", field="id")
            seen[key] = place


# ---------------------------------------------------------------- the homework


def _load_homework_file(path: Where, default: str, fields: tuple[str, ...]) -> list[dict]:
    """Read and validate one of the homework's JSON files."""
    path = Path(path) if path is not None else DATA_DIR / default
    if not path.exists():
        raise DataError("file not found; clone the homework data with clone_homework_data(dest), "
                        "or pass the path of a local copy", path)
    records, places = _read_located(path)
    _check_homework(records, places, path, fields)
    return records


def load_homework(path: Where = None) -> list[dict]:
    """The homework's labelled rows {id, prompt, support, oppose} (default DATA_DIR/labelled_data.json), validated."""
    return _load_homework_file(path, "labelled_data.json", HOMEWORK_FIELDS)


def load_test_prompts(path: Where = None) -> list[dict]:
    """The homework's test prompts {id, prompt} (default DATA_DIR/test_prompt.json), validated."""
    return _load_homework_file(path, "test_prompt.json", ("prompt",))


def load_eval_rows(path: Where = None) -> list[dict]:
    """Held-out rows in the labelled schema (default DATA_DIR/eval_data.json), validated."""
    return _load_homework_file(path, "eval_data.json", HOMEWORK_FIELDS)


def clone_homework_data(dest: Path, url: str | None = None, timeout: float = 60, course: str = "hw6") -> Path:
    """Shallow-clone a course's public data repository (hw6: GitHub, hw7: GitLab) into dest (kept if already there).

    Offline, or when the clone fails, one line says what to download by hand and where to put it.
    """
    if course not in COURSE_DATA:
        raise UserError(f"unknown course {course!r}; known: {', '.join(COURSE_DATA)}")
    default_url, labelled, tests = COURSE_DATA[course]
    url, dest = url or default_url, Path(dest)
    if (dest / labelled).exists():
        return dest
    page = url.removesuffix(".git")
    hint = (f"offline? download {labelled} and {tests} from {page} by hand into {dest}, "
            f"or pass their paths (--data/--test-prompts)")
    existed = dest.exists()
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    command = ["git", "clone", "--depth", "1", url, str(dest)]
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except FileNotFoundError:
        raise UserError(f"cannot clone {url}: git is not installed; {hint}") from None
    except subprocess.TimeoutExpired:
        result = None
    if result is None or result.returncode != 0:
        if not existed:
            shutil.rmtree(dest, ignore_errors=True)
        reason = f"no answer within {timeout:g} s" if result is None else (
            (result.stderr.strip().splitlines() or [f"git exited with {result.returncode}"])[-1])
        raise UserError(f"cannot clone {url} into {dest} ({reason}); {hint}")
    if not (dest / labelled).exists():
        raise UserError(f"{url} was cloned into {dest} but has no {labelled}; {hint}")
    return dest


def n_support_preferred(data_size: int, support_ratio: float, available: int | None = None,
                        rule: str = "exact") -> int:
    """How many of the first data_size rows prefer support.

    rule="course" is the courses' own code, int(data_size * support_ratio) in binary floating point, where 0.58 is
    stored as 0.57999…, so 50 × 0.58 gives 28 (and 30 × 0.7 gives 20). rule="exact" reads the ratio as the decimal
    it was written as (Fraction(str(0.58)) = 29/50) and floors the exact product: 50 × 0.58 → 29, 100 × 0.29 → 29
    (float: 28), 10 × 0.3 → 3, 3 × 0.5 → 1, 10 × 0.25 → 2, 50 × 0 → 0, 50 × 1 → 50. `available` is how many rows
    there are (data_size may not exceed it).
    """
    if rule not in SPLIT_RULES:
        raise UserError(f"split_rule is {rule!r}; allowed: {', '.join(SPLIT_RULES)}")
    if isinstance(support_ratio, bool) or not isinstance(support_ratio, (numbers.Real, Decimal)):
        raise DataError(f"is {_kind(support_ratio)}; expected a number from 0 to 1", field="support_ratio")
    if math.isnan(support_ratio) or not 0 <= support_ratio <= 1:
        raise DataError(f"is {support_ratio}; expected a number from 0 to 1", field="support_ratio")
    if isinstance(data_size, bool) or not isinstance(data_size, numbers.Integral):
        raise DataError(f"is {_kind(data_size)}; expected a whole number of rows", field="data_size")
    if data_size < 1:
        raise DataError(f"is {data_size}; expected at least 1 row", field="data_size")
    if available is not None and data_size > available:
        raise DataError(f"is {data_size} but there are only {available} rows", field="data_size")
    if rule == "course":
        return int(data_size * support_ratio)
    return math.floor(int(data_size) * Fraction(str(support_ratio)))


def make_preference_pairs(rows: list[dict], support_ratio: float, data_size: int | None = None,
                          spread: bool = False, system_prompt: str | None = None,
                          split_rule: str = "exact") -> Dataset:
    """The homework's DPO pairs from its first data_size rows (None: all), in row order, conversational.

    The first n_support_preferred(data_size, support_ratio, rule=split_rule) rows prefer support and the rest
    oppose, as in the homework; spread=True instead spreads the same number of support rows evenly over the data_size rows (row i
    prefers support when floor((i+1)·k/n) > floor(i·k/n)). Each record: prompt, chosen, rejected, id, preferred.
    """
    rows = list(rows)
    _check_homework(rows, [f"index {i}" for i in range(len(rows))], None, HOMEWORK_FIELDS)
    size = len(rows) if data_size is None else data_size
    k = n_support_preferred(size, support_ratio, available=len(rows), rule=split_rule)
    pairs = []
    for i, row in enumerate(rows[:size]):
        support = (i + 1) * k // size > i * k // size if spread else i < k
        chosen, rejected = ("support", "oppose") if support else ("oppose", "support")
        pairs.append({"prompt": _prompt(row["prompt"], system_prompt),
                      "chosen": [_msg("assistant", row[chosen])], "rejected": [_msg("assistant", row[rejected])],
                      "id": row["id"], "preferred": chosen})
    return Dataset.from_list(pairs)


def make_sft_examples(rows: list[dict], system_prompt: str | None = None) -> Dataset:
    """Conversational prompt–completion records, two per row (support, then oppose): SFT that starts balanced."""
    rows = list(rows)
    _check_homework(rows, [f"index {i}" for i in range(len(rows))], None, HOMEWORK_FIELDS)
    return Dataset.from_list([
        {"prompt": _prompt(row["prompt"], system_prompt), "completion": [_msg("assistant", row[stance])],
         "id": row["id"], "stance": stance}
        for row in rows for stance in ("support", "oppose")
    ])


# ---------------------------------------------------------------- one record of each public format


def _homework_rows(record: dict) -> list[dict]:
    """homework: support preferred (support_ratio is make_preference_pairs' business)."""
    _check_id(record)
    _distinct(record, "support", "oppose")
    return [{"prompt": _prompt(_text(record, "prompt")), "chosen": [_msg("assistant", record["support"])],
             "rejected": [_msg("assistant", record["oppose"])], "id": record["id"], "preferred": "support"}]


def _orca_rows(record: dict) -> list[dict]:
    """orca: a system message only when `system` is non-empty."""
    system = record.get("system")
    if system is not None and not isinstance(system, str):
        raise DataError(f"is {_kind(system)}; expected text", field="system")
    _distinct(record, "chosen", "rejected")
    return [{"prompt": _prompt(_text(record, "question"), system if system and system.strip() else None),
             "chosen": [_msg("assistant", record["chosen"])], "rejected": [_msg("assistant", record["rejected"])]}]


def _stack_exchange_rows(record: dict) -> list[dict]:
    """stack-exchange: response_j is preferred over response_k."""
    _distinct(record, "response_j", "response_k")
    prompt = "Question: " + _text(record, "question") + "\n\nAnswer: "
    return [{"prompt": [_msg("user", prompt)], "chosen": [_msg("assistant", record["response_j"])],
             "rejected": [_msg("assistant", record["response_k"])]}]


def _cvalues_rows(record: dict) -> list[dict]:
    """cvalues: pos_resp is preferred over neg_resp."""
    _distinct(record, "pos_resp", "neg_resp")
    return [{"prompt": [_msg("user", _text(record, "prompt"))], "chosen": [_msg("assistant", record["pos_resp"])],
             "rejected": [_msg("assistant", record["neg_resp"])]}]


def _score(turn: dict, field: str, name: str) -> float | None:
    """An optional numeric score of a multi-turn assistant turn."""
    value = turn.get(field)
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise DataError(f"is {_kind(value)}; expected a number", field=f"{name}.{field}")
    return value


def _multi_turn_rows(record: dict) -> list[dict]:
    """multi-turn: the last assistant turn is the pair (swapped when chosen_score < rejected_score); earlier
    assistant turns enter the prompt with their chosen_value (or value)."""
    turns = record.get("messages")
    if not isinstance(turns, list) or len(turns) < 2:
        found = f"has {len(turns)} turns" if isinstance(turns, list) else f"is {_kind(turns)}"
        raise DataError(f"{found}; expected a list of at least 2 turns", field="messages")
    history = []
    for index, turn in enumerate(turns):
        name = f"messages[{index}]"
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            raise DataError(f"expected a turn with a role among {', '.join(ROLES)}", field=name)
        if index == len(turns) - 1:
            break
        key = "chosen_value" if turn["role"] == "assistant" and "chosen_value" in turn else "value"
        history.append(_msg(turn["role"], _text(turn, key, f"{name}.{key}")))
    last, name = turns[-1], f"messages[{len(turns) - 1}]"
    if last["role"] != "assistant":
        raise DataError("the last turn must be the assistant's, with chosen_value and rejected_value", field=name)
    chosen = _text(last, "chosen_value", f"{name}.chosen_value")
    rejected = _text(last, "rejected_value", f"{name}.rejected_value")
    chosen_score, rejected_score = _score(last, "chosen_score", name), _score(last, "rejected_score", name)
    if chosen_score is not None and rejected_score is not None and chosen_score < rejected_score:
        chosen, rejected = rejected, chosen
    return [{"prompt": history, "chosen": [_msg("assistant", chosen)], "rejected": [_msg("assistant", rejected)]}]


_HH_MARK = re.compile(r"\n\n(Human|Assistant):")


def _hh_turns(record: dict, field: str) -> list[dict]:
    """The turns of an hh-rlhf transcript "\\n\\nHuman: … \\n\\nAssistant: …"."""
    parts = _HH_MARK.split("\n\n" + _text(record, field).lstrip("\n"))
    if parts[0].strip() or len(parts) < 5:
        raise DataError('does not parse as "\\n\\nHuman: … \\n\\nAssistant: …" turns', field=field)
    roles = ["user" if who == "Human" else "assistant" for who in parts[1::2]]
    return [_msg(role, text.strip()) for role, text in zip(roles, parts[2::2])]


def _split_shared_prefix(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt, chosen, rejected): the turns both conversations share, then where each goes its own way."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == len(chosen) or n == len(rejected):
        raise DataError("is identical to 'rejected', or a prefix of it; no answer to prefer", field="chosen")
    if n == 0 or chosen[n - 1]["role"] != "user":
        raise DataError("shares no prompt ending in a user turn with 'rejected'", field="chosen")
    return chosen[:n], chosen[n:], rejected[n:]


def _hh_rlhf_rows(record: dict) -> list[dict]:
    """hh-rlhf: the shared turns are the prompt, the differing assistant turns are chosen and rejected."""
    prompt, chosen, rejected = _split_shared_prefix(_hh_turns(record, "chosen"), _hh_turns(record, "rejected"))
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected}]


def _ranked_rows(record: dict, pairs: str = "all") -> list[dict]:
    """ranked: responses best first; every (better, worse) pair, or only neighbours."""
    if pairs not in ("all", "adjacent"):
        raise UserError(f"pairs must be 'all' or 'adjacent', not {pairs!r}")
    prompt = [_msg("user", _text(record, "prompt"))]
    responses = record.get("responses")
    if not isinstance(responses, list) or len(responses) < 2:
        found = f"has {len(responses)} responses" if isinstance(responses, list) else f"is {_kind(responses)}"
        raise DataError(f"{found}; expected a list of at least 2, best first", field="responses")
    texts = [_as_text(value, f"responses[{i}]") for i, value in enumerate(responses)]
    for j, text in enumerate(texts):
        if text.strip() in [earlier.strip() for earlier in texts[:j]]:
            raise DataError("repeats an earlier response; the pair would teach nothing", field=f"responses[{j}]")
    n = len(texts)
    indices = itertools.combinations(range(n), 2) if pairs == "all" else [(i, i + 1) for i in range(n - 1)]
    return [{"prompt": prompt, "chosen": [_msg("assistant", texts[i])], "rejected": [_msg("assistant", texts[j])]}
            for i, j in indices]


def _trl_rows(record: dict, explicit: bool) -> list[dict]:
    """trl-*: passed through as they are (only prompt/chosen/rejected kept); _check_pair validates them."""
    keys = ("prompt", "chosen", "rejected") if explicit else ("chosen", "rejected")
    for key in keys:
        if key not in record:
            raise DataError("is missing", field=key)
    return [{key: record[key] for key in keys}]


def _trl_conversational_implicit_rows(record: dict) -> list[dict]:
    """trl-conversational-implicit: the messages both sides share become the explicit prompt."""
    chosen, rejected = _messages(record.get("chosen"), "chosen"), _messages(record.get("rejected"), "rejected")
    prompt, chosen, rejected = _split_shared_prefix(chosen, rejected)
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected}]


def _convert(records: list[dict], row_fn: Callable[[dict], list[dict]], file: Where,
             places: list[str] | None, conversational: bool = True) -> Dataset:
    """Run row_fn on every record, validate each result, name the file and row of any problem."""
    if not records:
        raise DataError("no rows", file)
    places = places or [f"index {i}" for i in range(len(records))]
    examples = []
    for record, place in zip(records, places):
        with _at(file, _row_name(record, place)):
            if not isinstance(record, dict):
                raise DataError(f"is {_kind(record)}; expected an object")
            examples.extend(_check_pair(example, conversational) for example in row_fn(record))
    return Dataset.from_list(examples)


def from_homework(records: list[dict], file: Where = None, places: list[str] | None = None) -> Dataset:
    """homework rows → pairs preferring support (ids must be unique; make_preference_pairs applies a ratio)."""
    _check_homework(records, places or [f"index {i}" for i in range(len(records))], file, HOMEWORK_FIELDS)
    return _convert(records, _homework_rows, file, places)


def from_orca(records: list[dict], file: Where = None, places: list[str] | None = None) -> Dataset:
    """Intel/orca_dpo_pairs {system, question, chosen, rejected} → conversational pairs."""
    return _convert(records, _orca_rows, file, places)


def from_stack_exchange(records: list[dict], file: Where = None, places: list[str] | None = None) -> Dataset:
    """lvwerra/stack-exchange-paired {qid, question, response_j, response_k} → "Question: …\\n\\nAnswer: " pairs."""
    return _convert(records, _stack_exchange_rows, file, places)


def from_cvalues(records: list[dict], file: Where = None, places: list[str] | None = None) -> Dataset:
    """CValues-Comparison {prompt, pos_resp, neg_resp, pos_type, neg_type} → conversational pairs."""
    return _convert(records, _cvalues_rows, file, places)


def from_multi_turn(records: list[dict], file: Where = None, places: list[str] | None = None) -> Dataset:
    """{messages: [{role, value}, …, {role: assistant, chosen_value, rejected_value, chosen_score, rejected_score}]}
    → the earlier turns as the prompt, the last turn as the pair (swapped when chosen_score < rejected_score)."""
    return _convert(records, _multi_turn_rows, file, places)


def from_hh_rlhf(records: list[dict], file: Where = None, places: list[str] | None = None) -> Dataset:
    """Anthropic/hh-rlhf transcripts → the shared turns as a multi-turn prompt, the differing answers as the pair."""
    return _convert(records, _hh_rlhf_rows, file, places)


def from_ranked(records: list[dict], file: Where = None, places: list[str] | None = None,
                pairs: str = "all") -> Dataset:
    """{prompt, responses: [best, …, worst]} → pairs: "all" (every i < j) or "adjacent" (i, i + 1)."""
    return _convert(records, partial(_ranked_rows, pairs=pairs), file, places)


def from_trl_standard(records: list[dict], file: Where = None, places: list[str] | None = None) -> Dataset:
    """{prompt, chosen, rejected} as text → validated and kept in TRL's standard form."""
    return _convert(records, partial(_trl_rows, explicit=True), file, places, conversational=False)


def from_trl_standard_implicit(records: list[dict], file: Where = None, places: list[str] | None = None) -> Dataset:
    """{chosen, rejected} as text, the prompt inside both → validated and kept as they are."""
    return _convert(records, partial(_trl_rows, explicit=False), file, places, conversational=False)


def from_trl_conversational(records: list[dict], file: Where = None, places: list[str] | None = None) -> Dataset:
    """{prompt, chosen, rejected} as messages → validated and kept."""
    return _convert(records, partial(_trl_rows, explicit=True), file, places)


def from_trl_conversational_implicit(records: list[dict], file: Where = None,
                                     places: list[str] | None = None) -> Dataset:
    """{chosen, rejected} as whole conversations → the shared messages as the prompt, then chosen and rejected."""
    return _convert(records, _trl_conversational_implicit_rows, file, places)


FORMATS: dict[str, Callable[..., Dataset]] = {
    "homework": from_homework,
    "orca": from_orca,
    "stack-exchange": from_stack_exchange,
    "cvalues": from_cvalues,
    "multi-turn": from_multi_turn,
    "hh-rlhf": from_hh_rlhf,
    "ranked": from_ranked,
    "trl-standard": from_trl_standard,
    "trl-standard-implicit": from_trl_standard_implicit,
    "trl-conversational": from_trl_conversational,
    "trl-conversational-implicit": from_trl_conversational_implicit,
}

# ---------------------------------------------------------------- SFT conversations

_INST = re.compile(r"\[INST\](.*?)\[/INST\](.*?)(?=\[INST\]|\Z)", re.DOTALL)
_SYS = re.compile(r"\s*<<SYS>>(.*?)<</SYS>>", re.DOTALL)


def _sft_messages_rows(record: dict) -> list[dict]:
    """sft-messages: role/content messages with at least one assistant answer."""
    messages = _messages(record.get("messages"), "messages")
    if not any(message["role"] == "assistant" for message in messages):
        raise DataError("has no assistant message to learn from", field="messages")
    return [{"messages": messages}]


def _sft_llama2_rows(record: dict) -> list[dict]:
    """sft-llama2: "<s>[INST] <<SYS>>…<</SYS>> user [/INST] answer </s><s>[INST] …" → messages."""
    text = _text(record, "text")
    turns = list(_INST.finditer(text))
    starts_ok = bool(turns) and re.fullmatch(r"\s*(<s>)?\s*", text[:turns[0].start()])
    if not starts_ok or any(a.end() != b.start() for a, b in itertools.pairwise(turns)):
        raise DataError('does not parse as "<s>[INST] … [/INST] … </s>" turns', field="text")
    messages = []
    for number, turn in enumerate(turns, start=1):
        user, answer = turn.group(1), re.sub(r"(\s*</?s>)+\s*$", "", turn.group(2)).strip()
        system = _SYS.match(user) if number == 1 else None
        if system:
            messages.append(_msg("system", system.group(1).strip()))
            user = user[system.end():]
        if not user.strip() or not answer:
            raise DataError(f"turn {number} has an empty {'question' if not user.strip() else 'answer'}", field="text")
        messages += [_msg("user", user.strip()), _msg("assistant", answer)]
    return [{"messages": _messages(messages, "text")}]


def _convert_sft(records: list[dict], row_fn: Callable[[dict], list[dict]], file: Where,
                 places: list[str] | None) -> Dataset:
    """Run an SFT row_fn on every record, naming the file and row of any problem."""
    places = places or [f"index {i}" for i in range(len(records))]
    examples = []
    for record, place in zip(records, places):
        with _at(file, _row_name(record, place)):
            examples.extend(row_fn(record))
    return Dataset.from_list(examples)


SFT_FORMATS: dict[str, Callable[[dict], list[dict]]] = {"sft-messages": _sft_messages_rows,
                                                       "sft-llama2": _sft_llama2_rows}

# ---------------------------------------------------------------- detecting, loading, checking, converting


def detect_format(records: list[dict], file: Where = None) -> str:
    """The format whose fields the first record has (rules in the module docstring)."""
    if not records:
        raise DataError("no rows", file)
    first = records[0] if isinstance(records[0], dict) else {}
    keys = set(first)
    if "messages" in keys:
        turns = first["messages"] if isinstance(first["messages"], list) else []
        return "multi-turn" if any(isinstance(t, dict) and "chosen_value" in t for t in turns) else "sft-messages"
    if "text" in keys and not keys & {"prompt", "chosen", "rejected"}:
        return "sft-llama2"
    for name, needed in (("homework", HOMEWORK_FIELDS), ("stack-exchange", ("question", "response_j", "response_k")),
                         ("orca", ("question", "chosen", "rejected")), ("cvalues", ("prompt", "pos_resp", "neg_resp")),
                         ("ranked", ("prompt", "responses"))):
        if keys >= set(needed):
            return name
    if keys >= {"chosen", "rejected"}:
        conversational = isinstance(first["chosen"], list)
        if "prompt" in keys:
            return "trl-conversational" if conversational else "trl-standard"
        if conversational:
            return "trl-conversational-implicit"
        if isinstance(first["chosen"], str) and first["chosen"].lstrip().startswith("Human:"):
            return "hh-rlhf"
        return "trl-standard-implicit"
    known = ", ".join([*FORMATS, *SFT_FORMATS])
    raise DataError(f"unknown format: the first record has fields {sorted(keys)}, which match none of the known "
                    f"formats ({known}); see helpers/data.py for their fields", file)


def _load(path: str | Path, fmt: str, **options: Any) -> tuple[str, Dataset]:
    """Read a file, pick its format (detected for "auto") and convert it: preference pairs or SFT conversations."""
    records, places = _read_located(path)
    name = detect_format(records, path) if fmt == "auto" else fmt
    if name in SFT_FORMATS:
        return name, _convert_sft(records, SFT_FORMATS[name], path, places)
    if name not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; known formats: auto, {', '.join([*FORMATS, *SFT_FORMATS])}")
    unknown = set(options) - set(inspect.signature(FORMATS[name]).parameters)
    if unknown:
        raise UserError(f"format {name} takes no option {', '.join(sorted(unknown))} (only ranked takes pairs=)")
    return name, FORMATS[name](records, file=path, places=places, **options)


def load_preference_file(path: str | Path, format: str = "auto", **options: Any) -> Dataset:
    """A preference file in any known format as a validated Dataset (options go to the converter: pairs=)."""
    name, dataset = _load(path, format, **options)
    if name in SFT_FORMATS:
        raise DataError(f"holds SFT conversations ({name}), not preference pairs; use load_sft_file", path)
    return dataset


def load_sft_file(path: str | Path, format: str = "auto") -> Dataset:
    """An SFT file (sft-messages or sft-llama2) as a validated Dataset of {"messages": [...]}."""
    name, dataset = _load(path, format)
    if name not in SFT_FORMATS:
        raise DataError(f"holds preference pairs ({name}), not SFT conversations; use load_preference_file", path)
    return dataset


def check_file(path: str | Path, fmt: str = "auto") -> tuple[str, int]:
    """(format, count) after loading and validating; writes nothing. SFT files count conversations."""
    name, dataset = _load(path, fmt)
    return name, len(dataset)


def convert_file(path: str | Path, fmt: str, out: str | Path) -> tuple[str, int]:
    """Write the file as TRL JSONL (conversational; standard for standard inputs; messages for SFT), atomically,
    and only once every row is valid."""
    name, dataset = _load(path, fmt)
    write_jsonl_atomic(out, dataset.to_list())
    return name, len(dataset)


def _prompt_tokens(prompt: str | list[dict], tokenizer: Any) -> int:
    """How many tokens a prompt takes on its own (conversational: with the generation prompt)."""
    if isinstance(prompt, list):
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    else:
        ids = tokenizer(prompt)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    if len(ids) and isinstance(ids[0], list):
        ids = ids[0]
    return len(ids)


def check_prompt_lengths(dataset: Dataset, tokenizer: Any, max_length: int, file: Where = None) -> int:
    """Refuse prompts that alone reach max_length tokens (TRL would drop those rows silently); return the longest.

    Datasets without a prompt column (implicit prompts) are not checked and give 0.
    """
    if "prompt" not in dataset.column_names:
        return 0
    lengths = [_prompt_tokens(prompt, tokenizer) for prompt in dataset["prompt"]]
    too_long = [i for i, n in enumerate(lengths) if n >= max_length]
    if too_long:
        first = too_long[0]
        row = _row_name(dataset[first], f"index {first}")
        raise DataError(f"{len(too_long)} of {len(lengths)} prompts reach max_length={max_length} tokens on their own "
                        f"(this one: {lengths[first]}); TRL would drop them silently: raise max_length or shorten them",
                        file, row, "prompt")
    return max(lengths, default=0)


# ---------------------------------------------------------------- showing pairs


def shorten(text: str, width: int = 40) -> str:
    """text on one line (runs of white space made one space), cut to width characters ending in "…"."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[:max(width - 1, 0)] + "…"


def _shown(value: Any) -> Any:
    """A prompt or answer as one line: text as it is, messages as the last one's content ("[3 turns] …")."""
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        last = str(value[-1]["content"])
        return f"[{len(value)} turns] {last}" if len(value) > 1 else last
    return value


def pairs_table(pairs: Dataset | list[dict], width: int = 40) -> Any:
    """A pandas DataFrame of preference pairs, one row each, prompt/chosen/rejected shortened to width characters."""
    import pandas as pd

    records = pairs.to_list() if isinstance(pairs, Dataset) else list(pairs)
    columns = [c for c in ("id", "prompt", "chosen", "rejected", "preferred") if any(c in r for r in records)]
    return pd.DataFrame([{c: shorten(_shown(r[c]), width) if c in ("prompt", "chosen", "rejected") else r.get(c)
                          for c in columns if c in r} for r in records], columns=columns)
