"""Checking and converting whole preference files at any size: rows streamed, a progress bar, rows per second,
duplicated pairs counted, bad rows refused (the default) or skipped and listed, and output written atomically.

JSON Lines files are read one line at a time and converted pairs are written as they come, so memory stays flat
whatever the size (a .json list is parsed whole). By default the first bad row stops a conversion: the command line
exits 2 with one line and nothing is written. With skip_bad_rows the bad rows are left out and listed in
skipped_rows.jsonl beside the output ({file, line or index, field, reason}). A check reads every row either way
(check_file(every_row=True)): it counts the bad rows by reason with the first lines of each, and gives the command
that converts the valid ones. Duplicated pairs (same prompt, chosen and rejected) are counted and reported; they are
kept, since removing them changes the data's weights.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from datasets import Dataset

from helpers.data_formats import FORMATS, SFT_FORMATS, check_options, convert_rows, detect_format
from helpers.data_rows import Located, iter_located
from helpers.data_skipped import Skipped
from helpers.errors import DataError, UserError
from helpers.files import write_jsonl_atomic

PROGRESS_AFTER = 5000  # rows read before a progress bar appears
SKIPPED_FILE = "skipped_rows.jsonl"
_to_json = json.JSONEncoder(ensure_ascii=False).encode  # one encoder for every line: Chinese stays readable

# ---------------------------------------------------------------- one pass over a file


class _Progress:
    """Rows and bytes read so far; a tqdm bar over the file's bytes once PROGRESS_AFTER rows have passed."""

    def __init__(self, path: str | Path, show: bool):
        self.path, self.show, self.rows, self.bytes, self.bar = Path(path), show, 0, 0, None
        self.start = time.perf_counter()

    def advance(self, n: int) -> None:
        self.bytes += n

    def count(self, located: Iterator[Located]) -> Iterator[Located]:
        """Pass the rows through, counting them."""
        for item in located:
            self.rows += 1
            if self.rows % 1000 == 0:
                self._tick()
            yield item

    def _tick(self) -> None:
        if self.bar is None and self.show and self.rows >= PROGRESS_AFTER:
            from tqdm import tqdm

            self.bar = tqdm(total=self.path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=self.path.name, leave=False, file=sys.stderr)
        if self.bar is not None:
            self.bar.update(self.bytes - self.bar.n)
            self.bar.set_postfix_str(f"{self.rows:,} rows", refresh=False)

    def close(self) -> float:
        """Close the bar (it leaves no line behind); the seconds since the start."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        return time.perf_counter() - self.start


class _Duplicates:
    """How often each pair appears (same prompt, chosen and rejected; SFT: the same messages), by a 64-bit hash.

    Two different pairs share a hash with odds of about n² / 2⁶⁵: under 1 in 10 million for a million pairs."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()

    def add(self, example: dict) -> None:
        key = tuple(_hashable(example.get(name)) for name in ("prompt", "chosen", "rejected", "messages"))
        self.counts[hash(key)] += 1


def _hashable(value: Any, _role_content=itemgetter("role", "content")) -> Any:
    """Text as it is, messages as (role, content) tuples."""
    return tuple(map(_role_content, value)) if isinstance(value, list) else value


def _peek(located: Iterator[Located], file: Path, skipped: Skipped | None) -> tuple[dict, Iterator[Located]]:
    """The first record (the format is detected from it) and all the rows again, that one included."""
    before = []
    for place, record in located:
        before.append((place, record))
        if isinstance(record, dict):
            return record, itertools.chain(before, located)
        if skipped is None:
            raise record
    first = before[0][1]
    raise DataError(f"no valid rows: all {len(before)} are bad (the first, {first.row}: {first.problem})", file)


