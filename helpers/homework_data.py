"""The homework's data: its files (labelled rows, held-out rows, test prompts), their checks, and its pairs.

The homework's rule: of the first data_size rows, the first int(data_size × support_ratio) prefer the support
answer. The homework computes the product in binary floating point, where 0.58 is 0.57999…, so its code gives
int(50 × 0.58) = 28. By default we floor the exact decimal product instead: 50 × 0.58 → 29; split_rule="course"
(the homework presets' rule) gives the course's own pairs (see n_support_preferred).
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import subprocess
from decimal import Decimal
from fractions import Fraction
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datasets import Dataset

from helpers.config import DATA_DIR
from helpers.data_rows import (Located, Where, _at, _distinct, _kind, _msg, _prompt, _read_located, _row_name, _text,
                               iter_located)
from helpers.data_skipped import Skipped
from helpers.errors import DataError, UserError

HOMEWORK_DATA_URL = "https://github.com/Baiiiiiiiiii/GenAI_hw6_dataset.git"
# The two courses' data repositories: (clone URL, the labelled file, the test-prompt file). Neither has held-out rows.
COURSE_DATA = {
    "hw6": (HOMEWORK_DATA_URL, "labelled_data.json", "test_prompt.json"),  # NTU GenAI 2024 HW6, on GitHub
    "hw7": ("https://gitlab.com/lchengtw/ML2025Spring-HW7.git", "train.json", "test.json"),  # NTU ML2025 HW7, GitLab
}
SPLIT_RULES = ("exact", "course")  # floor of the exact decimal product, or the course's int(data_size * ratio)
HOMEWORK_FIELDS = ("prompt", "support", "oppose")

# ---------------------------------------------------------------- checking the homework's rows


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



def _check_homework_row(record: Any, place: str, seen: dict[Any, str], file: Where, fields: tuple[str, ...]) -> None:
    """One row has an id (not in seen, of the same type as those) and non-empty text in `fields`; adds it to seen."""
    with _at(file, _row_name(record, place)):
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


def _check_homework(records: list, places: list[str], file: Where, fields: tuple[str, ...]) -> None:
    """Every row has an id (unique, all of one type) and non-empty text in `fields`; support differs from oppose."""
    if not records:
        raise DataError("no rows", file)
    seen: dict[Any, str] = {}
    for record, place in zip(records, places):
        _check_homework_row(record, place, seen, file, fields)


def _valid_homework_rows(located: Iterator[Located], file: Path, fields: tuple[str, ...],
                         skipped: Skipped) -> list[dict]:
    """The rows that pass _check_homework_row, in order; the others are recorded in skipped."""
    kept, seen, bad = [], {}, 0
    for place, record in located:
        try:
            if isinstance(record, DataError):
                raise record
            _check_homework_row(record, place, seen, file, fields)
        except DataError as error:
            skipped.add(place, error)
            bad += 1
            continue
        kept.append(record)
    if not kept:
        raise DataError(f"no valid rows: all {bad} were bad", file)
    return kept


# ---------------------------------------------------------------- the homework's files


def _load_homework_file(path: Where, default: str, fields: tuple[str, ...],
                        skipped: Skipped | None = None) -> list[dict]:
    """Read and validate one of the homework's JSON files (with skipped: leave bad rows out, recorded there)."""
    path = Path(path) if path is not None else DATA_DIR / default
    if not path.exists():
        raise DataError("file not found; clone the homework data with clone_homework_data(dest), "
                        "or pass the path of a local copy", path)
    if skipped is not None:
        return _valid_homework_rows(iter_located(path), path, fields, skipped)
    records, places = _read_located(path)
    _check_homework(records, places, path, fields)
    return records


def load_homework(path: Where = None, skipped: Skipped | None = None,
                  languages: tuple[str, ...] | None = None) -> list[dict]:
    """The homework's labelled rows {id, prompt, support, oppose} (default DATA_DIR/labelled_data.json), validated;
    with languages, only the rows in them (see select_languages)."""
    rows = _load_homework_file(path, "labelled_data.json", HOMEWORK_FIELDS, skipped)
    return rows if languages is None else select_languages(rows, languages)


def load_test_prompts(path: Where = None, skipped: Skipped | None = None,
                      languages: tuple[str, ...] | None = None) -> list[dict]:
    """The homework's test prompts {id, prompt} (default DATA_DIR/test_prompt.json), validated; with languages, only
    the prompts in them."""
    rows = _load_homework_file(path, "test_prompt.json", ("prompt",), skipped)
    return rows if languages is None else select_languages(rows, languages)


def load_eval_rows(path: Where = None, skipped: Skipped | None = None,
                   languages: tuple[str, ...] | None = None) -> list[dict]:
    """Held-out rows in the labelled schema (default DATA_DIR/eval_data.json), validated; with languages, only the rows
    in them."""
    rows = _load_homework_file(path, "eval_data.json", HOMEWORK_FIELDS, skipped)
    return rows if languages is None else select_languages(rows, languages)


def select_languages(rows: list[dict], languages: tuple[str, ...] | list[str]) -> list[dict]:
    """The rows written in one of `languages` (their `lang` field); rows without a `lang` field are all kept."""
    return [row for row in rows if "lang" not in row or row["lang"] in languages]


def load_probe_rows(path: Where = None, skipped: Skipped | None = None,
                    languages: tuple[str, ...] | None = None) -> list[dict]:
    """Held-out rows on neighbouring topics, the labelled schema plus `topic` (default DATA_DIR/probe_data.json); with
    languages, only the rows in them."""
    rows = _load_homework_file(path, "probe_data.json", (*HOMEWORK_FIELDS, "topic"), skipped)
    return rows if languages is None else select_languages(rows, languages)


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


# ---------------------------------------------------------------- the homework's pairs


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
    oppose, as in the homework; spread=True instead spreads the same number of support rows evenly over the
    data_size rows (row i prefers support when floor((i+1)·k/n) > floor(i·k/n)). Each record: prompt, chosen,
    rejected, id, preferred.
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
