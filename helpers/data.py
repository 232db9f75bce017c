"""Preference data: read a file, check it, and turn it into the records TRL's trainers take; show pairs as tables.

Each piece lives in one place beside this module, and everything stays importable from here:
  helpers/data_rows.py     reading files record by record, and the checks every row passes (DataError:
                           "FILE: row ROW: field 'FIELD': problem"), conversations included (check_turns)
  helpers/data_formats.py  one converter per public format (FORMATS, SFT_FORMATS), the fields each reads (FIELDS)
                           and detect_format
  helpers/data_fields.py   no field dropped silently: a format reads a field, may leave it (ids, scores, metadata) or
                           refuses the row; detection picks the one format that reads the first record whole
  helpers/data_transcripts.py  the converters of pairs given as two whole conversations (hh-rlhf, TRL implicit)
  helpers/data_history_formats.py  LLaMA-Factory's sharegpt and MedicalGPT's rows, earlier turns kept in the prompt
  helpers/data_skipped.py  bad rows left out (Skipped): listed, or counted by reason with their first places
  helpers/data_stream.py   check_file and convert_file at any size: streamed, skipped rows, duplicates, outputs
  helpers/homework_data.py the homework's files and its support_ratio pairs
TRL itself fails late on bad data, or not at all: chosen == rejected trains at ln 2 with zero gradient, and prompts
longer than max_length are dropped silently (see check_prompt_lengths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset

from helpers.config import DATA_DIR
from helpers.data_formats import FORMATS, SFT_FORMATS, STANDARD_FORMATS, convert_rows, detect_format
from helpers.data_rows import ROLES, Where, _row_name, check_turns, iter_located, read_records
from helpers.data_skipped import Skipped
from helpers.data_stream import DataReport, _examples, _none_left, _Progress, check_file, convert_file
from helpers.errors import DataError
from helpers.homework_data import (COURSE_DATA, HOMEWORK_DATA_URL, HOMEWORK_FIELDS, SPLIT_RULES, clone_homework_data,
                                   load_eval_rows, load_homework, load_probe_rows, load_test_prompts,
                                   make_preference_pairs, make_sft_examples, n_support_preferred, select_languages)

__all__ = [  # everything the notebooks, tests and other helpers import from helpers.data
    "COURSE_DATA", "DATA_DIR", "FORMATS", "HOMEWORK_DATA_URL", "HOMEWORK_FIELDS", "ROLES", "SFT_FORMATS",
    "SPLIT_RULES", "STANDARD_FORMATS", "DataReport", "Skipped", "check_file", "check_prompt_lengths", "check_turns",
    "clone_homework_data", "convert_file", "convert_rows", "detect_format", "iter_located", "load_eval_rows",
    "load_homework", "load_preference_file", "load_probe_rows", "load_sft_file", "load_test_prompts",
    "make_preference_pairs", "make_sft_examples", "n_support_preferred", "pairs_table", "read_records",
    "select_languages", "shorten",
]

# ---------------------------------------------------------------- loading into memory


def _load(path: str | Path, fmt: str, skipped: Skipped | None, **options: Any) -> tuple[str, Dataset]:
    """Read a file, pick its format and convert it: preference pairs or SFT conversations, as a Dataset."""
    name, examples = _examples(path, fmt, skipped, _Progress(path, False), **options)
    rows = list(examples)
    if not rows:
        raise _none_left(path, skipped)
    return name, Dataset.from_list(rows)


def load_preference_file(path: str | Path, format: str = "auto", skipped: Skipped | None = None,
                         **options: Any) -> Dataset:
    """A preference file in any known format as a validated Dataset (options go to the converter: pairs=).

    With skipped (a Skipped()), bad rows are left out and recorded there instead of raising."""
    name, dataset = _load(path, format, skipped, **options)
    if name in SFT_FORMATS:
        raise DataError(f"holds SFT conversations ({name}), not preference pairs; use load_sft_file", path)
    return dataset


def load_sft_file(path: str | Path, format: str = "auto", skipped: Skipped | None = None) -> Dataset:
    """An SFT file (sft-messages or sft-llama2) as a validated Dataset of {"messages": [...]}."""
    name, dataset = _load(path, format, skipped)
    if name not in SFT_FORMATS:
        raise DataError(f"holds preference pairs ({name}), not SFT conversations; use load_preference_file", path)
    return dataset


# ---------------------------------------------------------------- prompt lengths


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