def _examples(path: str | Path, fmt: str, skipped: Skipped | None, progress: _Progress,
              **options: Any) -> tuple[str, Iterator[dict]]:
    """The file's format (detected for "auto") and its converted, checked records, read as they are needed."""
    if fmt != "auto" and fmt not in FORMATS and fmt not in SFT_FORMATS:
        raise UserError(f"unknown format {fmt!r}; known formats: auto, {', '.join([*FORMATS, *SFT_FORMATS])}")
    located = progress.count(iter_located(path, progress.advance))
    if fmt == "auto":
        first, located = _peek(located, Path(path), skipped)
        try:
            fmt = detect_format([first], path)
        except DataError:
            earlier = next(located)[1]  # the rows again, from the first: bad ones before the first record?
            if isinstance(earlier, DataError):
                raise earlier from None  # then the first bad row is the first thing to fix
            raise
    check_options(fmt, options)
    return fmt, convert_rows(located, fmt, path, skipped, **options)


def _none_left(path: str | Path, skipped: Skipped | None) -> DataError:
    """The error for a file in which no row passed."""
    return DataError(f"no valid rows: all {len(skipped)} are bad" if skipped else "no rows", path)


# ---------------------------------------------------------------- the report


@dataclass
class DataReport:
    """What check or convert found: the format, rows read, pairs kept, duplicates, skipped rows and speed."""

    file: str
    format: str
    rows: int  # records read, bad ones included
    pairs: int  # pairs (SFT: conversations) that passed
    seconds: float
    duplicated: int = 0  # pairs equal to an earlier pair (same prompt, chosen and rejected)
    repeated: int = 0  # distinct pairs that appear more than once
    most_repeats: int = 0  # how often the most repeated pair appears
    skipped: Skipped | None = None  # None: bad rows were refused, not skipped
    out: str | None = None
    skipped_file: str | None = None
    every_row: bool = False  # a whole-file check: bad rows counted by reason, with the command that skips them
    named_format: bool = False  # the format was named (--format), not detected

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def lines(self) -> list[str]:
        """The report, as the command line prints it."""
        unit = "conversation" if self.format in SFT_FORMATS else "pair"
        done = f"wrote {_count(self.pairs, unit)} to {self.out}" if self.out else _count(self.pairs, "valid " + unit)
        speed = f"{self.rows:,} rows in {self.seconds:.1f} s, {self.rows_per_second:,.0f} rows/s"
        lines = [f"{self.file}: format {self.format}, {done} ({speed})"]
        if self.duplicated:
            lines.append(f"{_count(self.duplicated, 'duplicated ' + unit)} (equal to an earlier one): "
                         f"{_count(self.repeated, 'distinct ' + unit)} more than once, the most repeated "
                         f"{self.most_repeats:,} times")
        else:
            lines.append(f"no duplicated {unit}s")
        if self.every_row and self.skipped:
            lines.append(f"{_count(len(self.skipped), 'bad row')}, by reason (the first lines of each):")
            lines += self.skipped.by_reason()
            if self.pairs:
                lines += [f"to convert the {_count(self.pairs, 'valid ' + unit)} and list the bad rows in "
                          f"{SKIPPED_FILE} beside the output:", "  " + self.convert_command()]
        elif self.skipped is not None and not self.every_row:
            listed = f"; all listed in {self.skipped_file}" if self.skipped_file and self.skipped else ""
            lines.append(self.skipped.summary() + listed)
        return lines

    def convert_command(self) -> str:
        """The command line that converts this file's valid rows, leaving the bad ones out."""
        out = "conversations.jsonl" if self.format in SFT_FORMATS else "pairs.jsonl"
        named = f" --format {self.format}" if self.named_format else ""
        return f"python -m helpers data convert {shlex.quote(self.file)}{named} --out {out} --skip-bad-rows"


def _count(n: int, word: str) -> str:
    """3 → "3 pairs", 1 → "1 pair"."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _report(path: str | Path, name: str, progress: _Progress, duplicates: _Duplicates,
            skipped: Skipped | None, every_row: bool = False) -> DataReport:
    """The report of one pass, once every row has been read (no valid row raises, but in a whole-file check)."""
    counts = duplicates.counts.values()
    pairs = sum(counts)
    if not pairs and not every_row:
        raise _none_left(path, skipped)
    return DataReport(file=str(path), format=name, rows=progress.rows, pairs=pairs, seconds=progress.close(),
                      duplicated=pairs - len(duplicates.counts), repeated=sum(1 for n in counts if n > 1),
                      most_repeats=max(counts, default=0), skipped=skipped, every_row=every_row)


def check_file(path: str | Path, fmt: str = "auto", skip_bad_rows: bool = False, progress: bool = False,
               every_row: bool = False, **options: Any) -> DataReport:
    """Read and validate every row, counting pairs and duplicates; writes nothing. SFT files count conversations.

    The first bad row raises, or with skip_bad_rows is left out and listed (report.skipped.rows). every_row reads on
    past every bad row and counts them by reason, keeping only the first places of each (memory stays flat), and
    reports a file with no valid row as 0 pairs: the whole-file report of `data check`."""
    skipped = Skipped(keep=not every_row) if skip_bad_rows or every_row else None
    tracker, duplicates = _Progress(path, progress), _Duplicates()
    try:
        name, examples = _examples(path, fmt, skipped, tracker, **options)
        for example in examples:
            duplicates.add(example)
    finally:
        tracker.close()  # before any error is printed
    report = _report(path, name, tracker, duplicates, skipped, every_row)
    report.named_format = fmt != "auto"
    return report


def _out_kind(out: str | Path) -> str:
    """How convert writes out: "folder" (OUT/ or an existing folder: save_to_disk), "parquet" (.parquet), "jsonl"."""
    if str(out).endswith(("/", os.sep)) or Path(out).is_dir():
        return "folder"
    return "parquet" if Path(out).suffix == ".parquet" else "jsonl"


def _make_parents(folder: Path) -> Path | None:
    """Create folder and its missing parents; return the topmost one created (None: it was there)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing[-1] if missing else None


def _put_in_place(staged: Path, out: Path, kind: str, scratch: Path, skipped: Skipped | None) -> Path | None:
    """Move the staged JSON Lines to out, or write them with datasets as Parquet or a datasets folder; save the
    skipped rows beside out (inside a folder). Returns where the skipped rows went."""
    listed = None if skipped is None else (out if kind == "folder" else out.parent) / SKIPPED_FILE
    if kind == "jsonl":
        os.replace(staged, out)
    else:
        dataset = Dataset.from_json(str(staged), cache_dir=str(scratch / "cache"))
        if kind == "parquet":
            dataset.to_parquet(str(scratch / "pairs.parquet"))
            os.replace(scratch / "pairs.parquet", out)
        else:
            from helpers.runs import replace_dir

            dataset.save_to_disk(str(scratch / "dataset"))
            if skipped is not None:
                write_jsonl_atomic(scratch / "dataset" / SKIPPED_FILE, skipped.rows)
            replace_dir(scratch / "dataset", out)
    if skipped is not None and kind != "folder":
        write_jsonl_atomic(listed, skipped.rows)
    return listed


def convert_file(path: str | Path, fmt: str, out: str | Path, skip_bad_rows: bool = False, progress: bool = False,
                 **options: Any) -> DataReport:
    """Write the file's pairs as TRL records to out: JSON Lines, Parquet (OUT.parquet) or a datasets folder (OUT/).

    Conversational for every format but trl-standard and trl-standard-implicit, which stay standard text; SFT files
    as messages. Written atomically, once every row has passed, or with skip_bad_rows once the bad rows are left
    out and listed in skipped_rows.jsonl beside out.
    """
    kind, target = _out_kind(out), Path(out)
    if kind == "folder" and target.exists() and any(target.iterdir()) and not (target / "state.json").exists():
        raise UserError(f"{target} is a folder holding other files; a datasets folder is written only into a new "
                        "or empty folder, or over an earlier one")
    skipped = Skipped() if skip_bad_rows else None
    tracker, duplicates = _Progress(path, progress), _Duplicates()
    name, examples = _examples(path, fmt, skipped, tracker, **options)
    made = _make_parents(target.parent)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        staged = scratch / "pairs.jsonl"
        with open(staged, "w", encoding="utf-8") as handle:
            for example in examples:
                duplicates.add(example)
                handle.write(_to_json(example) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        report = _report(path, name, tracker, duplicates, skipped)
        listed = _put_in_place(staged, target, kind, scratch, skipped)
    except BaseException:
        tracker.close()
        shutil.rmtree(scratch, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    report.seconds = time.perf_counter() - tracker.start
    report.out, report.skipped_file = str(out), None if listed is None else str(listed)
    return report
